//! The embedded store (redb): every site's files, its last versions, and which
//! version each site serves.
//!
//! A version is one site.toml plus a manifest of files pointing at content
//! blobs by hash; it is written in one transaction, so a crash mid-ingest
//! leaves the previous version whole. Blobs are shared between versions and
//! deleted once no kept version needs them. Serving never touches redb: the
//! served versions live in memory as [`SiteVersion`]s (see `version.rs`).

mod alternates;
mod ingest;
mod version;

pub use ingest::{ingest_site, Compressed, IngestError, Ingested, Notes};
pub use version::{compressible, Encoding, Lookup, SiteVersion, StoredFile};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// The name content is stored under: its BLAKE3 hash in hex. A fleet names
/// files the same way, so a box matches what it fetched to what it ingests.
pub fn content_hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A time as records keep it: milliseconds since the Unix epoch (0 before).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Content by `hash ++ [encoding]`.
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// What ingest last saw of a file, so an unchanged one is not read again.
const SCANS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("scans");
/// A site's manifests by version number.
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// The version each site serves.
const CURRENT: TableDefinition<&str, u64> = TableDefinition::new("current");
/// Experiment counts: (experiment, variant) -> (exposures, conversions).
const EXPERIMENTS: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("experiments");
/// The last good copy of each fragment source: url -> (fetched at, ms since
/// the epoch; JSON).
const FRAGMENTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("fragments");

/// How many versions of each site are kept for rollback.
pub const KEPT_VERSIONS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("store: {0}")]
    Db(Box<redb::Error>),
    #[error("store: damaged record: {0}")]
    Damaged(String),
    #[error("site `{0}` has no older version to roll back to")]
    NoOlderVersion(String),
    #[error("site `{0}` is not in the store")]
    UnknownSite(String),
    #[error("the store is closed")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One version's record: the site's settings and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub created_unix_ms: u64,
    pub site_toml: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to public/, with `/` separators.
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub mtime_ms: u64,
    pub gzip: bool,
    pub br: bool,
    /// hreflang alternates of an HTML page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<(String, String)>,
}

/// What ingest saw of a file last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Scan {
    size: u64,
    mtime_ns: u128,
    hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    alternates: Vec<(String, String)>,
}

/// The store, opened once per process, and closed at shutdown so that the
/// next start needs no repair.
pub struct Store {
    db: arc_swap::ArcSwapOption<Database>,
}

impl Store {
    /// Opens the store, or starts a new one. A store that cannot be read is
    /// set aside and rebuilt from sites/, since everything in it is derived.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match Database::create(path) {
            Ok(db) => {
                let store = Store::from(db);
                match store.current_versions() {
                    Ok(_) => Ok(store),
                    Err(e) => {
                        drop(store);
                        Self::rebuild(path, &e.to_string())
                    }
                }
            }
            Err(e @ redb::DatabaseError::DatabaseAlreadyOpen) => Err(StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(e),
            }),
            Err(e) => Self::rebuild(path, &e.to_string()),
        }
    }

    /// Opens a store that must already exist, without repairing or
    /// rebuilding it (for commands that only read).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Database::open(path)
            .map(Store::from)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    }

    fn rebuild(path: &Path, why: &str) -> Result<Store, StoreError> {
        tracing::warn!(store = %path.display(), error = why, "store unreadable; rebuilding it from sites/");
        let aside = path.with_extension("redb.damaged");
        if std::fs::rename(path, &aside).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        Ok(Store::from(db))
    }

    fn from(db: Database) -> Store {
        Store {
            db: arc_swap::ArcSwapOption::from_pointee(db),
        }
    }

    /// The open database; an error once the store is closed.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.load_full().ok_or(StoreError::Closed)
    }

    /// Closes the store: it is written back cleanly once the operations in
    /// flight finish, and every later operation fails.
    pub fn close(&self) {
        self.db.store(None);
    }

    /// Every site's served version number.
    pub fn current_versions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, CURRENT)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// The version numbers kept for a site, oldest first.
    pub fn versions(&self, site: &str) -> Result<Vec<u64>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, VERSIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.range((site, 0)..=(site, u64::MAX))? {
            out.push(row?.0.value().1);
        }
        Ok(out)
    }

    pub fn manifest(&self, site: &str, number: u64) -> Result<Manifest, StoreError> {
        let tx = self.db()?.begin_read()?;
        let table = tx.open_table(VERSIONS)?;
        let raw = table
            .get((site, number))?
            .ok_or_else(|| StoreError::Damaged(format!("{site} version {number} missing")))?;
        serde_json::from_slice(raw.value())
            .map_err(|e| StoreError::Damaged(format!("{site} version {number}: {e}")))
    }

    /// Loads a kept version into memory, ready to serve.
    pub fn load_version(&self, site: &str, number: u64) -> Result<SiteVersion, StoreError> {
        let manifest = self.manifest(site, number)?;
        let tx = self.db()?.begin_read()?;
        let blobs = tx.open_table(BLOBS)?;
        SiteVersion::from_manifest(site, number, &manifest, |hash, enc| {
            let key = blob_key(hash, enc);
            match blobs.get(key.as_slice()) {
                Ok(Some(v)) => Ok(bytes::Bytes::copy_from_slice(v.value())),
                Ok(None) => Err(StoreError::Damaged(format!("{site}: blob {hash} missing"))),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Points `site` at the kept version before the one it serves, and
    /// returns that version's number.
    pub fn rollback(&self, site: &str) -> Result<u64, StoreError> {
        let current = self
            .current_versions()?
            .into_iter()
            .find(|(s, _)| s == site)
            .map(|(_, n)| n)
            .ok_or_else(|| StoreError::UnknownSite(site.to_string()))?;
        let target = self
            .versions(site)?
            .into_iter()
            .filter(|n| *n < current)
            .max()
            .ok_or_else(|| StoreError::NoOlderVersion(site.to_string()))?;
        self.set_current(site, target)?;
        Ok(target)
    }

    /// Points `site` at one of its kept versions.
    pub fn set_current(&self, site: &str, number: u64) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        {
            let versions = tx.open_table(VERSIONS)?;
            if versions.get((site, number))?.is_none() {
                return Err(StoreError::UnknownSite(format!("{site} version {number}")));
            }
            tx.open_table(CURRENT)?.insert(site, number)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a site whose folder is gone.
    pub fn remove_site(&self, site: &str) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        {
            tx.open_table(CURRENT)?.remove(site)?;
            tx.open_table(VERSIONS)?
                .retain_in((site, 0)..=(site, u64::MAX), |_, _| false)?;
            tx.open_table(SCANS)?.retain(|(s, _), _| s != site)?;
        }
        // After the tables above are closed: it opens `versions` again.
        collect_garbage(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

/// Counts and fragment copies are rebuilt quickly if a crash loses the last
/// second of them, so their writes skip the fsync.
impl Store {
    pub fn experiments(&self) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, EXPERIMENTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let ((e, var), (x, c)) = (k.value(), v.value());
            out.push((e.to_string(), var.to_string(), x, c));
        }
        Ok(out)
    }

    pub fn save_experiments(&self, rows: &[(String, String, u64, u64)]) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut table = tx.open_table(EXPERIMENTS)?;
            for (e, v, x, c) in rows {
                table.insert((e.as_str(), v.as_str()), (*x, *c))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn fragments(&self) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, FRAGMENTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (at, json) = v.value();
            out.push((k.value().to_string(), at, json.to_vec()));
        }
        Ok(out)
    }

    /// Keeps a fragment source's copy, unless it is a new source and
    /// `limit` sources are kept already (visitors can make new ones).
    pub fn save_fragment(
        &self,
        url: &str,
        fetched_ms: u64,
        json: &[u8],
        limit: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut table = tx.open_table(FRAGMENTS)?;
            if table.len()? < limit as u64 || table.get(url)?.is_some() {
                table.insert(url, (fetched_ms, json))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A table for reading; `None` before anything was ever written to it.
fn readable_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn blob_key(hash: &str, enc: Encoding) -> Vec<u8> {
    let mut key = Vec::with_capacity(hash.len() + 1);
    key.extend_from_slice(hash.as_bytes());
    key.push(enc as u8);
    key
}

/// Deletes blobs that no kept version refers to.
fn collect_garbage(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let live = referenced(tx)?;
    let mut blobs = tx.open_table(BLOBS)?;
    blobs.retain(|key, _| {
        let hash = &key[..key.len().saturating_sub(1)];
        std::str::from_utf8(hash).is_ok_and(|h| live.contains(h))
    })?;
    Ok(())
}

/// Deletes the blobs of `dropped` (hashes of versions just removed) that no
/// kept version refers to: unlike [`collect_garbage`], without walking
/// every blob in the store.
fn forget_blobs(
    tx: &redb::WriteTransaction,
    dropped: std::collections::HashSet<String>,
) -> Result<(), StoreError> {
    if dropped.is_empty() {
        return Ok(());
    }
    let live = referenced(tx)?;
    let mut blobs = tx.open_table(BLOBS)?;
    for hash in dropped.difference(&live) {
        for enc in Encoding::ALL {
            blobs.remove(blob_key(hash, enc).as_slice())?;
        }
    }
    Ok(())
}

/// The hashes every kept version of every site refers to.
fn referenced(
    tx: &redb::WriteTransaction,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut live = std::collections::HashSet::new();
    let versions = tx.open_table(VERSIONS)?;
    for row in versions.iter()? {
        let (_, raw) = row?;
        let manifest: Manifest =
            serde_json::from_slice(raw.value()).map_err(|e| StoreError::Damaged(e.to_string()))?;
        live.extend(manifest.files.into_iter().map(|f| f.hash));
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_copies_stop_at_the_limit_but_kept_sources_still_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        store.save_fragment("a", 1, b"1", 2).unwrap();
        store.save_fragment("b", 1, b"1", 2).unwrap();
        store.save_fragment("c", 1, b"1", 2).unwrap();
        store.save_fragment("a", 2, b"2", 2).unwrap();
        let mut kept = store.fragments().unwrap();
        kept.sort();
        assert_eq!(
            kept,
            vec![
                ("a".into(), 2, b"2".to_vec()),
                ("b".into(), 1, b"1".to_vec())
            ]
        );
    }
}
