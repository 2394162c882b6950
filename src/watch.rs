//! Watching sites/: file events, a quiet period, then a new version.
//!
//! A site is ingested once no event arrived for [`QUIET`] and no file of it
//! is still open for writing (modified but not yet closed), so a file being
//! written in slow chunks is taken only when its writer closes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};

use crate::live::Live;
use crate::store::IngestError;

/// How long a site must be still before it is ingested.
pub const QUIET: Duration = Duration::from_millis(150);
/// A file open for writing longer than this without any event is taken as
/// abandoned, so a crashed writer cannot freeze its site.
const STALLED_WRITE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pending {
    last_event: Option<Instant>,
    open_writes: HashMap<PathBuf, Instant>,
}

/// Watches `sites_dir`; returns the watcher, which stops when dropped.
pub fn watch_sites(
    live: Arc<Live>,
    sites_dir: &Path,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    std::fs::create_dir_all(sites_dir).map_err(notify::Error::io)?;
    watcher.watch(sites_dir, RecursiveMode::Recursive)?;
    let sites_dir = sites_dir.canonicalize().map_err(notify::Error::io)?;
    std::thread::Builder::new()
        .name("watch-sites".into())
        .spawn(move || debounce(live, &sites_dir, rx))
        .map_err(notify::Error::io)?;
    Ok(watcher)
}

fn debounce(live: Arc<Live>, sites_dir: &Path, rx: mpsc::Receiver<notify::Result<Event>>) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let wait = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            QUIET / 3
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(event)) => note(&mut pending, sites_dir, &event),
            Ok(Err(e)) => {
                // Lost events (queue overflow): rescan everything.
                tracing::warn!(error = %e, "file watch error; rescanning all sites");
                live.refresh_all();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let due: Vec<String> = pending
            .iter_mut()
            .filter_map(|(site, p)| {
                p.open_writes.retain(|path, since| {
                    let stalled = now.duration_since(*since) > STALLED_WRITE;
                    if stalled {
                        tracing::warn!(path = %path.display(), "file open for writing too long; taking it as it is");
                    }
                    !stalled
                });
                let quiet = p.last_event.is_none_or(|t| now.duration_since(t) >= QUIET);
                (quiet && p.open_writes.is_empty()).then(|| site.clone())
            })
            .collect();
        for site in due {
            match live.refresh(&site) {
                Err(IngestError::Busy(_)) => {
                    // Caught mid-write: try again after another quiet period.
                    pending
                        .get_mut(&site)
                        .expect("due sites are pending")
                        .last_event = Some(now);
                }
                _ => {
                    pending.remove(&site);
                }
            }
        }
    }
}

/// Records an event against the site it touches.
fn note(pending: &mut HashMap<String, Pending>, sites_dir: &Path, event: &Event) {
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
        let Some(site) = site_of(sites_dir, path) else {
            continue;
        };
        let p = pending.entry(site).or_default();
        p.last_event = Some(now);
        match event.kind {
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

/// `sites/<site>/...` -> `<site>`.
fn site_of(sites_dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(sites_dir).ok()?;
    let first = rel.components().next()?;
    let name = first.as_os_str().to_str()?;
    (!name.starts_with('.')).then(|| name.to_string())
}
