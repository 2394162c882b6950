//! `outpost publish` and `outpost rollback`: a site's files go up as one
//! pack of what the fleet lacks, then its manifest is put in the sites
//! bucket, which every box follows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;

use super::hub::{
    files_of, io, nats, Buckets, FleetError, Hub, Published, PublishedFile, RULES_KEY,
};
use super::pack;
use crate::store::{content_hash, unix_ms};

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
    let b = Hub::connect(url).await?.buckets().await?;
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
    let b = Hub::connect(url).await?.buckets().await?;
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
