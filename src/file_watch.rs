//! Watching single files (a geo database, a TLS certificate) for
//! replacement: a small module of its own, below everything that uses it.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};

/// Calls `changed` whenever one of `files` is written and closed, created,
/// or renamed into place. The watch is on their folders, since updates
/// usually replace a file by renaming a new one over it.
pub fn watch_files(
    files: &[PathBuf],
    changed: impl Fn() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let names: Vec<_> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)));
        let settled = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if ours && settled {
            changed();
        }
    })?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| f.parent().map_or_else(|| ".".into(), Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
