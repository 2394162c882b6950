//! Ingest: reads a site folder into a new version of that site.
//!
//! Files whose size and modification time match the last scan are not read
//! again. A file that changes while it is read is "busy": the whole ingest is
//! abandoned and retried later, so a half-written file is never stored.
//! Symlinks are followed only when they stay inside the site's public/ and
//! do not loop back to a folder above them; whatever is skipped is reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{
    blob_key, collect_garbage, forget_blobs, Encoding, Manifest, ManifestFile, Scan, SiteVersion,
    Store, StoreError, BLOBS, CURRENT, KEPT_VERSIONS, SCANS, VERSIONS,
};
use crate::compress;
use crate::config::{Diagnostic, SiteConfig};

/// Compressed copies made elsewhere (by a fleet's publisher), by the hash
/// of the content they are copies of: ingest takes them instead of
/// compressing again.
pub type Compressed = HashMap<String, (Option<Bytes>, Option<Bytes>)>;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}", Diagnostic::lines(.0))]
    Config(Vec<Diagnostic>),
    #[error("{0}: still being written; will retry")]
    Busy(PathBuf),
    /// The folder is there but its site.toml is not (moved away, or not
    /// written yet): only removing the folder removes a site.
    #[error("{0}: not found; a site folder needs its site.toml")]
    NoSiteToml(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the caller knows of an ingest, and what the ingest left out.
#[derive(Debug, Default)]
pub struct Notes {
    /// Files still open for writing (as the watcher saw them): each keeps
    /// the copy an earlier ingest took, and a new one waits until closed.
    pub held: Vec<PathBuf>,
    /// What the scan had to leave out (symlinks not followed, unreadable
    /// folders and files), one line each.
    pub skipped: Vec<String>,
}

/// What an ingest did.
#[derive(Debug)]
pub enum Ingested {
    /// The folder matches the newest kept version (or the site is rolled back
    /// from it): nothing to switch.
    Unchanged,
    /// A new version, already current in the store.
    Changed(Arc<SiteVersion>),
    /// The site's folder is gone.
    Removed,
}

struct Found {
    rel: String,
    abs: PathBuf,
    size: u64,
    mtime_ns: u128,
}

/// A file read in this ingest, with the blobs it still needs stored.
struct Read {
    hash: String,
    bodies: [Option<Bytes>; 3],
    alternates: Vec<(String, String)>,
}

/// Ingests `sites_dir/name` as a new version when it changed. `serving` is
/// the version in memory now, whose bodies are reused; `check` vets the site's
/// settings against the other sites before anything is written. `notes`
/// name the files still being written, and get what the scan left out.
pub fn ingest_site(
    store: &Store,
    sites_dir: &Path,
    name: &str,
    serving: Option<&SiteVersion>,
    compressed: &Compressed,
    check: impl Fn(&SiteConfig) -> Result<(), Vec<Diagnostic>>,
    notes: &mut Notes,
) -> Result<Ingested, IngestError> {
    let dir = sites_dir.join(name);
    let toml_path = dir.join("site.toml");
    if !dir.is_dir() {
        return Ok(Ingested::Removed);
    }
    if !toml_path.exists() {
        return Err(IngestError::NoSiteToml(toml_path));
    }
    let site_toml = std::fs::read_to_string(&toml_path).map_err(|source| IngestError::Io {
        path: toml_path.clone(),
        source,
    })?;
    let config = SiteConfig::parse(&toml_path, &site_toml).map_err(IngestError::Config)?;
    check(&config).map_err(IngestError::Config)?;

    let public = dir.join("public");
    let mut found = Vec::new();
    let mut held = std::collections::HashSet::new();
    if public.is_dir() {
        let root = public.canonicalize().map_err(|source| IngestError::Io {
            path: public.clone(),
            source,
        })?;
        held.extend(
            notes
                .held
                .iter()
                .filter_map(|p| p.strip_prefix(&root).ok()?.to_str())
                .map(str::to_string),
        );
        walk(&mut vec![root], &public, "", &mut found, &mut notes.skipped);
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));

    // Which files need reading: new or changed since the last scan, or whose
    // blob is gone. A file still being written keeps what was read of it
    // before (its last scan), whatever it looks like now.
    let known: HashMap<String, Scan> = {
        let tx = store.db()?.begin_read().map_err(StoreError::from)?;
        let mut known = HashMap::new();
        if let (Ok(scans), Ok(blobs)) = (tx.open_table(SCANS), tx.open_table(BLOBS)) {
            for f in &found {
                if let Some(raw) = scans
                    .get((name, f.rel.as_str()))
                    .map_err(StoreError::from)?
                {
                    if let Ok(scan) = serde_json::from_slice::<Scan>(raw.value()) {
                        let key = blob_key(&scan.hash, Encoding::Identity);
                        if (held.contains(&f.rel)
                            || (scan.size == f.size && scan.mtime_ns == f.mtime_ns))
                            && blobs
                                .get(key.as_slice())
                                .map_err(StoreError::from)?
                                .is_some()
                        {
                            known.insert(f.rel.clone(), scan);
                        }
                    }
                }
            }
        }
        known
    };
    let to_read: Vec<&Found> = found
        .iter()
        .filter(|f| !known.contains_key(&f.rel) && !held.contains(&f.rel))
        .collect();
    if !to_read.is_empty() {
        tracing::info!(site = name, files = to_read.len(), "reading changed files");
    }
    let read = read_all(&to_read, compressed, &mut notes.skipped)?;

    let mut files = Vec::with_capacity(found.len());
    let mut scans = Vec::with_capacity(found.len());
    let mut fresh: HashMap<String, &Read> = HashMap::new();
    for f in &found {
        let (scan, has_gzip, has_br) = match (known.get(&f.rel), read.get(&f.rel)) {
            (Some(scan), _) => {
                let (gz, br) = stored_encodings(store, &scan.hash)?;
                (scan.clone(), gz, br)
            }
            (None, Some(Ok(r))) => {
                fresh.insert(r.hash.clone(), r);
                let scan = Scan {
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    hash: r.hash.clone(),
                    alternates: r.alternates.clone(),
                };
                (scan, r.bodies[1].is_some(), r.bodies[2].is_some())
            }
            // Unreadable (logged by read_all), or new and still being
            // written: the rest of the site goes on.
            (None, _) => continue,
        };
        files.push(ManifestFile {
            path: f.rel.clone(),
            hash: scan.hash.clone(),
            size: scan.size,
            mtime_ms: (scan.mtime_ns / 1_000_000) as u64,
            gzip: has_gzip,
            br: has_br,
            alternates: scan.alternates.clone(),
        });
        scans.push((f.rel.clone(), scan));
    }
    let manifest = Manifest {
        created_unix_ms: super::unix_ms(SystemTime::now()),
        site_toml,
        files,
    };

    let kept = store.versions(name)?;
    let newest = match kept.last() {
        Some(n) => Some((*n, store.manifest(name, *n)?)),
        None => None,
    };
    let unchanged = newest
        .as_ref()
        .is_some_and(|(_, m)| m.site_toml == manifest.site_toml && m.files == manifest.files);

    // Nothing read and nothing changed: the scans stored are these.
    if unchanged && to_read.is_empty() {
        return Ok(Ingested::Unchanged);
    }
    let tx = store.db()?.begin_write().map_err(StoreError::from)?;
    let number = newest.as_ref().map_or(1, |(n, _)| n + 1);
    // The hashes of the versions this one pushes out, to forget if unused.
    let mut dropped = std::collections::HashSet::new();
    let mut unreadable_dropped = false;
    {
        let mut scan_table = tx.open_table(SCANS).map_err(StoreError::from)?;
        scan_table
            .retain(|(s, _), _| s != name)
            .map_err(StoreError::from)?;
        for (rel, scan) in &scans {
            let raw = serde_json::to_vec(scan).expect("scans serialize");
            scan_table
                .insert((name, rel.as_str()), raw.as_slice())
                .map_err(StoreError::from)?;
        }
        if !unchanged {
            let mut blobs = tx.open_table(BLOBS).map_err(StoreError::from)?;
            for r in fresh.values() {
                for enc in Encoding::ALL {
                    if let Some(body) = &r.bodies[enc as usize] {
                        blobs
                            .insert(blob_key(&r.hash, enc).as_slice(), body.as_ref())
                            .map_err(StoreError::from)?;
                    }
                }
            }
            let mut versions = tx.open_table(VERSIONS).map_err(StoreError::from)?;
            let raw = serde_json::to_vec(&manifest).expect("manifests serialize");
            versions
                .insert((name, number), raw.as_slice())
                .map_err(StoreError::from)?;
            let mut all = kept.clone();
            all.push(number);
            for old in all.iter().take(all.len().saturating_sub(KEPT_VERSIONS)) {
                if let Some(raw) = versions.remove((name, *old)).map_err(StoreError::from)? {
                    match serde_json::from_slice::<Manifest>(raw.value()) {
                        Ok(m) => dropped.extend(m.files.into_iter().map(|f| f.hash)),
                        Err(_) => unreadable_dropped = true,
                    }
                }
            }
            tx.open_table(CURRENT)
                .map_err(StoreError::from)?
                .insert(name, number)
                .map_err(StoreError::from)?;
        }
    }
    if unreadable_dropped {
        collect_garbage(&tx)?;
    } else {
        forget_blobs(&tx, dropped)?;
    }
    tx.commit().map_err(StoreError::from)?;
    if unchanged {
        return Ok(Ingested::Unchanged);
    }

    // Bodies for the new version: fresh reads, then what is served now, then
    // the store.
    let mut serving_bodies: HashMap<&str, &super::StoredFile> = HashMap::new();
    if let Some(v) = serving {
        for (_, f) in v.files() {
            serving_bodies.insert(f.hash.as_str(), f.as_ref());
        }
    }
    let tx = store.db()?.begin_read().map_err(StoreError::from)?;
    let blobs = tx.open_table(BLOBS).map_err(StoreError::from)?;
    let version = SiteVersion::from_manifest(name, number, &manifest, |hash, enc| {
        if let Some(body) = fresh.get(hash).and_then(|r| r.bodies[enc as usize].clone()) {
            return Ok(body);
        }
        if let Some(body) = serving_bodies.get(hash).and_then(|f| f.body(enc)) {
            return Ok(body.clone());
        }
        match blobs.get(blob_key(hash, enc).as_slice())? {
            Some(v) => Ok(Bytes::copy_from_slice(v.value())),
            None => Err(StoreError::Damaged(format!("{name}: blob {hash} missing"))),
        }
    })?;
    Ok(Ingested::Changed(Arc::new(version)))
}

/// Which compressed copies the store has for a blob.
fn stored_encodings(store: &Store, hash: &str) -> Result<(bool, bool), StoreError> {
    let tx = store.db()?.begin_read()?;
    let blobs = tx.open_table(BLOBS)?;
    let has = |enc| -> Result<bool, StoreError> {
        Ok(blobs.get(blob_key(hash, enc).as_slice())?.is_some())
    };
    Ok((has(Encoding::Gzip)?, has(Encoding::Brotli)?))
}

/// Lists the servable files under `dir`, whose real path and those of the
/// folders above it up to public/ are `folders` (public/ first). Dotfiles
/// are skipped (except `.well-known`), and so are symlinks that lead
/// outside public/ or to a folder above them (a loop).
fn walk(
    folders: &mut Vec<PathBuf>,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Found>,
    skipped: &mut Vec<String>,
) {
    fn skip(skipped: &mut Vec<String>, path: &Path, why: &str) {
        tracing::warn!(path = %path.display(), "{why}");
        skipped.push(format!("{}: {why}", path.display()));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skip(
                skipped,
                dir,
                &format!("cannot list folder ({e}); skipping it"),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            skip(
                skipped,
                &entry.path(),
                "file name is not UTF-8; skipping it",
            );
            continue;
        };
        if name.starts_with('.') && name != ".well-known" {
            continue;
        }
        let path = entry.path();
        let Ok(mut meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let here = folders.last().expect("public/ is always there").join(name);
        let real = if meta.file_type().is_symlink() {
            match path.canonicalize() {
                Ok(target) if folders.contains(&target) => {
                    skip(
                        skipped,
                        &path,
                        "symlink loops back to a folder above it; not followed",
                    );
                    continue;
                }
                Ok(target) if target.starts_with(&folders[0]) => {
                    match std::fs::metadata(&target) {
                        Ok(m) => meta = m,
                        Err(_) => continue,
                    }
                    target
                }
                Ok(_) => {
                    skip(
                        skipped,
                        &path,
                        "symlink leads outside the site; not followed",
                    );
                    continue;
                }
                Err(e) => {
                    skip(
                        skipped,
                        &path,
                        &format!("symlink leads nowhere ({e}); not followed"),
                    );
                    continue;
                }
            }
        } else {
            here
        };
        let rel = format!("{prefix}{name}");
        if meta.is_dir() {
            folders.push(real);
            walk(folders, &path, &format!("{rel}/"), out, skipped);
            folders.pop();
        } else if meta.is_file() {
            out.push(Found {
                rel,
                abs: path,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            });
        }
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Reads, hashes and compresses files on every core. A file still being
/// written stops the ingest: the watcher retries once it settles.
fn read_all(
    files: &[&Found],
    compressed: &Compressed,
    skipped: &mut Vec<String>,
) -> Result<HashMap<String, std::io::Result<Read>>, IngestError> {
    // `None`: not read, because another file was found busy.
    let busy = AtomicBool::new(false);
    let results = crate::parallel::map(files, |f| {
        if busy.load(Ordering::Relaxed) {
            return None;
        }
        let r = read_one(f, compressed);
        if matches!(r, Ok(None)) {
            busy.store(true, Ordering::Relaxed);
        }
        Some(r)
    });
    let mut read = HashMap::with_capacity(files.len());
    for (f, r) in files.iter().zip(results) {
        match r {
            Some(Ok(None)) => return Err(IngestError::Busy(f.abs.clone())),
            None => {}
            Some(Err(e)) => {
                tracing::warn!(path = %f.abs.display(), error = %e, "cannot read file; the rest of the site is still served");
                skipped.push(format!("{}: cannot read file ({e})", f.abs.display()));
                read.insert(f.rel.clone(), Err(e));
            }
            Some(Ok(Some(r))) => {
                read.insert(f.rel.clone(), Ok(r));
            }
        }
    }
    Ok(read)
}

/// Reads one file; `None` when it changed while being read.
fn read_one(f: &Found, compressed: &Compressed) -> std::io::Result<Option<Read>> {
    let data = std::fs::read(&f.abs)?;
    let after = std::fs::metadata(&f.abs)?;
    if after.len() != f.size || data.len() as u64 != f.size || mtime_ns(&after) != f.mtime_ns {
        return Ok(None);
    }
    let hash = super::content_hash(&data);
    let (gzip, br) = match compressed.get(&hash) {
        Some(copies) => copies.clone(),
        None => compress::for_storage(&f.rel, &data),
    };
    let alternates = if f.rel.ends_with(".html") || f.rel.ends_with(".htm") {
        super::alternates::hreflang_links(&data)
    } else {
        Vec::new()
    };
    Ok(Some(Read {
        hash,
        bodies: [Some(Bytes::from(data)), gzip, br],
        alternates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_count(store: &Store, text: &str) -> usize {
        let tx = store.db().unwrap().begin_read().unwrap();
        let blobs = tx.open_table(BLOBS).unwrap();
        let hash = super::super::content_hash(text.as_bytes());
        Encoding::ALL
            .iter()
            .filter(|enc| {
                blobs
                    .get(blob_key(&hash, **enc).as_slice())
                    .unwrap()
                    .is_some()
            })
            .count()
    }

    /// A version pushed out of the kept five takes its blobs with it,
    /// except those a kept version still uses.
    #[test]
    fn blobs_go_with_the_last_version_that_used_them() {
        let dir = tempfile::tempdir().unwrap();
        let sites = dir.path().join("sites");
        let public = sites.join("s").join("public");
        std::fs::create_dir_all(&public).unwrap();
        std::fs::write(
            sites.join("s").join("site.toml"),
            "hosts = [\"s\"]\nlocale = \"en-GB\"\n",
        )
        .unwrap();
        std::fs::write(public.join("kept.txt"), "in every version").unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let page = |n: usize| format!("page {n} {}", "x".repeat(n));
        for n in 0..=KEPT_VERSIONS {
            std::fs::write(public.join("page.html"), page(n)).unwrap();
            let ingested = ingest_site(
                &store,
                &sites,
                "s",
                None,
                &Compressed::new(),
                |_| Ok(()),
                &mut Notes::default(),
            )
            .unwrap();
            assert!(matches!(ingested, Ingested::Changed(_)));
        }
        assert_eq!(store.versions("s").unwrap().len(), KEPT_VERSIONS);
        assert_eq!(blob_count(&store, &page(0)), 0, "pushed out");
        assert_eq!(blob_count(&store, &page(1)), 1, "kept");
        assert_eq!(blob_count(&store, "in every version"), 1, "shared");
    }
}
