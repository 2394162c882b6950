//! The embedded store (redb) and the pack files beside it: every site's
//! files, its last versions, and which version each site serves.
//!
//! A version is one site.toml plus a manifest of files pointing at bodies by
//! content hash. The bodies live in pack files (`packs.rs`), outside the heap;
//! redb keeps the index (`schema.rs`). A version is written in one
//! transaction after its pack is on disk, so a crash mid-ingest leaves the
//! previous version whole. Bodies are shared between versions and deleted
//! once no kept version needs them. Serving never touches redb: the served
//! versions are in memory as [`SiteVersion`]s whose bodies are slices of the
//! mapped packs (see `version.rs`).

mod alternates;
mod database;
mod error;
mod ingest;
mod packs;
mod schema;
mod version;

pub use database::{Health, Store, Update, KEPT_VERSIONS};
pub use error::StoreError;
pub use ingest::{ingest_site, Compressed, IngestError, Ingested, Notes};
pub use packs::damaged_total;
pub use schema::{
    content_hash, unix_ms, Encoding, ExperimentRow, FragmentRow, Manifest, ManifestFile,
};
pub use version::{
    read_site_files, Damaged, Lookup, SiteVersion, StoredFile, HEADERS_FILE, REDIRECTS_FILE,
};
