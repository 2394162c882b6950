//! Pack files: where stored bodies live, outside the heap.
//!
//! An ingest appends the bodies it reads to one new pack, fsyncs it and only
//! then commits the version that refers to it, so a crash leaves at most an
//! unreferenced pack, removed at the next start. A pack is never changed once
//! written; it is mapped read-only once, every version's bodies are slices of
//! the mapping, and the kernel's page cache keeps what is hot. One pack per
//! ingest (rather than one file per body) keeps the number of mappings and
//! open files to a few per site: a group of sites has tens of thousands of
//! bodies, more than a process may map one by one.
//!
//! A pack is deleted once no index row refers to it (see `Store`'s garbage
//! collection); a version still served from it keeps its mapping until it
//! is replaced.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::error::StoreError;
use super::schema::BlobRow;

/// Stored bodies found missing or damaged since start, for the metrics.
static DAMAGED: AtomicU64 = AtomicU64::new(0);

pub(super) fn note_damage(bodies: u64) {
    DAMAGED.fetch_add(bodies, Ordering::Relaxed);
}

/// Stored bodies found missing or damaged since start.
pub fn damaged_total() -> u64 {
    DAMAGED.load(Ordering::Relaxed)
}

/// The folder of pack files, and the packs mapped so far.
pub struct Packs {
    dir: PathBuf,
    mapped: Mutex<HashMap<u64, Bytes>>,
    /// Packs being written: no row points at them yet, but they are not
    /// garbage.
    writing: Mutex<HashSet<u64>>,
}

impl Packs {
    pub fn new(dir: PathBuf) -> Packs {
        Packs {
            dir,
            mapped: Mutex::new(HashMap::new()),
            writing: Mutex::new(HashSet::new()),
        }
    }

    fn path(&self, pack: u64) -> PathBuf {
        pack_path(&self.dir, pack)
    }

    /// The bytes a row points at, from the pack's mapping.
    pub fn body(&self, row: &BlobRow) -> Result<Bytes, StoreError> {
        let whole = self.mapping(row.pack)?;
        let end = row.offset.saturating_add(row.len);
        if end > whole.len() as u64 {
            return Err(StoreError::Damaged(format!(
                "pack {} is shorter than its index says",
                self.path(row.pack).display()
            )));
        }
        Ok(whole.slice(row.offset as usize..end as usize))
    }

    fn mapping(&self, pack: u64) -> Result<Bytes, StoreError> {
        let mut mapped = self.mapped.lock().unwrap();
        if let Some(whole) = mapped.get(&pack) {
            return Ok(whole.clone());
        }
        let path = self.path(pack);
        let io = |e: io::Error| StoreError::Damaged(format!("pack {}: {e}", path.display()));
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let whole = if len == 0 {
            Bytes::new()
        } else {
            crate::zero_copy::map(
                file,
                usize::try_from(len).map_err(io::Error::other).map_err(io)?,
            )
            .map_err(io)?
        };
        mapped.insert(pack, whole.clone());
        Ok(whole)
    }

    /// A new pack for one ingest to append to.
    pub fn writer(&self) -> PackWriter<'_> {
        PackWriter {
            packs: self,
            open: Mutex::new(None),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Deletes the packs no row refers to. `live` are the ones rows refer
    /// to; a pack not in it is either garbage whose deletion a crash
    /// interrupted or one an ingest was writing when it stopped.
    pub fn sweep(&self, live: &HashSet<u64>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let unused: Vec<u64> = entries
            .flatten()
            .filter_map(|e| pack_id(&e.file_name().to_string_lossy()))
            .filter(|id| !live.contains(id))
            .collect();
        let writing = self.writing.lock().unwrap();
        let unused: Vec<u64> = unused
            .into_iter()
            .filter(|id| !writing.contains(id))
            .collect();
        drop(writing);
        self.remove(unused);
    }

    /// Deletes packs: their mappings stay until the last version served
    /// from them is gone.
    pub fn remove(&self, packs: impl IntoIterator<Item = u64>) {
        let mut mapped = self.mapped.lock().unwrap();
        for pack in packs {
            mapped.remove(&pack);
            if let Err(e) = std::fs::remove_file(self.path(pack)) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(pack = %self.path(pack).display(), error = %e, "cannot delete unused pack");
                }
            }
        }
    }

    /// Writes back the mapped packs whose files are gone (cache/ deleted
    /// while running), so that the index still matches the disk.
    pub fn restore_missing(&self) -> io::Result<()> {
        let mapped = self.mapped.lock().unwrap().clone();
        for (pack, whole) in mapped {
            let path = self.path(pack);
            if path.exists() {
                continue;
            }
            std::fs::create_dir_all(&self.dir)?;
            let mut file = File::create(&path)?;
            file.write_all(&whole)?;
            seal(&file, &self.dir)?;
        }
        Ok(())
    }

    /// The size of each pack file on disk, for the start-up check.
    pub fn sizes(&self) -> HashMap<u64, u64> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return HashMap::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let id = pack_id(&e.file_name().to_string_lossy())?;
                Some((id, e.metadata().ok()?.len()))
            })
            .collect()
    }
}

fn pack_path(dir: &Path, pack: u64) -> PathBuf {
    dir.join(format!("{pack:016x}.pack"))
}

fn pack_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".pack")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

/// Makes a written pack durable and read-only.
fn seal(file: &File, dir: &Path) -> io::Result<()> {
    file.sync_all()?;
    file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
    // The file's name is durable once its folder is (a file with no name,
    // made when cache/ is gone, has none to keep).
    match File::open(dir) {
        Ok(dir) => dir.sync_all(),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The page size bodies sent with sendfile are aligned to.
const PAGE: u64 = 4096;

/// One ingest's new pack, appended to from every reading thread. Dropped
/// without [`PackWriter::finish`], it deletes what it wrote.
pub struct PackWriter<'a> {
    packs: &'a Packs,
    open: Mutex<Option<(u64, File, u64)>>,
    finished: std::sync::atomic::AtomicBool,
}

/// Where an appended body went.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub pack: u64,
    pub offset: u64,
}

impl PackWriter<'_> {
    /// Runs `write` on the pack (made at the first call) at its end, and
    /// returns where it started.
    fn append_with(
        &self,
        size: u64,
        write: impl FnOnce(&mut File) -> io::Result<u64>,
    ) -> io::Result<Placed> {
        let mut open = self.open.lock().unwrap();
        if open.is_none() {
            *open = Some(self.create()?);
        }
        let (pack, file, len) = open.as_mut().expect("made above");
        // A body sent with sendfile starts on a page: the kernel then hands
        // whole pages to the socket (measured: 1 MiB bodies at an odd
        // offset went out at two thirds of the rate).
        if size >= crate::zero_copy::LARGE as u64 && *len % PAGE != 0 {
            let aligned = len.next_multiple_of(PAGE);
            io::Seek::seek(file, io::SeekFrom::Start(aligned))?;
            *len = aligned;
        }
        let offset = *len;
        match write(file) {
            Ok(written) => {
                *len += written;
                Ok(Placed {
                    pack: *pack,
                    offset,
                })
            }
            Err(e) => {
                // Bytes half written stay unreferenced; later appends go
                // after them.
                *len = file.metadata().map_or(*len, |m| m.len());
                Err(e)
            }
        }
    }

    /// Appends `bytes`.
    pub fn append(&self, bytes: &[u8]) -> io::Result<Placed> {
        self.append_with(bytes.len() as u64, |file| {
            file.write_all(bytes).map(|()| bytes.len() as u64)
        })
    }

    /// Appends the first `len` bytes of `source` from its start, copied by
    /// the kernel without passing through memory here.
    pub fn append_file(&self, source: &mut File, len: u64) -> io::Result<Placed> {
        self.append_with(len, |file| {
            io::Seek::rewind(source)?;
            let copied = io::copy(&mut io::Read::take(&mut *source, len), file)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was copied",
                ));
            }
            Ok(copied)
        })
    }

    fn create(&self) -> io::Result<(u64, File, u64)> {
        loop {
            let pack = fastrand::u64(1..);
            let made = std::fs::create_dir_all(&self.packs.dir).and_then(|()| {
                File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(self.packs.path(pack))
            });
            let file = match made {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // cache/ is gone and cannot be made again (the store says
                // so): the change is still served, from a file with no name
                // that the next start does not find, so it ingests again.
                Err(_) => tempfile::tempfile()?,
            };
            self.packs.writing.lock().unwrap().insert(pack);
            return Ok((pack, file, 0));
        }
    }

    /// Makes the pack durable; its rows may be committed after this, while
    /// the writer is still held (until then no sweep deletes the pack).
    pub fn finish(&self) -> io::Result<()> {
        let open = self.open.lock().unwrap();
        if let Some((pack, file, len)) = open.as_ref() {
            seal(file, &self.packs.dir)?;
            // Mapped now, through the file written: versions load from the
            // mapping, not by opening the pack again.
            if *len > 0 {
                let whole = crate::zero_copy::map(file.try_clone()?, *len as usize)?;
                self.packs.mapped.lock().unwrap().insert(*pack, whole);
            }
        }
        self.finished.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for PackWriter<'_> {
    fn drop(&mut self) {
        if let Some((pack, _, _)) = self.open.lock().unwrap().take() {
            if !self.finished.load(Ordering::Acquire) {
                let _ = std::fs::remove_file(self.packs.path(pack));
            }
            self.packs.writing.lock().unwrap().remove(&pack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bodies_read_back_and_an_unfinished_pack_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path().join("packs"));
        let writer = packs.writer();
        let a = writer.append(b"first body").unwrap();
        let mut source = tempfile::tempfile().unwrap();
        source.write_all(b"second body, copied").unwrap();
        let b = writer.append_file(&mut source, 11).unwrap();
        let large = vec![9u8; crate::zero_copy::LARGE];
        let c = writer.append(&large).unwrap();
        assert_eq!(
            c.offset % PAGE,
            0,
            "a body sent with sendfile starts on a page"
        );
        writer.finish().unwrap();
        drop(writer);
        let row = |p: Placed, len| BlobRow {
            pack: p.pack,
            offset: p.offset,
            len,
            digest: [0; 32],
        };
        assert_eq!(packs.body(&row(a, 10)).unwrap(), &b"first body"[..]);
        assert_eq!(packs.body(&row(b, 11)).unwrap(), &b"second body"[..]);
        assert_eq!(packs.body(&row(c, large.len() as u64)).unwrap(), large);
        let past = row(c, large.len() as u64 + 1);
        assert!(packs.body(&past).is_err(), "past the end");
        assert_eq!(packs.sizes().len(), 1);

        let abandoned = packs.writer();
        abandoned.append(b"never committed").unwrap();
        drop(abandoned);
        assert_eq!(packs.sizes().len(), 1);

        let served = packs.body(&row(a, 10)).unwrap();
        packs.sweep(&HashSet::new());
        assert!(packs.sizes().is_empty());
        assert!(packs.body(&row(a, 10)).is_err(), "deleted");
        assert_eq!(served, &b"first body"[..], "still mapped while served");
    }
}
