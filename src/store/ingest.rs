//! Ingest: reads a site folder into a new version of that site, in four
//! steps: scan the folder, diff it against the last scan, read what changed
//! (into a new pack, file by file, on every core) and commit.
//!
//! Files whose size and modification time match the last scan are not read
//! again. A file that changes while it is read is "busy": the whole ingest is
//! abandoned and retried later, so a half-written file is never stored.
//! Symlinks are followed only when they stay inside the site's public/ and
//! do not loop back to a folder above them; whatever is skipped is reported.
//! Memory stays bounded whatever the site's size: a file is held only while
//! it is compressed, and one above the store's compression limit is hashed
//! and copied by the kernel without being held at all.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::database::{Store, Update};
use super::error::StoreError;
use super::packs::PackWriter;
use super::schema::{unix_ms, BlobRow, Encoding, Manifest, ManifestFile, Scan};
use super::version::{read_site_files, SiteVersion, HEADERS_FILE, REDIRECTS_FILE};
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
    /// Writing the new bodies failed (a full disk, say): the version before
    /// stays.
    #[error("cannot write to the cache: {0}")]
    Cache(std::io::Error),
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

/// A file the scan found.
struct Found {
    rel: String,
    abs: PathBuf,
    size: u64,
    mtime_ns: u128,
    /// Device and inode: a file of another release can have the same size
    /// and modification time (builds that pin times, `rsync -a`).
    file_id: (u64, u64),
}

/// The site folder as the scan found it.
struct Scanned {
    site_toml: String,
    /// Sorted by path.
    found: Vec<Found>,
    /// Paths (relative to public/) of files still being written.
    held: HashSet<String>,
}

/// A file read in this ingest.
struct Read {
    hash: String,
    /// The encodings stored for this content, before or by this ingest.
    stored: [bool; 3],
    /// The bodies this ingest added to its pack.
    rows: Vec<(Encoding, BlobRow)>,
    alternates: Vec<(String, String)>,
}

/// Why a file was not read.
enum Failure {
    /// The file changed while it was read.
    Busy,
    /// The file cannot be read: the rest of the site goes on without it.
    Source(std::io::Error),
    /// The cache cannot take it: the ingest stops.
    Cache(IngestError),
}

/// Ingests `sites_dir/name` as a new version when it changed. `check` vets
/// the site's settings against the other sites before anything is written;
/// `notes` name the files still being written, and get what the scan left
/// out.
pub fn ingest_site(
    store: &Store,
    sites_dir: &Path,
    name: &str,
    compressed: &Compressed,
    check: impl Fn(&SiteConfig) -> Result<(), Vec<Diagnostic>>,
    notes: &mut Notes,
) -> Result<Ingested, IngestError> {
    let Some(scanned) = scan(sites_dir, name, check, notes)? else {
        return Ok(Ingested::Removed);
    };
    let known = diff(store, name, &scanned)?;
    let to_read: Vec<&Found> = scanned
        .found
        .iter()
        .filter(|f| !known.contains_key(&f.rel) && !scanned.held.contains(&f.rel))
        .collect();
    if !to_read.is_empty() {
        tracing::info!(site = name, files = to_read.len(), "reading changed files");
    }
    let pack = store.pack_writer();
    let read = read_all(store, &pack, &to_read, compressed, &mut notes.skipped)?;
    commit(store, name, &scanned, &known, read, &pack)
}

/// Step 1: the site's settings, vetted, and the files under public/.
fn scan(
    sites_dir: &Path,
    name: &str,
    check: impl Fn(&SiteConfig) -> Result<(), Vec<Diagnostic>>,
    notes: &mut Notes,
) -> Result<Option<Scanned>, IngestError> {
    let dir = sites_dir.join(name);
    let toml_path = dir.join("site.toml");
    if !dir.is_dir() {
        return Ok(None);
    }
    if !toml_path.exists() {
        return Err(IngestError::NoSiteToml(toml_path));
    }
    let site_toml = std::fs::read_to_string(&toml_path).map_err(|source| IngestError::Io {
        path: toml_path.clone(),
        source,
    })?;
    let mut config = SiteConfig::parse(&toml_path, &site_toml).map_err(IngestError::Config)?;
    check(&config).map_err(IngestError::Config)?;

    let public = dir.join("public");
    // A version whose `_redirects` or `_headers` has a line outpost cannot
    // honour never goes live: the one before keeps serving.
    let text = |name: &str| match std::fs::read_to_string(public.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IngestError::Io {
            path: public.join(name),
            source,
        }),
    };
    let (redirects, headers) = (text(REDIRECTS_FILE)?, text(HEADERS_FILE)?);
    read_site_files(
        &public,
        &mut config,
        redirects.as_deref(),
        headers.as_deref(),
    )
    .map_err(IngestError::Config)?;
    let mut found = Vec::new();
    let mut held = HashSet::new();
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
        // Walked and read through the folder public/ resolves to now: a
        // release switched in (a symlink renamed over public/) mid-scan
        // must not give an old listing with new contents.
        walk(
            &mut vec![root.clone()],
            &root,
            "",
            &mut found,
            &mut notes.skipped,
        );
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(Some(Scanned {
        site_toml,
        found,
        held,
    }))
}

/// Step 2: the files that need no reading, with what the last scan saw of
/// them: unchanged since, with their body still stored. A file still being
/// written keeps what was read of it before, whatever it looks like now.
fn diff(
    store: &Store,
    name: &str,
    scanned: &Scanned,
) -> Result<HashMap<String, (Scan, [bool; 3])>, IngestError> {
    let mut known = store.known_files(name)?;
    let found: HashMap<&str, &Found> = scanned.found.iter().map(|f| (f.rel.as_str(), f)).collect();
    known.retain(|rel, (scan, _)| {
        found.get(rel.as_str()).is_some_and(|f| {
            scanned.held.contains(rel)
                || (scan.size == f.size && scan.mtime_ns == f.mtime_ns && scan.file_id == f.file_id)
        })
    });
    Ok(known)
}

/// Step 4: the new version (or only new scans, when the files are the
/// same), written in one transaction after the pack is on disk.
fn commit(
    store: &Store,
    name: &str,
    scanned: &Scanned,
    known: &HashMap<String, (Scan, [bool; 3])>,
    read: HashMap<String, Read>,
    pack: &PackWriter<'_>,
) -> Result<Ingested, IngestError> {
    // Which encodings each content has, whichever file's read stored them.
    let mut stored: HashMap<&str, [bool; 3]> = HashMap::new();
    for r in read.values() {
        let have = stored.entry(&r.hash).or_insert(r.stored);
        for (enc, _) in &r.rows {
            have[*enc as usize] = true;
        }
    }
    let mut update = Update::default();
    let mut files = Vec::with_capacity(scanned.found.len());
    for f in &scanned.found {
        let (scan, has) = match (known.get(&f.rel), read.get(&f.rel)) {
            (Some((scan, has)), _) => (scan.clone(), *has),
            (None, Some(r)) => {
                let scan = Scan {
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    file_id: f.file_id,
                    hash: r.hash.clone(),
                    alternates: r.alternates.clone(),
                };
                (scan, stored[r.hash.as_str()])
            }
            // Unreadable (logged by read_all), or new and still being
            // written: the rest of the site goes on.
            (None, None) => continue,
        };
        files.push(ManifestFile {
            path: f.rel.clone(),
            hash: scan.hash.clone(),
            size: scan.size,
            mtime_ms: (scan.mtime_ns / 1_000_000) as u64,
            gzip: has[Encoding::Gzip as usize],
            br: has[Encoding::Brotli as usize],
            alternates: scan.alternates.clone(),
        });
        update.scans.push((f.rel.clone(), scan));
    }
    for r in read.into_values() {
        for (enc, row) in r.rows {
            update.blobs.push((r.hash.clone(), enc, row));
        }
    }
    let manifest = Manifest {
        created_unix_ms: unix_ms(SystemTime::now()),
        site_toml: scanned.site_toml.clone(),
        files,
    };
    let unchanged = store
        .newest(name)?
        .is_some_and(|(_, m)| m.site_toml == manifest.site_toml && m.files == manifest.files);
    // Nothing read and nothing changed: the scans stored are these.
    if unchanged && update.blobs.is_empty() && update.scans.len() == known.len() {
        return Ok(Ingested::Unchanged);
    }
    update.manifest = (!unchanged).then_some(manifest);
    pack.finish().map_err(IngestError::Cache)?;
    match store.write_version(name, update)? {
        Some(number) => Ok(Ingested::Changed(Arc::new(
            store.load_version(name, number)?,
        ))),
        None => Ok(Ingested::Unchanged),
    }
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
                file_id: (meta.dev(), meta.ino()),
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

/// Step 3: reads, hashes and compresses files on every core, into `pack`.
/// A file still being written stops the ingest: the watcher retries once it
/// settles.
fn read_all(
    store: &Store,
    pack: &PackWriter<'_>,
    files: &[&Found],
    compressed: &Compressed,
    skipped: &mut Vec<String>,
) -> Result<HashMap<String, Read>, IngestError> {
    let busy = AtomicBool::new(false);
    // Contents some thread of this ingest stores: the same bytes under two
    // names are written once.
    let claimed = Mutex::new(HashSet::new());
    // `None`: not read, because another file was found busy.
    let results = crate::parallel::map(files, |f| {
        if busy.load(Ordering::Relaxed) {
            return None;
        }
        let r = read_one(store, pack, f, compressed, &claimed);
        if matches!(r, Err(Failure::Busy)) {
            busy.store(true, Ordering::Relaxed);
        }
        Some(r)
    });
    let mut read = HashMap::with_capacity(files.len());
    for (f, r) in files.iter().zip(results) {
        match r {
            None => {}
            Some(Ok(r)) => {
                read.insert(f.rel.clone(), r);
            }
            Some(Err(Failure::Busy)) => return Err(IngestError::Busy(f.abs.clone())),
            Some(Err(Failure::Cache(e))) => return Err(e),
            Some(Err(Failure::Source(e))) => {
                tracing::warn!(path = %f.abs.display(), error = %e, "cannot read file; the rest of the site is still served");
                skipped.push(format!("{}: cannot read file ({e})", f.abs.display()));
            }
        }
    }
    Ok(read)
}

/// Reads one file into `pack`, unless its content is stored already.
fn read_one(
    store: &Store,
    pack: &PackWriter<'_>,
    f: &Found,
    compressed: &Compressed,
    claimed: &Mutex<HashSet<String>>,
) -> Result<Read, Failure> {
    let mut file = File::open(&f.abs).map_err(Failure::Source)?;
    let streamed = f.size > store.compress_max();
    // Small enough to compress: held while it is. Larger: only hashed here,
    // and copied below by the kernel.
    let data = if streamed {
        None
    } else {
        let mut data = Vec::with_capacity(f.size as usize);
        std::io::Read::read_to_end(&mut file, &mut data).map_err(Failure::Source)?;
        Some(data)
    };
    let hash = match &data {
        Some(data) => blake3::hash(data),
        None => {
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(&mut file).map_err(Failure::Source)?;
            hasher.finalize()
        }
    };
    let digest = *hash.as_bytes();
    let hash = hash.to_hex().to_string();
    let mut stored = store.stored(&hash).map_err(|e| Failure::Cache(e.into()))?;
    let mut rows = Vec::new();
    if !stored[Encoding::Identity as usize] && claimed.lock().unwrap().insert(hash.clone()) {
        let placed = match &data {
            Some(data) => pack.append(data),
            None => pack.append_file(&mut file, f.size),
        }
        .map_err(|e| Failure::Cache(IngestError::Cache(e)))?;
        let row = BlobRow {
            pack: placed.pack,
            offset: placed.offset,
            len: f.size,
            digest,
        };
        rows.push((Encoding::Identity, row));
        let (gzip, br) = match (&data, compressed.get(&hash)) {
            (None, _) => (None, None),
            (Some(_), Some(copies)) => copies.clone(),
            (Some(data), None) => compress::for_storage(&f.rel, data),
        };
        for (enc, body) in [(Encoding::Gzip, gzip), (Encoding::Brotli, br)] {
            let Some(body) = body else { continue };
            let placed = pack
                .append(&body)
                .map_err(|e| Failure::Cache(IngestError::Cache(e)))?;
            let row = BlobRow {
                pack: placed.pack,
                offset: placed.offset,
                len: body.len() as u64,
                digest: *blake3::hash(&body).as_bytes(),
            };
            rows.push((enc, row));
            stored[enc as usize] = true;
        }
    }
    let after = std::fs::metadata(&f.abs).map_err(Failure::Source)?;
    let len = data.as_ref().map_or(f.size, |d| d.len() as u64);
    if after.len() != f.size || len != f.size || mtime_ns(&after) != f.mtime_ns {
        return Err(Failure::Busy);
    }
    let alternates = match &data {
        Some(data) if f.rel.ends_with(".html") || f.rel.ends_with(".htm") => {
            super::alternates::hreflang_links(data)
        }
        _ => Vec::new(),
    };
    Ok(Read {
        hash,
        stored,
        rows,
        alternates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KEPT_VERSIONS;

    fn stored_count(store: &Store, text: &str) -> usize {
        let hash = crate::store::content_hash(text.as_bytes());
        store.stored(&hash).unwrap().iter().filter(|s| **s).count()
    }

    fn ingest(store: &Store, sites: &Path) -> Ingested {
        ingest_site(
            store,
            sites,
            "s",
            &Compressed::new(),
            |_| Ok(()),
            &mut Notes::default(),
        )
        .unwrap()
    }

    /// A temporary folder with sites/s/site.toml; its sites/ and public/.
    fn one_site() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sites = dir.path().join("sites");
        let public = sites.join("s").join("public");
        std::fs::create_dir_all(&public).unwrap();
        std::fs::write(
            sites.join("s").join("site.toml"),
            "hosts = [\"s\"]\nlocale = \"en-GB\"\n",
        )
        .unwrap();
        (dir, sites, public)
    }

    fn packs(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("store.packs")).map_or(0, |d| d.count())
    }

    /// A version pushed out of the kept five takes its bodies (and the
    /// packs only they used) with it, except those a kept version still uses.
    #[test]
    fn bodies_go_with_the_last_version_that_used_them() {
        let (dir, sites, public) = one_site();
        std::fs::write(public.join("kept.txt"), "in every version").unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let page = |n: usize| format!("page {n} {}", "x".repeat(n));
        for n in 0..=KEPT_VERSIONS {
            std::fs::write(public.join("page.html"), page(n)).unwrap();
            assert!(matches!(ingest(&store, &sites), Ingested::Changed(_)));
        }
        assert_eq!(store.versions("s").unwrap().len(), KEPT_VERSIONS);
        assert_eq!(stored_count(&store, &page(0)), 0, "pushed out");
        assert_eq!(stored_count(&store, &page(1)), 1, "kept");
        assert_eq!(stored_count(&store, "in every version"), 1, "shared");
        // The first pack held only page 0 and kept.txt; kept.txt keeps it.
        assert_eq!(packs(dir.path()), KEPT_VERSIONS + 1);

        // Touched, same bytes: a new version (its Last-Modified moved) that
        // writes no new pack, and the next scan reads nothing.
        std::fs::write(public.join("page.html"), page(KEPT_VERSIONS)).unwrap();
        // Set, not left to the clock, whose ticks can be coarser than the
        // time between the two writes.
        let touched = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(public.join("page.html"))
            .unwrap()
            .set_modified(touched)
            .unwrap();
        assert!(matches!(ingest(&store, &sites), Ingested::Changed(_)));
        assert!(packs(dir.path()) <= KEPT_VERSIONS + 1);
        assert!(matches!(ingest(&store, &sites), Ingested::Unchanged));
    }

    /// A file above the compression limit is copied into the pack as it is,
    /// and served whole.
    #[test]
    fn a_file_above_the_limit_is_stored_uncompressed() {
        let (dir, sites, public) = one_site();
        let text = "compressible text ".repeat(10_000);
        std::fs::write(public.join("big.txt"), &text).unwrap();
        std::fs::write(public.join("small.txt"), &text[..50_000]).unwrap();
        let store = Store::open(&dir.path().join("store.redb"))
            .unwrap()
            .with_compress_max(100_000);
        let Ingested::Changed(version) = ingest(&store, &sites) else {
            panic!("a first version");
        };
        let big = version.file("big.txt").unwrap();
        assert!(!big.compressed());
        assert_eq!(
            big.checked_body(Encoding::Identity).unwrap(),
            text.as_bytes()
        );
        assert!(version.file("small.txt").unwrap().compressed());
    }
}
