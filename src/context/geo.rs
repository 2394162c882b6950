//! The visitor's country from a MaxMind-format database.
//!
//! Both schemas work: GeoIP2/GeoLite2 (`country.iso_code`) and ip-location-db
//! (`country_code`). The database is read into memory once and swapped when
//! its file changes; a file that fails to load leaves the old one in use.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use maxminddb::Reader;
use serde::Deserialize;

/// An ISO 3166-1 alpha-2 code, or `XX` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    pub const UNKNOWN: Country = Country(*b"XX");

    /// Two ASCII letters, uppercased; anything else is `None`.
    pub fn parse(code: &str) -> Option<Country> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("country codes are ASCII")
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {source}")]
pub struct GeoError {
    path: PathBuf,
    source: maxminddb::MaxMindDbError,
}

/// The fields of either schema that name a country.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

/// A country database that can be replaced while in use.
#[derive(Default)]
pub struct Geo {
    reader: ArcSwapOption<Reader<Vec<u8>>>,
}

impl Geo {
    /// Opens `path`; `None` means no database (only trusted headers give a
    /// country).
    pub fn open(path: Option<&Path>) -> Result<Geo, GeoError> {
        let geo = Geo::default();
        if let Some(path) = path {
            geo.reload(path)?;
        }
        Ok(geo)
    }

    /// Reads `path` again and switches to it.
    pub fn reload(&self, path: &Path) -> Result<(), GeoError> {
        let reader = Reader::open_readfile(path).map_err(|source| GeoError {
            path: path.to_path_buf(),
            source,
        })?;
        self.reader.store(Some(Arc::new(reader)));
        Ok(())
    }

    pub fn loaded(&self) -> bool {
        self.reader.load().is_some()
    }

    /// The country of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        let guard = self.reader.load();
        let reader = guard.as_ref()?;
        // ip-location-db files do not alias ::ffff:a.b.c.d to a.b.c.d.
        let record: Record = reader.lookup(ip.to_canonical()).ok()??;
        let code = record
            .country
            .and_then(|c| c.iso_code)
            .or(record.country_code)?;
        Country::parse(code)
    }
}

/// Reloads the database when its file changes.
pub fn watch(geo: Arc<Geo>, path: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    crate::watch::watch_files(std::slice::from_ref(&path.clone()), move || {
        match geo.reload(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "geo database reloaded"),
            Err(e) => tracing::error!("{e}; keeping the previous database"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/geo")
            .join(name)
    }

    #[test]
    fn geoip2_schema() {
        let geo = Geo::open(Some(&fixture("GeoIP2-Country-Test.mmdb"))).unwrap();
        let c = |ip: &str| geo.country(ip.parse().unwrap()).map(|c| c.to_string());
        assert_eq!(c("81.2.69.142").as_deref(), Some("GB"));
        assert_eq!(c("::ffff:81.2.69.142").as_deref(), Some("GB"));
        assert_eq!(c("89.160.20.112").as_deref(), Some("SE"));
        assert_eq!(c("2001:218::1").as_deref(), Some("JP"));
        assert_eq!(c("8.8.8.8"), None);
        assert_eq!(c("214.1.1.1"), None);
    }

    #[test]
    fn no_database_knows_nothing() {
        let geo = Geo::open(None).unwrap();
        assert_eq!(geo.country("81.2.69.142".parse().unwrap()), None);
    }

    #[test]
    fn a_bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mmdb");
        std::fs::write(&path, b"not a database").unwrap();
        let err = Geo::open(Some(&path)).err().unwrap().to_string();
        assert!(err.contains("x.mmdb"), "{err}");
    }

    #[test]
    fn codes() {
        assert_eq!(Country::parse("it").unwrap().as_str(), "IT");
        assert!(Country::parse("ITA").is_none());
        assert!(Country::parse("1T").is_none());
    }
}
