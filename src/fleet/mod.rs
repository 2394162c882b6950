//! The fleet: publishing site versions to NATS JetStream and following them
//! on every edge box.
//!
//! A publish uploads one pack of the files new since the site's previous
//! version, with their compressed copies (see [`pack`]), to the object
//! store `outpost-files`, then writes the site's manifest to the key-value
//! bucket `outpost-sites` (rules travel under the key `_rules`). The
//! manifest names, for every file, its hash and the pack that holds it (this
//! version's, or the one an earlier version brought it in), so a box at any
//! version, or one rolled back, finds every file. A box following the bucket
//! fetches the packs holding what it lacks, checks each pack whole and each
//! file against its hash, writes the version into its own sites/ folder in
//! one rename, ingests it (compressing nothing) and switches atomically,
//! then reports what it serves in `outpost-boxes`. Without NATS a box keeps
//! serving what it has and catches up from the bucket's latest values when
//! NATS returns.

mod pack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv, object_store, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::live::Live;
use crate::store::{content_hash, unix_ms, Compressed, SiteVersion};

const FILES: &str = "outpost-files";
const SITES: &str = "outpost-sites";
const BOXES: &str = "outpost-boxes";
/// The key rules are published under.
const RULES_KEY: &str = "_rules";
/// Where a box notes the version it last took, inside the site folder
/// (a dotfile, so never served).
const APPLIED: &str = ".published-version";

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

fn nats(e: impl std::fmt::Display) -> FleetError {
    FleetError::Nats(e.to_string())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
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

/// What a box reports, under its name in `outpost-boxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BoxReport {
    /// The version taken per site (and `_rules`); under `<key>!error`, why
    /// the last version published under the key was refused.
    pub served: BTreeMap<String, String>,
    pub updated_unix_ms: u64,
}

/// What a publish did for one site (or the rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The site, or `_rules`.
    pub key: String,
    pub version: String,
    /// Files whose content the fleet did not have before.
    pub new_files: usize,
    pub files: usize,
}

struct Buckets {
    files: object_store::ObjectStore,
    sites: kv::Store,
    boxes: kv::Store,
}

async fn buckets(url: &str) -> Result<Buckets, FleetError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .map_err(nats)?;
    let js = jetstream::new(client);
    let files = match js.get_object_store(FILES).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: FILES.into(),
                ..Default::default()
            })
            .await
            .map_err(nats)?,
    };
    // A bucket is created as the stream key-value buckets are (ADR-8):
    // async-nats's own create_key_value first reads account fields that
    // nats-server 2.9 (Debian 12's) does not send.
    let kv = |bucket: &'static str, history: i64| {
        let js = js.clone();
        async move {
            if let Ok(s) = js.get_key_value(bucket).await {
                return Ok(s);
            }
            js.get_or_create_stream(stream::Config {
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
            js.get_key_value(bucket).await.map_err(nats)
        }
    };
    Ok(Buckets {
        files,
        sites: kv(SITES, 10).await?,
        boxes: kv(BOXES, 1).await?,
    })
}

/// Every file under `dir`, with its path relative to it (dotfiles skipped).
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>, FleetError> {
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

/// Uploads the pack of what `previous` lacks and returns the manifest and
/// how many files were new.
async fn upload(
    b: &Buckets,
    dir: &Path,
    settings: String,
    previous: Option<&Published>,
) -> Result<(Published, usize), FleetError> {
    // Where each file the previous version had is stored already.
    let stored: Arc<std::collections::HashMap<String, String>> = Arc::new(
        previous
            .iter()
            .flat_map(|p| p.files.iter().map(|f| (f.hash.clone(), f.pack.clone())))
            .collect(),
    );
    let found = files_of(dir)?;
    let old = stored.clone();
    let (read, entries) = tokio::task::spawn_blocking(move || read_new(&found, &old))
        .await
        .map_err(|e| FleetError::Nats(e.to_string()))??;
    let new = entries.len();
    let this = if entries.is_empty() {
        String::new()
    } else {
        let data = pack::write(&entries);
        let name = format!("pack-{}", content_hash(&data));
        if b.files.info(&name).await.is_err() {
            b.files
                .put(name.as_str(), &mut data.as_slice())
                .await
                .map_err(nats)?;
        }
        name
    };
    let files: Vec<PublishedFile> = read
        .into_iter()
        .map(|(path, hash)| {
            let pack = stored.get(&hash).cloned().unwrap_or_else(|| this.clone());
            PublishedFile { path, hash, pack }
        })
        .collect();
    let version = content_hash(
        serde_json::to_string(&(&settings, &files))
            .expect("serializes")
            .as_bytes(),
    )[..16]
        .to_string();
    let published_unix_ms = unix_ms(SystemTime::now());
    Ok((
        Published {
            version,
            published_unix_ms,
            settings,
            files,
        },
        new,
    ))
}

/// Publishes the rules and `sites` from `root`.
pub async fn publish(
    url: &str,
    root: &Path,
    sites: &[String],
) -> Result<Vec<Publication>, FleetError> {
    let b = buckets(url).await?;
    let mut report = Vec::new();
    let previous_rules = latest(&b, RULES_KEY).await;
    let (rules, new) = upload(
        &b,
        &root.join("rules"),
        String::new(),
        previous_rules.as_ref(),
    )
    .await?;
    put(&b, RULES_KEY, &rules).await?;
    report.push(Publication {
        key: RULES_KEY.to_string(),
        version: rules.version.clone(),
        new_files: new,
        files: rules.files.len(),
    });
    for site in sites {
        let dir = root.join("sites").join(site);
        let settings = std::fs::read_to_string(dir.join("site.toml"))
            .map_err(|_| FleetError::NoSite(site.clone()))?;
        let previous = latest(&b, site).await;
        let (published, new) = upload(&b, &dir.join("public"), settings, previous.as_ref()).await?;
        put(&b, site, &published).await?;
        report.push(Publication {
            key: site.clone(),
            version: published.version.clone(),
            new_files: new,
            files: published.files.len(),
        });
    }
    Ok(report)
}

/// The version published last under `key`, if any is readable.
async fn latest(b: &Buckets, key: &str) -> Option<Published> {
    let raw = b.sites.get(key).await.ok()??;
    serde_json::from_slice(&raw).ok()
}

/// A file's path and content hash.
type Hashed = (String, String);

/// Reads `(path, file)`s on every core: each one's hash, and the pack
/// entries (compressed) of the contents `stored` does not have, each once.
/// One read serves both, so the manifest names exactly what was packed.
fn read_new(
    files: &[(String, PathBuf)],
    stored: &std::collections::HashMap<String, String>,
) -> Result<(Vec<Hashed>, Vec<pack::Entry>), FleetError> {
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let read = crate::parallel::map(files, |(rel, path)| {
        let data = std::fs::read(path).map_err(io(path))?;
        let h = content_hash(&data);
        if stored.contains_key(&h) || !seen.lock().unwrap().insert(h.clone()) {
            return Ok((rel.clone(), h, None));
        }
        let (gzip, br) = crate::compress::for_storage(rel, &data);
        let entry = pack::Entry {
            hash: h.clone(),
            identity: data.into(),
            gzip,
            br,
        };
        Ok((rel.clone(), h, Some(entry)))
    });
    let mut hashes = Vec::with_capacity(read.len());
    let mut entries = Vec::new();
    for r in read {
        let (rel, h, entry) = r?;
        hashes.push((rel, h));
        entries.extend(entry);
    }
    Ok((hashes, entries))
}

async fn put(b: &Buckets, key: &str, p: &Published) -> Result<(), FleetError> {
    let json = serde_json::to_vec(p).expect("serializes");
    b.sites.put(key, Bytes::from(json)).await.map_err(nats)?;
    Ok(())
}

/// Points every box back at the site's previous published version.
pub async fn rollback(url: &str, site: &str) -> Result<String, FleetError> {
    let b = buckets(url).await?;
    let mut history = b.sites.history(site).await.map_err(nats)?;
    let mut versions: Vec<Published> = Vec::new();
    while let Some(entry) = history.next().await {
        let entry = entry.map_err(nats)?;
        if let Ok(p) = serde_json::from_slice::<Published>(&entry.value) {
            versions.push(p);
        }
    }
    let current = versions
        .last()
        .ok_or_else(|| FleetError::NoEarlier(site.to_string()))?
        .version
        .clone();
    let previous = versions
        .iter()
        .rev()
        .find(|p| p.version != current)
        .cloned()
        .ok_or_else(|| FleetError::NoEarlier(site.to_string()))?;
    put(&b, site, &previous).await?;
    Ok(previous.version)
}

/// What each box reported it serves (an unreadable report as empty).
pub async fn status(url: &str) -> Result<BTreeMap<String, BoxReport>, FleetError> {
    let b = buckets(url).await?;
    let mut keys = b.boxes.keys().await.map_err(nats)?;
    let mut out = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(nats)?;
        if let Some(v) = b.boxes.get(&key).await.map_err(nats)? {
            out.insert(key, serde_json::from_slice(&v).unwrap_or_default());
        }
    }
    Ok(out)
}

/// Follows the fleet until the process ends, reconnecting as needed.
pub async fn follow(url: String, root: PathBuf, live: Arc<Live>, box_id: String) {
    let mut report = BoxReport::default();
    loop {
        match follow_once(&url, &root, &live, &box_id, &mut report).await {
            Ok(()) => tracing::warn!("fleet watch ended; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, "fleet unreachable; serving what this box has and retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    url: &str,
    root: &Path,
    live: &Arc<Live>,
    box_id: &str,
    report: &mut BoxReport,
) -> Result<(), FleetError> {
    let b = buckets(url).await?;
    // The latest value of every key first (what was published while this
    // box was down or cut off), then each new one.
    let mut watch = b.sites.watch_with_history(">").await.map_err(nats)?;
    tracing::info!(url, "following the fleet");
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(nats)?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let published: Published = serde_json::from_slice(&entry.value)
            .map_err(|e| FleetError::Manifest(entry.key.clone(), e.to_string()))?;
        if report.served.get(&entry.key) == Some(&published.version) {
            continue;
        }
        let result = if entry.key == RULES_KEY {
            take_rules(&b, root, &published).await.map(|()| {
                let _ = live.reload_rules();
            })
        } else {
            let served = live.sites().get(&entry.key).cloned();
            match take_site(&b, root, &entry.key, &published, served.as_deref()).await {
                Ok(compressed) => {
                    // Ingest now rather than after the watcher's quiet period.
                    let (live, site) = (live.clone(), entry.key.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || live.refresh_with(&site, &compressed))
                            .await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(key = %entry.key, version = %published.version, "took published version");
                report
                    .served
                    .insert(entry.key.clone(), published.version.clone());
            }
            Err(e) => {
                tracing::error!(key = %entry.key, error = %e, "published version refused; keeping the current one");
                report
                    .served
                    .insert(format!("{}!error", entry.key), e.to_string());
            }
        }
        report.updated_unix_ms = unix_ms(SystemTime::now());
        b.boxes
            .put(
                box_id,
                Bytes::from(serde_json::to_vec(report).expect("serializes")),
            )
            .await
            .map_err(nats)?;
    }
    Ok(())
}

/// A file of a version: the local copy (same content) or fetched bytes.
enum Content {
    Local(PathBuf),
    Fetched(Bytes),
}

/// The content of each file of `published`: the local copy when it has the
/// right hash, else from the pack that holds it; each checked against its
/// hash. Also the compressed copies the packs brought. A local file is
/// known by `served` (the version this box serves, which hashed it at
/// ingest) when its size and time are unchanged since, and read and hashed
/// otherwise.
async fn gather(
    b: &Buckets,
    local: &Path,
    published: &Published,
    served: Option<&SiteVersion>,
) -> Result<(Vec<(String, Content)>, Compressed), FleetError> {
    let mut files = Vec::with_capacity(published.files.len());
    let mut lacking = Vec::new();
    for f in &published.files {
        let here = local.join(&f.path);
        let known = served.and_then(|v| v.file(&f.path)).is_some_and(|s| {
            s.hash == f.hash
                && std::fs::metadata(&here).is_ok_and(|m| {
                    m.len() == s.identity().len() as u64
                        && m.modified()
                            .is_ok_and(|t| unix_ms(t) == unix_ms(s.last_modified))
                })
        });
        if known || std::fs::read(&here).is_ok_and(|data| content_hash(&data) == f.hash) {
            files.push((f.path.clone(), Content::Local(here)));
        } else {
            lacking.push(f);
        }
    }
    let mut packs: Vec<&str> = lacking.iter().map(|f| f.pack.as_str()).collect();
    packs.sort_unstable();
    packs.dedup();
    let fetched = futures_util::future::try_join_all(
        packs
            .into_iter()
            .map(|name| fetch_pack(b, name, &published.version)),
    )
    .await?;
    let mut compressed = Compressed::new();
    let mut packed = std::collections::HashMap::new();
    for entries in fetched {
        for e in entries {
            compressed.insert(e.hash.clone(), (e.gzip, e.br));
            packed.insert(e.hash, e.identity);
        }
    }
    for f in lacking {
        match packed.get(&f.hash) {
            Some(data) if content_hash(data) == f.hash => {
                files.push((f.path.clone(), Content::Fetched(data.clone())))
            }
            Some(_) => return Err(corrupt(f, &published.version)),
            None => {
                return Err(FleetError::Missing {
                    path: f.path.clone(),
                    version: published.version.clone(),
                })
            }
        }
    }
    Ok((files, compressed))
}

fn corrupt(f: &PublishedFile, version: &str) -> FleetError {
    FleetError::Corrupt {
        path: f.path.clone(),
        version: version.to_string(),
    }
}

/// The pack `name`, checked whole against its hash.
async fn fetch_pack(
    b: &Buckets,
    name: &str,
    version: &str,
) -> Result<Vec<pack::Entry>, FleetError> {
    let refused = || FleetError::Pack {
        name: name.to_string(),
        version: version.to_string(),
    };
    let mut object = b.files.get(name).await.map_err(|_| refused())?;
    let mut data = Vec::new();
    object.read_to_end(&mut data).await.map_err(|_| refused())?;
    if name.strip_prefix("pack-") != Some(content_hash(&data).as_str()) {
        return Err(refused());
    }
    pack::read(&Bytes::from(data)).ok_or_else(refused)
}

/// Writes a version's files into `dir`. Unchanged files are hard links to
/// the current ones, so ingest sees their size and time unchanged and does
/// not read or compress them again.
fn write_all(dir: &Path, files: &[(String, Content)]) -> Result<(), FleetError> {
    for (rel, content) in files {
        if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        match content {
            Content::Local(from) if from == &path => {}
            Content::Local(from) => {
                if std::fs::hard_link(from, &path).is_err() {
                    std::fs::copy(from, &path).map_err(io(&path))?;
                }
            }
            Content::Fetched(data) => std::fs::write(&path, data).map_err(io(&path))?,
        }
    }
    Ok(())
}

/// Writes a site version beside the current folder, then swaps the two;
/// returns the compressed copies its pack brought, for the ingest.
async fn take_site(
    b: &Buckets,
    root: &Path,
    site: &str,
    published: &Published,
    served: Option<&SiteVersion>,
) -> Result<Compressed, FleetError> {
    if site.starts_with('.') || site.contains(['/', '\\']) {
        return Err(FleetError::NoSite(site.to_string()));
    }
    let sites = root.join("sites");
    let current = sites.join(site);
    let (files, compressed) = gather(b, &current.join("public"), published, served).await?;
    let incoming = sites.join(format!(".incoming-{site}"));
    let _ = std::fs::remove_dir_all(&incoming);
    write_all(&incoming.join("public"), &files)?;
    std::fs::write(incoming.join("site.toml"), &published.settings).map_err(io(&incoming))?;
    std::fs::write(incoming.join(APPLIED), &published.version).map_err(io(&incoming))?;
    let old = sites.join(format!(".old-{site}"));
    let _ = std::fs::remove_dir_all(&old);
    if current.exists() {
        std::fs::rename(&current, &old).map_err(io(&current))?;
    }
    std::fs::rename(&incoming, &current).map_err(io(&incoming))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(compressed)
}

/// Rules are few and small: written in place, then loaded once.
async fn take_rules(b: &Buckets, root: &Path, published: &Published) -> Result<(), FleetError> {
    let dir = root.join("rules");
    let (files, _) = gather(b, &dir, published, None).await?;
    for (rel, path) in files_of(&dir)? {
        if !published.files.iter().any(|f| f.path == rel) {
            let _ = std::fs::remove_file(path);
        }
    }
    write_all(&dir, &files)
}
