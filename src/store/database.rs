//! The store itself: one redb database holding the index of bodies, each
//! site's scans and kept versions, and the counts that outlive a restart.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;

use super::error::StoreError;
use super::packs::{self, PackWriter, Packs};
use super::schema::{
    blob_key, decode, encode, unix_ms, BlobRow, Encoding, ExperimentRow, FragmentRow, Manifest,
    Scan, BLOBS, CURRENT, EXPERIMENTS, FRAGMENTS, LEGACY_BLOBS, META, NOT_APPLIED, SCANS, VERSIONS,
};
use super::version::SiteVersion;

/// How many versions of each site are kept for rollback.
pub const KEPT_VERSIONS: usize = 5;

/// What one ingest writes: see [`Store::write_version`].
#[derive(Debug, Default)]
pub struct Update {
    /// Every file of the site the scan found and kept, by path.
    pub scans: Vec<(String, Scan)>,
    /// The bodies this ingest added to its pack.
    pub blobs: Vec<(String, Encoding, BlobRow)>,
    /// The new version, when the site changed.
    pub manifest: Option<Manifest>,
}

/// The store, opened once per process, and closed at shutdown so that the
/// next start needs no repair.
pub struct Store {
    db: arc_swap::ArcSwapOption<Database>,
    path: PathBuf,
    /// Device and inode of the file opened: when the path holds no file or
    /// another one, the store was deleted or replaced under the process.
    file: Mutex<Option<(u64, u64)>>,
    health: Mutex<Health>,
    packs: Packs,
    /// Files above this size are stored as they are, not compressed.
    compress_max: u64,
}

/// How the store fares, for the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// What is wrong now; `None` once it is put right.
    pub problem: Option<String>,
    /// The last time the store was set aside or made again, and why; kept
    /// until a restart.
    pub rebuilt: Option<String>,
    pub rebuilt_unix_ms: Option<u64>,
}

impl Store {
    /// Opens the store, or starts a new one. A store that cannot be read is
    /// set aside and rebuilt from sites/, since everything in it is derived.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let (mut db, rebuilt) = open_or_rebuild(path)?;
        forget_legacy_bodies(&mut db, path)?;
        let store = Store::from(db, path);
        if let Some(why) = rebuilt {
            store.note_rebuilt(why);
        }
        store.check_packs()?;
        Ok(store)
    }

    /// The start-up check of the packs: rows whose pack is missing or too
    /// short (disk damage, someone editing cache/) are forgotten, with the
    /// scans naming them, so ingest reads those files again from sites/;
    /// packs no row needs are deleted.
    fn check_packs(&self) -> Result<(), StoreError> {
        let sizes = self.packs.sizes();
        let mut lost = HashSet::new();
        let mut live = HashSet::new();
        {
            let tx = self.db()?.begin_read()?;
            if let Some(blobs) = readable_table(&tx, BLOBS)? {
                for row in blobs.iter()? {
                    let (key, row) = row?;
                    let row = row.value();
                    let whole = sizes
                        .get(&row.pack)
                        .is_some_and(|size| row.offset.saturating_add(row.len) <= *size);
                    if whole {
                        live.insert(row.pack);
                    } else {
                        lost.insert(key.value().0.to_string());
                    }
                }
            }
        }
        if lost.is_empty() {
            self.packs.sweep(&live);
            return Ok(());
        }
        tracing::warn!(store = %self.path.display(), bodies = lost.len(), "stored bodies missing from cache/; their files are read again from sites/");
        self.forget_bodies(&lost)
    }

    /// Files above `bytes` are stored as they are, not compressed: the
    /// work and the memory a compressor needs grow with the file.
    pub fn with_compress_max(mut self, bytes: u64) -> Store {
        self.compress_max = bytes;
        self
    }

    pub fn compress_max(&self) -> u64 {
        self.compress_max
    }

    /// Opens a store that must already exist, without repairing or
    /// rebuilding it (for commands that only read).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        let opened = guarded(|| database().open(path)).map_err(|panic| StoreError::Unreadable {
            path: path.to_path_buf(),
            panic,
        })?;
        opened
            .map(|db| Store::from(db, path))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    }

    fn from(db: Database, path: &Path) -> Store {
        Store {
            db: arc_swap::ArcSwapOption::from_pointee(db),
            path: path.to_path_buf(),
            file: Mutex::new(file_id(path).ok()),
            health: Mutex::new(Health::default()),
            packs: Packs::new(path.with_extension("packs")),
            compress_max: crate::config::DEFAULT_COMPRESS_MAX,
        }
    }

    /// How the store fares now.
    pub fn health(&self) -> Health {
        self.health.lock().unwrap().clone()
    }

    fn note_rebuilt(&self, why: String) {
        let mut health = self.health.lock().unwrap();
        health.rebuilt = Some(why);
        health.rebuilt_unix_ms = Some(unix_ms(SystemTime::now()));
    }

    /// Records what is wrong now (`None`: nothing), logging it once.
    fn set_problem(&self, problem: Option<String>) {
        let mut health = self.health.lock().unwrap();
        if health.problem == problem {
            return;
        }
        match &problem {
            Some(p) => tracing::error!(store = %self.path.display(), "{p}"),
            None => tracing::info!(store = %self.path.display(), "store problem solved"),
        }
        health.problem = problem;
    }

    /// Whether the store file was deleted or replaced while open: writes
    /// would go on into a file that no later start can read.
    pub fn lost(&self) -> bool {
        if self.db.load().is_none() {
            return false;
        }
        match file_id(&self.path) {
            Ok(id) => {
                let lost = Some(id) != *self.file.lock().unwrap();
                if !lost {
                    self.set_problem(None);
                }
                lost
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                true
            }
            Err(e) => {
                self.set_problem(Some(format!("cannot check the store file: {e}")));
                false
            }
        }
    }

    /// Opens the store again at its path in place of the one open now. A
    /// deleted file still reads through the open handle, so a new store
    /// starts as a copy of it: no version, count or fragment copy is lost.
    /// The caller holds off other writes meanwhile and then ingests every
    /// site. False when that failed (logged and kept as the problem).
    pub fn reopen(&self) -> bool {
        let Some(old) = self.db.load_full() else {
            return false;
        };
        if self.health().problem.is_none() {
            tracing::warn!(store = %self.path.display(), "store file deleted or replaced while running; making it again");
        }
        let made = open_or_rebuild(&self.path).and_then(|(db, _)| {
            let copied = current_versions(&db)?.is_empty();
            if copied {
                copy_store(&old, &db)?;
            }
            Ok((db, copied))
        });
        match made {
            Ok((db, copied)) => {
                if let Err(e) = self.packs.restore_missing() {
                    tracing::error!(store = %self.path.display(), error = %e, "cannot write back deleted pack files; the next start ingests again what they held");
                }
                *self.file.lock().unwrap() = file_id(&self.path).ok();
                self.db.store(Some(Arc::new(db)));
                self.note_rebuilt(if copied {
                    "the store file was deleted or replaced while running; made again as a copy of the one open".into()
                } else {
                    "the store file was replaced while running by another store, which is used now".into()
                });
                self.set_problem(None);
                true
            }
            Err(e) => {
                self.set_problem(Some(format!(
                    "cannot make the store again ({e}); changes are served but not kept"
                )));
                false
            }
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
        current_versions(&*self.db()?)
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
        decode(raw.value(), &format!("{site} version {number}"))
    }

    /// A site's newest kept version and its manifest.
    pub fn newest(&self, site: &str) -> Result<Option<(u64, Manifest)>, StoreError> {
        match self.versions(site)?.last() {
            Some(n) => Ok(Some((*n, self.manifest(site, *n)?))),
            None => Ok(None),
        }
    }

    /// Loads a kept version, ready to serve: its bodies are slices of the
    /// mapped packs, so this reads the index, not the bytes.
    pub fn load_version(&self, site: &str, number: u64) -> Result<SiteVersion, StoreError> {
        let manifest = self.manifest(site, number)?;
        let tx = self.db()?.begin_read()?;
        let blobs = tx.open_table(BLOBS)?;
        SiteVersion::from_manifest(site, number, &manifest, |hash, enc| {
            match blobs.get(blob_key(hash, enc))? {
                Some(row) => {
                    let row = row.value();
                    Ok((self.packs.body(&row)?, row.digest))
                }
                None => Err(StoreError::Damaged(format!("{site}: body {hash} missing"))),
            }
        })
    }

    /// What the last scan of `site` saw of each file whose body is still
    /// stored, with the encodings stored for it.
    pub fn known_files(
        &self,
        site: &str,
    ) -> Result<HashMap<String, (Scan, [bool; 3])>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let (Some(scans), Some(blobs)) = (readable_table(&tx, SCANS)?, readable_table(&tx, BLOBS)?)
        else {
            return Ok(HashMap::new());
        };
        let mut known = HashMap::new();
        for row in scans.range((site, "")..)? {
            let (key, raw) = row?;
            let (s, rel) = key.value();
            if s != site {
                break;
            }
            let Ok(scan) = decode::<Scan>(raw.value(), "scan") else {
                continue;
            };
            let stored = encodings(&blobs, &scan.hash)?;
            if stored[Encoding::Identity as usize] {
                known.insert(rel.to_string(), (scan, stored));
            }
        }
        Ok(known)
    }

    /// Which encodings of the content `hash` are stored.
    pub fn stored(&self, hash: &str) -> Result<[bool; 3], StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(blobs) = readable_table(&tx, BLOBS)? else {
            return Ok([false; 3]);
        };
        encodings(&blobs, hash)
    }

    /// A new pack for one ingest's bodies.
    pub fn pack_writer(&self) -> PackWriter<'_> {
        self.packs.writer()
    }

    /// Writes what one ingest found, in one transaction: the site's scans,
    /// the new bodies' rows and, when the site changed, its new version,
    /// made current, with the versions it pushes out and the bodies only
    /// they used. `pack` must be finished (on disk) before. Returns the new
    /// version's number.
    pub fn write_version(&self, site: &str, update: Update) -> Result<Option<u64>, StoreError> {
        let tx = self.db()?.begin_write()?;
        let mut number = None;
        let mut dropped = HashSet::new();
        {
            let mut scans = tx.open_table(SCANS)?;
            scans.retain(|(s, _), _| s != site)?;
            for (rel, scan) in &update.scans {
                scans.insert((site, rel.as_str()), encode(scan).as_slice())?;
            }
            let mut blobs = tx.open_table(BLOBS)?;
            for (hash, enc, row) in &update.blobs {
                blobs.insert(blob_key(hash, *enc), row)?;
            }
            if let Some(manifest) = &update.manifest {
                let mut versions = tx.open_table(VERSIONS)?;
                let mut kept = Vec::new();
                for row in versions.range((site, 0)..=(site, u64::MAX))? {
                    kept.push(row?.0.value().1);
                }
                let new = kept.last().map_or(1, |n| n + 1);
                versions.insert((site, new), encode(manifest).as_slice())?;
                kept.push(new);
                for old in &kept[..kept.len().saturating_sub(KEPT_VERSIONS)] {
                    if let Some(raw) = versions.remove((site, *old))? {
                        // An unreadable manifest drops nothing it could name;
                        // its bodies go at the next full collection.
                        if let Ok(m) = decode::<Manifest>(raw.value(), "manifest") {
                            dropped.extend(m.files.into_iter().map(|f| f.hash));
                        }
                    }
                }
                tx.open_table(CURRENT)?.insert(site, new)?;
                number = Some(new);
            }
        }
        forget_blobs(&tx, dropped)?;
        let live = referenced_packs(&tx)?;
        tx.commit()?;
        self.packs.sweep(&live);
        Ok(number)
    }

    /// Forgets the stored body of `hash` (found damaged), and every scan
    /// that named it, so the next ingest reads those files again.
    pub fn forget_body(&self, hash: &str) -> Result<(), StoreError> {
        self.forget_bodies(&HashSet::from([hash.to_string()]))
    }

    /// Forgets the bodies of `lost` (missing or damaged) and the scans that
    /// named them, counting them as damage.
    fn forget_bodies(&self, lost: &HashSet<String>) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write()?;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            for hash in lost {
                remove_body(&mut blobs, hash)?;
            }
            tx.open_table(SCANS)?.retain(|_, raw| {
                decode::<Scan>(raw, "scan").is_ok_and(|s| !lost.contains(&s.hash))
            })?;
        }
        let live = referenced_packs(&tx)?;
        tx.commit()?;
        packs::note_damage(lost.len() as u64);
        self.packs.sweep(&live);
        Ok(())
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
        let live = referenced_packs(&tx)?;
        tx.commit()?;
        self.packs.sweep(&live);
        Ok(())
    }
}

/// Counts and fragment copies are rebuilt quickly if a crash loses the last
/// second of them, so their writes skip the fsync.
impl Store {
    pub fn experiments(&self) -> Result<Vec<ExperimentRow>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, EXPERIMENTS)? else {
            return Ok(Vec::new());
        };
        let not_applied = readable_table(&tx, NOT_APPLIED)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let ((e, var), (x, c)) = (k.value(), v.value());
            let n = match &not_applied {
                Some(t) => t.get((e, var))?.map_or(0, |n| n.value()),
                None => 0,
            };
            out.push(ExperimentRow {
                experiment: e.to_string(),
                variant: var.to_string(),
                exposures: x,
                conversions: c,
                not_applied: n,
            });
        }
        Ok(out)
    }

    /// The store's instance name: random, made once and kept. The fleet
    /// tells two boxes that claim one box id apart by it.
    pub fn instance(&self) -> Result<String, StoreError> {
        let tx = self.db()?.begin_read()?;
        if let Some(table) = readable_table(&tx, META)? {
            if let Some(v) = table.get("instance")? {
                return Ok(v.value().to_string());
            }
        }
        drop(tx);
        let tx = self.db()?.begin_write()?;
        let name = {
            let mut table = tx.open_table(META)?;
            let existing = table.get("instance")?.map(|v| v.value().to_string());
            match existing {
                Some(name) => name,
                None => {
                    let name = format!("{:016x}", fastrand::u64(..));
                    table.insert("instance", name.as_str())?;
                    name
                }
            }
        };
        tx.commit()?;
        Ok(name)
    }

    pub fn save_experiments(&self, rows: &[ExperimentRow]) -> Result<(), StoreError> {
        let mut tx = self.db()?.begin_write()?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut table = tx.open_table(EXPERIMENTS)?;
            let mut not_applied = tx.open_table(NOT_APPLIED)?;
            for r in rows {
                let key = (r.experiment.as_str(), r.variant.as_str());
                table.insert(key, (r.exposures, r.conversions))?;
                not_applied.insert(key, r.not_applied)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn fragments(&self) -> Result<Vec<FragmentRow>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let Some(table) = readable_table(&tx, FRAGMENTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let (at, json) = v.value();
            out.push(FragmentRow {
                url: k.value().to_string(),
                fetched_unix_ms: at,
                json: json.to_vec(),
            });
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

/// Opens or creates the database at `path`; a damaged one is set aside and
/// a new one made. Returns it, and why it was made again, if it was.
fn open_or_rebuild(path: &Path) -> Result<(Database, Option<String>), StoreError> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let why = match guarded(|| open_checked(path)) {
        Ok(Ok(db)) => return Ok((db, None)),
        // No file, and none can be made there (a folder not writable):
        // nothing to set aside.
        Ok(Err(e)) if already_open(&e) || !path.exists() => return Err(e),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!("redb {panic}"),
    };
    let aside = path.with_extension("redb.damaged");
    tracing::warn!(store = %path.display(), error = why, set_aside = %aside.display(), "store unreadable; rebuilding it from sites/");
    if std::fs::rename(path, &aside).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let db = database().create(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let why = format!(
        "the store was unreadable ({why}); set aside as {} and rebuilt from sites/",
        aside.display()
    );
    Ok((db, Some(why)))
}

/// redb keeps the pages it reads in a cache of its own, on the heap (1 GiB
/// at most by default): the index is read once at start and little after,
/// so a small cache is enough, and memory stays flat as sites grow.
fn database() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(REDB_CACHE);
    builder
}

/// Bytes of store pages redb may keep in memory.
const REDB_CACHE: usize = 8 << 20;

/// A store from a release that kept bodies in redb: its versions point at
/// bodies no pack holds, so they are forgotten and every site is ingested
/// again into packs (the counts and fragment copies stay), and the file
/// shrinks to what is left.
fn forget_legacy_bodies(db: &mut Database, path: &Path) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    if !tx.delete_table(LEGACY_BLOBS)? {
        return Ok(());
    }
    tracing::info!(store = %path.display(), "store from an older release: its bodies move to pack files as sites are ingested again");
    tx.delete_table(SCANS)?;
    tx.delete_table(VERSIONS)?;
    tx.delete_table(CURRENT)?;
    tx.commit()?;
    db.compact()
        .map_err(|e| StoreError::Db(Box::new(e.into())))?;
    Ok(())
}

/// Whether another process has the store open: nothing is wrong with it.
fn already_open(e: &StoreError) -> bool {
    matches!(e, StoreError::Open { source, .. }
        if matches!(**source, redb::DatabaseError::DatabaseAlreadyOpen))
}

/// Opens the database and checks every page of it. redb checks no
/// checksum on a read, so a damaged page would otherwise make it panic, or
/// serve wrong bytes, at some later read.
fn open_checked(path: &Path) -> Result<Database, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let mut db = database().create(path).map_err(open_error)?;
    if !db.check_integrity().map_err(open_error)? {
        tracing::warn!(store = %path.display(), "store was damaged and is repaired; its last change may be lost");
    }
    // The table every start reads first, in the layout this build expects.
    current_versions(&db)?;
    Ok(db)
}

fn current_versions(db: &Database) -> Result<Vec<(String, u64)>, StoreError> {
    let tx = db.begin_read()?;
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

/// Copies every table of `from` into `to`, in one transaction (a table added
/// to the store must be added here too).
fn copy_store(from: &Database, to: &Database) -> Result<(), StoreError> {
    fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
        from: &redb::ReadTransaction,
        to: &redb::WriteTransaction,
        table: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        let Some(source) = readable_table(from, table)? else {
            return Ok(());
        };
        let mut dest = to.open_table(table)?;
        for row in source.iter()? {
            let (k, v) = row?;
            dest.insert(k.value(), v.value())?;
        }
        Ok(())
    }
    let read = from.begin_read()?;
    let write = to.begin_write()?;
    copy(&read, &write, BLOBS)?;
    copy(&read, &write, SCANS)?;
    copy(&read, &write, VERSIONS)?;
    copy(&read, &write, CURRENT)?;
    copy(&read, &write, EXPERIMENTS)?;
    copy(&read, &write, NOT_APPLIED)?;
    copy(&read, &write, FRAGMENTS)?;
    write.commit()?;
    Ok(())
}

thread_local! {
    /// While [`guarded`] runs on this thread: the panic it caught, if any.
    static CAUGHT: std::cell::RefCell<Option<Option<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic in it into an error: redb panics on some
/// damaged files rather than returning one. The panic is not printed; the
/// caller logs it with what it means.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = CAUGHT.with(|c| match c.borrow_mut().as_mut() {
                Some(slot) => {
                    *slot = Some(info.to_string().replace('\n', " "));
                    true
                }
                None => false,
            });
            if !caught {
                print(info);
            }
        }));
    });
    CAUGHT.with(|c| *c.borrow_mut() = Some(None));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let caught = CAUGHT.with(|c| c.borrow_mut().take()).flatten();
    result.map_err(|_| caught.unwrap_or_else(|| "panicked".into()))
}

/// Device and inode of the file at `path`.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Deletes the rows of bodies that no kept version refers to.
fn collect_garbage(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let live = referenced(tx)?;
    tx.open_table(BLOBS)?
        .retain(|(hash, _), _| live.contains(hash))?;
    Ok(())
}

/// Deletes the rows of the bodies of `dropped` (hashes of versions just
/// removed) that no kept version refers to: unlike [`collect_garbage`],
/// without walking every row.
fn forget_blobs(tx: &redb::WriteTransaction, dropped: HashSet<String>) -> Result<(), StoreError> {
    if dropped.is_empty() {
        return Ok(());
    }
    let live = referenced(tx)?;
    let mut blobs = tx.open_table(BLOBS)?;
    for hash in dropped.difference(&live) {
        remove_body(&mut blobs, hash)?;
    }
    Ok(())
}

/// Which encodings of the content `hash` have a row in `blobs`.
fn encodings(
    blobs: &impl ReadableTable<(&'static str, u8), BlobRow>,
    hash: &str,
) -> Result<[bool; 3], StoreError> {
    let mut stored = [false; 3];
    for enc in Encoding::ALL {
        stored[enc as usize] = blobs.get(blob_key(hash, enc))?.is_some();
    }
    Ok(stored)
}

/// Deletes the rows of every encoding of the content `hash`.
fn remove_body(blobs: &mut redb::Table<(&str, u8), BlobRow>, hash: &str) -> Result<(), StoreError> {
    for enc in Encoding::ALL {
        blobs.remove(blob_key(hash, enc))?;
    }
    Ok(())
}

/// The hashes every kept version of every site refers to.
fn referenced(tx: &redb::WriteTransaction) -> Result<HashSet<String>, StoreError> {
    let mut live = HashSet::new();
    let versions = tx.open_table(VERSIONS)?;
    for row in versions.iter()? {
        let (_, raw) = row?;
        let manifest: Manifest = decode(raw.value(), "manifest")?;
        live.extend(manifest.files.into_iter().map(|f| f.hash));
    }
    Ok(live)
}

/// The packs some row points into: every other pack file is garbage.
fn referenced_packs(tx: &redb::WriteTransaction) -> Result<HashSet<u64>, StoreError> {
    let mut live = HashSet::new();
    for row in tx.open_table(BLOBS)?.iter()? {
        live.insert(row?.1.value().pack);
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
        let row = |url: &str, at, json: &[u8]| FragmentRow {
            url: url.into(),
            fetched_unix_ms: at,
            json: json.to_vec(),
        };
        assert_eq!(kept, vec![row("a", 2, b"2"), row("b", 1, b"1")]);
    }

    #[test]
    fn experiment_rows_from_before_not_applied_load_it_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        // A store written before `not_applied` was counted.
        let tx = store.db().unwrap().begin_write().unwrap();
        tx.open_table(EXPERIMENTS)
            .unwrap()
            .insert(("hero", "bold"), (7, 2))
            .unwrap();
        tx.commit().unwrap();
        let row = |not_applied| ExperimentRow {
            experiment: "hero".into(),
            variant: "bold".into(),
            exposures: 7,
            conversions: 2,
            not_applied,
        };
        assert_eq!(store.experiments().unwrap(), vec![row(0)]);
        store.save_experiments(&[row(3)]).unwrap();
        assert_eq!(store.experiments().unwrap(), vec![row(3)]);
    }

    #[test]
    fn a_copied_store_keeps_every_count() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(&dir.path().join("from.redb")).unwrap();
        let row = ExperimentRow {
            experiment: "hero".into(),
            variant: "bold".into(),
            exposures: 7,
            conversions: 2,
            not_applied: 3,
        };
        from.save_experiments(std::slice::from_ref(&row)).unwrap();
        let to = Store::open(&dir.path().join("to.redb")).unwrap();
        copy_store(&from.db().unwrap(), &to.db().unwrap()).unwrap();
        assert_eq!(to.experiments().unwrap(), vec![row]);
    }

    #[test]
    fn a_store_from_before_packs_is_ingested_again_and_keeps_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            // An older release's store: bodies in `blobs`, a version of a
            // site pointing at them, and experiment counts.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(LEGACY_BLOBS)
                .unwrap()
                .insert(&b"hash\0"[..], &vec![7u8; 100_000][..])
                .unwrap();
            tx.open_table(VERSIONS)
                .unwrap()
                .insert(("s", 1), &b"{}"[..])
                .unwrap();
            tx.open_table(CURRENT).unwrap().insert("s", 1).unwrap();
            tx.open_table(EXPERIMENTS)
                .unwrap()
                .insert(("hero", "bold"), (7, 2))
                .unwrap();
            tx.commit().unwrap();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let store = Store::open(&path).unwrap();
        assert!(store.current_versions().unwrap().is_empty());
        assert!(store.versions("s").unwrap().is_empty());
        assert_eq!(store.experiments().unwrap()[0].exposures, 7);
        let tx = store.db().unwrap().begin_read().unwrap();
        assert!(readable_table(&tx, LEGACY_BLOBS).unwrap().is_none());
        drop(tx);
        store.close();
        assert!(
            std::fs::metadata(&path).unwrap().len() < before,
            "compacted"
        );
    }
}
