//! The fleet's hub: the NATS connection a box or a command holds, the
//! buckets on it, and what publishing and following share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use serde::{Deserialize, Serialize};

pub(super) const FILES: &str = "outpost-files";
pub(super) const SITES: &str = "outpost-sites";
pub(super) const BOXES: &str = "outpost-boxes";
/// The key rules are published under.
pub(super) const RULES_KEY: &str = "_rules";
/// Where a box notes the version it last took, inside the site folder
/// (a dotfile, so never served).
pub(super) const APPLIED: &str = ".published-version";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("site `{0}` has no folder under sites/")]
    NoSite(String),
    #[error("file {path} of version {version} is missing from the fleet store")]
    Missing { path: String, version: String },
    #[error("file {path} of version {version} does not match its hash; version rejected")]
    Corrupt { path: String, version: String },
    #[error("site `{0}` has no earlier published version")]
    NoEarlier(String),
    #[error("manifest of `{0}` is unreadable: {1}")]
    Manifest(String, String),
    #[error("pack {name} of version {version} is missing, damaged or does not match its hash; version rejected")]
    Pack { name: String, version: String },
}

pub(super) fn nats(e: impl std::fmt::Display) -> FleetError {
    FleetError::Nats(e.to_string())
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |source| FleetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One published version of a site (or of the rules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    /// Hash of the manifest: the version's name everywhere.
    pub version: String,
    pub published_unix_ms: u64,
    /// site.toml (empty for rules).
    pub settings: String,
    pub files: Vec<PublishedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedFile {
    pub path: String,
    pub hash: String,
    /// The pack that holds the file's content.
    pub pack: String,
}

/// A connection to the fleet's NATS server.
#[derive(Clone)]
pub struct Hub {
    js: jetstream::Context,
}

impl Hub {
    /// For a command: fails at once when the hub does not answer.
    pub async fn connect(url: &str) -> Result<Hub, FleetError> {
        Hub::open(url, false).await
    }

    /// For a box: connects in the background, so the box serves with the
    /// hub down, and each part that uses the hub retries on its own; the
    /// client reconnects within a second of the hub's return.
    pub async fn join(url: &str) -> Result<Hub, FleetError> {
        Hub::open(url, true).await
    }

    async fn open(url: &str, in_background: bool) -> Result<Hub, FleetError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 250).min(1000))
            });
        if in_background {
            options = options.retry_on_initial_connect();
        }
        let client = options
            .connect(url)
            .await
            .map_err(|e| FleetError::Nats(format!("cannot reach the fleet's hub at {url}: {e}")))?;
        Ok(Hub {
            js: jetstream::new(client),
        })
    }

    /// JetStream on the hub, for the parts that use it beyond the buckets
    /// (the log stream).
    pub(super) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The key-value bucket `bucket`, created if missing, keeping `history`
    /// values per key.
    pub(super) async fn kv(&self, bucket: &str, history: i64) -> Result<kv::Store, FleetError> {
        if let Ok(s) = self.js.get_key_value(bucket).await {
            return Ok(s);
        }
        // Created as the stream key-value buckets are (ADR-8): async-nats's
        // own create_key_value first reads account fields that nats-server
        // 2.9 (Debian 12's) does not send.
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: history,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        self.js.get_key_value(bucket).await.map_err(nats)
    }

    /// The boxes' reports.
    pub(super) async fn boxes(&self) -> Result<kv::Store, FleetError> {
        self.kv(BOXES, 1).await
    }

    /// The stores a publish and a follower use.
    pub(super) async fn buckets(&self) -> Result<Buckets, FleetError> {
        let files = match self.js.get_object_store(FILES).await {
            Ok(s) => s,
            Err(_) => self
                .js
                .create_object_store(object_store::Config {
                    bucket: FILES.into(),
                    ..Default::default()
                })
                .await
                .map_err(nats)?,
        };
        Ok(Buckets {
            files,
            sites: self.kv(SITES, 10).await?,
        })
    }
}

pub(super) struct Buckets {
    pub(super) files: object_store::ObjectStore,
    pub(super) sites: kv::Store,
}

/// Every file under `dir`, with its path relative to it (dotfiles skipped).
pub(super) fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>, FleetError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), FleetError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name != ".well-known" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}
