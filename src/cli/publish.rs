//! `outpost publish` and `outpost rollback`: what the fleet's boxes take.

use std::fmt::Write;
use std::path::Path;

use super::RootArg;
use crate::config::Diagnostic;
use crate::fleet::{self, FleetError};

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The sites to publish (or --all).
    pub sites: Vec<String>,
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub root: RootArg,
    /// The fleet's NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub fleet: String,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    pub site: String,
    /// The fleet's NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub fleet: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("listing sites/")]
    ListSites(#[source] std::io::Error),
    #[error("name the sites to publish, or --all")]
    NoSites,
    #[error("not published: `outpost check` finds problems:\n{0}")]
    Problems(String),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// Publishes `sites` of `root` (every site with `all`) and the rules, if
/// `outpost check` finds no problem; one line per site and the rules.
pub async fn publish(
    url: &str,
    root: &Path,
    mut sites: Vec<String>,
    all: bool,
) -> Result<String, PublishError> {
    if all {
        sites.extend(all_sites(root).map_err(PublishError::ListSites)?);
        sites.sort();
    }
    if sites.is_empty() {
        return Err(PublishError::NoSites);
    }
    let problems = crate::check::check(root).problems;
    if !problems.is_empty() {
        return Err(PublishError::Problems(Diagnostic::lines(&problems)));
    }
    let mut out = String::new();
    for p in fleet::publish(url, root, &sites).await? {
        let _ = writeln!(
            out,
            "{}: version {} ({} of {} files new to the fleet)",
            p.key, p.version, p.new_files, p.files
        );
    }
    Ok(out)
}

/// The folders under sites/ (dotted ones are a box's work in progress).
fn all_sites(root: &Path) -> std::io::Result<Vec<String>> {
    let mut sites = Vec::new();
    for entry in std::fs::read_dir(root.join("sites"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            sites.push(name);
        }
    }
    Ok(sites)
}

/// Points every box back at `site`'s previous version.
pub async fn rollback(url: &str, site: &str) -> Result<String, FleetError> {
    let version = fleet::rollback(url, site).await?;
    Ok(format!("{site}: every box now takes version {version}\n"))
}
