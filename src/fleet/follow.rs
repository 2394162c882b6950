//! A box follows the sites bucket: it takes each version published, checks
//! it, writes it into its sites/ folder in one rename and serves it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::hub::{
    files_of, io, nats, Buckets, FleetError, Hub, Published, PublishedFile, APPLIED, RULES_KEY,
};
use super::pack;
use super::report::BoxState;
use crate::live::Live;
use crate::store::{content_hash, unix_ms, Compressed, SiteVersion};

/// Follows the fleet until the process ends, reconnecting as needed.
/// An unreachable hub is logged once, when it stops answering (or at
/// start), not at every retry.
pub async fn follow(hub: Hub, root: PathBuf, live: Arc<Live>, state: Arc<BoxState>) {
    let mut reachable = true;
    loop {
        match follow_once(&hub, &root, &live, &state, &mut reachable).await {
            Ok(()) => tracing::warn!("fleet watch ended; reconnecting"),
            Err(e) if reachable => {
                tracing::warn!(error = %e, "fleet unreachable; serving what this box has and retrying every second");
                reachable = false;
            }
            Err(e) => tracing::debug!(error = %e, "fleet still unreachable"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    hub: &Hub,
    root: &Path,
    live: &Arc<Live>,
    state: &BoxState,
    reachable: &mut bool,
) -> Result<(), FleetError> {
    let b = hub.buckets().await?;
    // The latest value of every key first (what was published while this
    // box was down or cut off), then each new one.
    let mut watch = b.sites.watch_with_history(">").await.map_err(nats)?;
    *reachable = true;
    tracing::info!("following the fleet");
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(nats)?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let published: Published = serde_json::from_slice(&entry.value)
            .map_err(|e| FleetError::Manifest(entry.key.clone(), e.to_string()))?;
        if state.serves(&entry.key, &published.version) {
            continue;
        }
        match take(&b, root, live, &entry.key, &published).await {
            Ok(()) => {
                tracing::info!(key = %entry.key, version = %published.version, "took published version");
                state.took(&entry.key, &published.version);
            }
            Err(e) => {
                tracing::error!(key = %entry.key, error = %e, "published version refused; keeping the current one");
                state.refused(&entry.key, &e.to_string());
            }
        }
    }
    Ok(())
}

/// Takes one published version of the rules or a site.
async fn take(
    b: &Buckets,
    root: &Path,
    live: &Arc<Live>,
    key: &str,
    published: &Published,
) -> Result<(), FleetError> {
    if key == RULES_KEY {
        take_rules(b, root, published).await?;
        let _ = live.reload_rules();
        return Ok(());
    }
    let served = live.sites().get(key).cloned();
    let compressed = take_site(b, root, key, published, served.as_deref()).await?;
    // Ingest now rather than after the watcher's quiet period.
    let (live, site) = (live.clone(), key.to_string());
    let _ = tokio::task::spawn_blocking(move || live.refresh_with(&site, &compressed)).await;
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
