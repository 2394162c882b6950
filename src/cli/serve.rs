//! `outpost serve` (the default command): loads the settings, raises the
//! open-file limit and runs the server until a signal stops it.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Overrides, Settings};
use crate::server::ServeError;

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    root: super::RootArg,
    /// Address of the public listener (overrides outpost.toml).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// MaxMind-format country database (overrides outpost.toml).
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// Follow the fleet at this NATS server: take every published version
    /// (overrides `[fleet] url`).
    #[arg(long)]
    fleet: Option<String>,
    /// This box's name in the fleet (overrides `[fleet] box_id`; default:
    /// the host name).
    #[arg(long, value_parser = super::box_id)]
    box_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeCommandError {
    #[error(transparent)]
    Settings(#[from] super::SettingsError),
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

pub fn run(args: ServeArgs) -> Result<(), ServeCommandError> {
    let overrides = Overrides {
        listen: args.listen,
        geoip: args.geoip,
        fleet: args.fleet,
        box_id: args.box_id,
    };
    let settings = Settings::load(&args.root.root, &overrides).map_err(super::SettingsError)?;
    // Many idle keep-alive connections need many descriptors.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let runtime = tokio::runtime::Runtime::new().map_err(ServeCommandError::Runtime)?;
    runtime.block_on(crate::server::serve(settings))?;
    Ok(())
}
