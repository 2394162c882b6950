//! Configuration: raw serde types parsed from the user's TOML, validated and
//! compiled once into the typed values the server uses.
//!
//! Nothing here runs on the request path. Every problem is a [`Diagnostic`]
//! with `file:line:col`, so a bad file is reported where it is wrong.

mod diagnostic;
mod headers_file;
mod offer_text;
mod redirects_file;
mod settings;
mod site;

pub use diagnostic::{closest, parse_toml, Diagnostic, Origin};
pub use headers_file::parse_headers;
pub use offer_text::{OfferText, Text};
pub use redirects_file::{
    parse_redirects, LineKind, QueryMatch, QueryValue, RedirectLine, REDIRECT_STATUSES,
};
pub use settings::{
    valid_box_id, AccessLogTarget, FleetSettings, Overrides, ProxyLimits, Settings, TlsSettings,
    DEFAULT_COMPRESS_MAX, DEFAULT_RENDER_CACHE_SIZE,
};
pub use site::{path_glob, HeaderRule, HostPattern, PathGlobs, SiteConfig};
