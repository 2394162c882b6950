//! Configuration: raw serde types parsed from the user's TOML, validated and
//! compiled once into the typed values the server uses.
//!
//! Nothing here runs on the request path. Every problem is a [`Diagnostic`]
//! with `file:line:col`, so a bad file is reported where it is wrong.

mod diagnostic;
mod offer_text;
mod settings;
mod site;

pub use diagnostic::{closest, Diagnostic};
pub use offer_text::{OfferText, Text};
pub use settings::{
    AccessLogTarget, Overrides, Settings, TlsSettings, DEFAULT_COMPRESS_MAX,
    DEFAULT_RENDER_CACHE_SIZE,
};
pub use site::{path_glob, HeaderRule, HostPattern, PathGlobs, SiteConfig};

use std::path::Path;

/// Where in a user's file a value was written, kept so that problems found
/// later (two sites claiming one host) still point at the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: std::path::PathBuf,
    pub line: usize,
    pub col: usize,
}

impl Origin {
    pub fn new(file: &Path, source: &str, at: usize) -> Self {
        let d = Diagnostic::at(file, source, at, "");
        Origin {
            file: d.file,
            line: d.line,
            col: d.col,
        }
    }

    /// A problem at this place.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

/// Parses `source` as TOML straight into `T`, keeping line numbers in errors.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    source: &str,
) -> Result<T, Diagnostic> {
    toml::from_str(source).map_err(|e| Diagnostic::from_toml(file, source, &e))
}
