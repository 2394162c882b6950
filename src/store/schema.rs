//! The store's tables and the typed rows they hold. Only `Store` opens
//! these tables; everything else goes through its methods.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// The name content is stored under: its BLAKE3 hash in hex. A fleet names
/// files the same way, so a box matches what it fetched to what it ingests.
pub fn content_hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A time as records keep it: milliseconds since the Unix epoch (0 before).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The representations stored for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Identity, Encoding::Gzip, Encoding::Brotli];

    pub fn content_encoding(self) -> Option<HeaderValue> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some(HeaderValue::from_static("gzip")),
            Encoding::Brotli => Some(HeaderValue::from_static("br")),
        }
    }
}

/// Where each stored body is: (content hash, encoding) -> [`BlobRow`].
pub(super) const BLOBS: TableDefinition<(&str, u8), BlobRow> = TableDefinition::new("blob_index");
/// The table bodies were kept in before packs: its presence marks a store
/// written by an older release.
pub(super) const LEGACY_BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// What ingest last saw of a file, so an unchanged one is not read again:
/// (site, path) -> [`Scan`] as JSON.
pub(super) const SCANS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("scans");
/// A site's versions: (site, number) -> [`Manifest`] as JSON.
pub(super) const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// The version each site serves.
pub(super) const CURRENT: TableDefinition<&str, u64> = TableDefinition::new("current");
/// Experiment counts: (experiment, variant) -> (exposures, conversions).
pub(super) const EXPERIMENTS: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("experiments");
/// (experiment, variant) -> visitors drawn into a variant that was not
/// applied. A table of its own, so stores from before it load as 0.
pub(super) const NOT_APPLIED: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("not_applied");
/// Facts about this store: `instance` is the random name of the counts it
/// holds, which a box reports to the fleet with them.
pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The last good copy of each fragment source: url -> (fetched at, ms since
/// the epoch; JSON).
pub(super) const FRAGMENTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("fragments");

/// One version's record: the site's settings and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub created_unix_ms: u64,
    pub site_toml: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to public/, with `/` separators.
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub mtime_ms: u64,
    pub gzip: bool,
    pub br: bool,
    /// hreflang alternates of an HTML page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<(String, String)>,
}

/// What ingest saw of a file last time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub size: u64,
    pub mtime_ns: u128,
    /// Device and inode (0, 0 in scans from before they were kept).
    #[serde(default)]
    pub file_id: (u64, u64),
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<(String, String)>,
}

/// Where one body is: a range of a pack file, and the BLAKE3 digest of its
/// bytes, checked before the body is first sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub pack: u64,
    pub offset: u64,
    pub len: u64,
    pub digest: [u8; 32],
}

const BLOB_ROW_LEN: usize = 8 * 3 + 32;

impl redb::Value for BlobRow {
    type SelfType<'a> = BlobRow;
    type AsBytes<'a> = [u8; BLOB_ROW_LEN];

    fn fixed_width() -> Option<usize> {
        Some(BLOB_ROW_LEN)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> BlobRow
    where
        Self: 'a,
    {
        let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
        BlobRow {
            pack: word(0),
            offset: word(1),
            len: word(2),
            digest: data[24..BLOB_ROW_LEN].try_into().unwrap(),
        }
    }

    fn as_bytes<'a, 'b: 'a>(row: &'a BlobRow) -> [u8; BLOB_ROW_LEN]
    where
        Self: 'b,
    {
        let mut out = [0; BLOB_ROW_LEN];
        out[0..8].copy_from_slice(&row.pack.to_le_bytes());
        out[8..16].copy_from_slice(&row.offset.to_le_bytes());
        out[16..24].copy_from_slice(&row.len.to_le_bytes());
        out[24..].copy_from_slice(&row.digest);
        out
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("outpost::BlobRow")
    }
}

/// A body's key in [`BLOBS`].
pub(super) fn blob_key(hash: &str, enc: Encoding) -> (&str, u8) {
    (hash, enc as u8)
}

/// One variant's saved counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentRow {
    pub experiment: String,
    pub variant: String,
    pub exposures: u64,
    pub conversions: u64,
    pub not_applied: u64,
}

/// The last good copy of a fragment source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FragmentRow {
    pub url: String,
    pub fetched_unix_ms: u64,
    pub json: Vec<u8>,
}

/// Decodes a JSON row; `what` names it in the error.
pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    raw: &[u8],
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Damaged(format!("{what}: {e}")))
}

pub(super) fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    serde_json::to_vec(row).expect("rows serialize")
}
