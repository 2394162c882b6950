//! Watching sites/ and rules/: file events, a quiet period, then a new
//! version of the site (or a new generation of rules).
//!
//! A site is ingested once no event arrived for [`QUIET`] (or, under
//! constant writes, [`MAX_WAIT`] after its first change) and no file of it
//! is still open for writing (modified but not yet closed), so a file being
//! written in slow chunks is taken only when its writer closes it. Rules
//! files are treated the same way.
//!
//! Each folder is watched on its own and symlinks are never followed: a
//! folder that cannot be watched leaves the others watched, and a symlink
//! to another site or outside the root adds no watch there (ingest does not
//! follow such links either).

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{mpsc, Mutex, Weak};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};

use crate::live::Live;
use crate::store::IngestError;

/// How long a site must be still before it is ingested.
pub const QUIET: Duration = Duration::from_millis(150);
/// The longest a change waits for a quiet period: files rewritten more
/// often than [`QUIET`] still go live.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// A file open for writing longer than this without any event is taken as
/// abandoned, so a crashed writer cannot freeze its site.
const STALLED_WRITE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pending {
    first_event: Option<Instant>,
    last_event: Option<Instant>,
    open_writes: HashMap<PathBuf, Instant>,
}

/// What a change is a change of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Changed {
    Site(String),
    Rules,
}

/// The folders watched, each without recursion.
pub struct Folders {
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl Folders {
    /// Watches `dir` and the folders under it, not following symlinks. A
    /// folder that cannot be watched is logged and skipped (ingest reports
    /// it in /status when it cannot be read either).
    fn add(&mut self, dir: &Path) {
        let mut todo = vec![dir.to_path_buf()];
        while let Some(dir) = todo.pop() {
            if !self.watched.contains(&dir) {
                if let Err(e) = self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    // Gone again already (a temporary folder): nothing to see.
                    if !matches!(e.kind, notify::ErrorKind::PathNotFound) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder; not watched until its permissions change");
                    }
                    continue;
                }
                self.watched.insert(dir.clone());
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }

    /// Stops watching `dir` and the folders under it (moved or deleted).
    fn remove(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .range(dir.to_path_buf()..)
            .take_while(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for d in gone {
            let _ = self.watcher.unwatch(&d);
            self.watched.remove(&d);
        }
    }

    /// Follows folders created, moved or deleted.
    fn follow(&mut self, event: &Event) {
        match (&event.kind, event.paths.as_slice()) {
            (EventKind::Create(CreateKind::Folder), [dir]) => self.add(dir),
            (EventKind::Remove(_), [path])
            | (EventKind::Modify(ModifyKind::Name(RenameMode::From)), [path]) => self.remove(path),
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), [path]) if is_folder(path) => {
                self.add(path)
            }
            // A folder that could not be watched, whose permissions changed.
            (EventKind::Modify(ModifyKind::Metadata(_)), [path])
                if !self.watched.contains(path) && is_folder(path) =>
            {
                self.add(path)
            }
            (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to]) => {
                self.remove(from);
                if is_folder(to) {
                    self.add(to)
                }
            }
            _ => {}
        }
    }
}

/// A folder, not a symlink to one.
fn is_folder(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Watches `root`'s sites/ and rules/ until the returned value is dropped.
pub fn watch_root(live: Arc<Live>, root: &Path) -> notify::Result<Arc<Mutex<Folders>>> {
    let (tx, rx) = mpsc::channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    let mut folders = Folders {
        watcher,
        watched: BTreeSet::new(),
    };
    let mut dirs = Vec::new();
    for name in ["sites", "rules"] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
        let dir = dir.canonicalize().map_err(notify::Error::io)?;
        // The top folders must be watched; anything below may fail alone.
        folders.watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        folders.watched.insert(dir.clone());
        folders.add(&dir);
        dirs.push(dir);
    }
    let rules_dir = dirs.pop().expect("two folders");
    let sites_dir = dirs.pop().expect("two folders");
    let folders = Arc::new(Mutex::new(folders));
    let following = Arc::downgrade(&folders);
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || debounce(live, following, &sites_dir, &rules_dir, rx))
        .map_err(notify::Error::io)?;
    Ok(folders)
}

fn debounce(
    live: Arc<Live>,
    folders: Weak<Mutex<Folders>>,
    sites_dir: &Path,
    rules_dir: &Path,
    rx: mpsc::Receiver<notify::Result<Event>>,
) {
    let mut pending: HashMap<Changed, Pending> = HashMap::new();
    loop {
        let wait = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            QUIET / 3
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(event)) => {
                if let Some(folders) = folders.upgrade() {
                    folders.lock().unwrap().follow(&event);
                }
                note(&mut pending, sites_dir, rules_dir, &event)
            }
            Ok(Err(e)) => {
                // Lost events (queue overflow): rescan everything, and
                // watch the folders whose creation may have been lost.
                tracing::warn!(error = %e, "file watch error; rescanning all sites");
                if let Some(folders) = folders.upgrade() {
                    let mut folders = folders.lock().unwrap();
                    folders.add(sites_dir);
                    folders.add(rules_dir);
                }
                live.refresh_all();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        // What is due, with the files still being written.
        let due: Vec<(Changed, Vec<PathBuf>)> = pending
            .iter_mut()
            .filter_map(|(changed, p)| {
                p.open_writes.retain(|path, since| {
                    let stalled = now.duration_since(*since) > STALLED_WRITE;
                    if stalled {
                        tracing::warn!(path = %path.display(), "file open for writing too long; taking it as it is");
                    }
                    !stalled
                });
                let quiet = p.last_event.is_none_or(|t| now.duration_since(t) >= QUIET);
                let waited = p.first_event.is_some_and(|t| now.duration_since(t) >= MAX_WAIT);
                let settled = p.open_writes.is_empty();
                let due = match changed {
                    // A site waits no longer than MAX_WAIT: it goes live
                    // with the files still being written held back.
                    Changed::Site(_) => quiet && settled || waited,
                    // Rules wait for their files to be closed.
                    Changed::Rules => (quiet || waited) && settled,
                };
                due.then(|| (changed.clone(), p.open_writes.keys().cloned().collect()))
            })
            .collect();
        for (changed, held) in due {
            let busy = match &changed {
                Changed::Site(site) => matches!(
                    live.refresh_holding(site, held.clone()),
                    Err(IngestError::Busy(_))
                ),
                Changed::Rules => {
                    let _ = live.reload_rules();
                    false
                }
            };
            let p = pending.get_mut(&changed).expect("due changes are pending");
            if busy {
                // Caught mid-write: try again after another quiet period.
                p.last_event = Some(now);
            } else if !held.is_empty() {
                // Taken up again once they are closed, or after MAX_WAIT.
                p.first_event = Some(now);
            } else {
                pending.remove(&changed);
            }
        }
    }
}

/// Records an event against what it changes.
fn note(
    pending: &mut HashMap<Changed, Pending>,
    sites_dir: &Path,
    rules_dir: &Path,
    event: &Event,
) {
    let relevant = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    if !relevant {
        return;
    }
    let now = Instant::now();
    for path in &event.paths {
        let changed = if path.starts_with(rules_dir) {
            Changed::Rules
        } else {
            match site_of(sites_dir, path) {
                Some(site) => Changed::Site(site),
                None => continue,
            }
        };
        let p = pending.entry(changed).or_default();
        p.first_event.get_or_insert(now);
        p.last_event = Some(now);
        match event.kind {
            EventKind::Create(CreateKind::File) if !may_be_written(path) => {}
            EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
                p.open_writes.insert(path.clone(), now);
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                p.open_writes.remove(path);
            }
            _ => {}
        }
    }
}

/// Whether a file just created may still be open for writing: a symlink, a
/// new hard link or a special file is never closed after a write, so waiting
/// for that would stall its site.
fn may_be_written(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.nlink() == 1)
}

/// `sites/<site>/...` -> `<site>`.
fn site_of(sites_dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(sites_dir).ok()?;
    let first = rel.components().next()?;
    let name = first.as_os_str().to_str()?;
    (!name.starts_with('.')).then(|| name.to_string())
}
