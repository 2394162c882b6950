//! The commands of the `outpost` binary, one file each: the crate's top
//! layer. A command reads its arguments, calls the library and prints; it
//! runs the request path offline (through `offline`) or asks a running
//! server (through [`admin_client`]), so nothing below imports it.

use std::path::PathBuf;

use crate::config::Diagnostic;

pub mod admin_client;
pub mod check;
pub mod explain;
pub mod fleet_logs;
pub mod preview_link;
pub mod publish;
pub mod serve;
pub mod stats;
pub mod status;
pub mod test;

#[derive(clap::Args, Clone)]
pub struct RootArg {
    /// The root folder, holding sites/ and rules/.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

/// Settings that do not load, one `file:line:col: message` a line.
#[derive(Debug, thiserror::Error)]
#[error("{}", Diagnostic::lines(.0))]
pub struct SettingsError(pub Vec<Diagnostic>);

/// A `--box-id` or `--box` argument: a name a box can have.
pub fn box_id(id: &str) -> Result<String, String> {
    if crate::config::valid_box_id(id) {
        Ok(id.to_string())
    } else {
        Err("a box id is 1 to 64 letters, digits, `-` or `_`".into())
    }
}
