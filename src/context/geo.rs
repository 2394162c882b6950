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

use super::country::Country;
use super::places::{in_eu, Continent};
use super::region::Region;

#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {source}")]
pub struct GeoError {
    path: PathBuf,
    source: maxminddb::MaxMindDbError,
}

/// The fields of either schema that place a visitor.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<CountryRecord<'a>>,
    country_code: Option<&'a str>,
    #[serde(borrow)]
    continent: Option<ContinentRecord<'a>>,
    #[serde(borrow)]
    subdivisions: Option<FirstSubdivision<'a>>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    iso_code: Option<&'a str>,
    is_in_european_union: Option<bool>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    code: Option<&'a str>,
}

/// The least specific of a City record's subdivisions (the region), read
/// without collecting the list.
struct FirstSubdivision<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstSubdivision<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct First;
        impl<'de> serde::de::Visitor<'de> for First {
            type Value = FirstSubdivision<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of subdivisions")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                let first: Option<SubdivisionCode<'de>> = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FirstSubdivision(first.and_then(|c| c.iso_code)))
            }
        }
        d.deserialize_seq(First)
    }
}

#[derive(Deserialize)]
struct SubdivisionCode<'a> {
    iso_code: Option<&'a str>,
}

/// Where a visitor is: their country, and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub country: Country,
    pub continent: Option<Continent>,
    /// In a member state of the European Union.
    pub eu: bool,
    /// The first-level subdivision, when a City database or a proxy says.
    pub region: Option<Region>,
}

impl Place {
    /// A country's place, from the built-in tables.
    pub fn of(country: Country) -> Place {
        Place {
            country,
            continent: Continent::of(country.as_str()),
            eu: in_eu(country.as_str()),
            region: None,
        }
    }
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

    /// Whether the database gives regions (a City database does; a Country
    /// one does not).
    pub fn has_regions(&self) -> bool {
        self.reader
            .load()
            .as_ref()
            .is_some_and(|r| r.metadata().database_type.contains("City"))
    }

    /// The country of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        self.locate(ip).map(|p| p.country)
    }

    /// Where `ip` is, if the database knows its country. The continent and
    /// EU membership are the database's when it has them, else the
    /// built-in tables'.
    pub fn locate(&self, ip: IpAddr) -> Option<Place> {
        let guard = self.reader.load();
        let reader = guard.as_ref()?;
        // ip-location-db files do not alias ::ffff:a.b.c.d to a.b.c.d.
        let record: Record = reader.lookup(ip.to_canonical()).ok()?.decode().ok()??;
        let (iso_code, eu) = match &record.country {
            Some(c) => (c.iso_code, c.is_in_european_union),
            None => (None, None),
        };
        let country = Country::parse(iso_code.or(record.country_code)?)?;
        let builtin = Place::of(country);
        let continent = record
            .continent
            .and_then(|c| c.code)
            .and_then(Continent::parse);
        Some(Place {
            country,
            continent: continent.or(builtin.continent),
            // MaxMind writes the flag only when true.
            eu: eu.unwrap_or(false) || builtin.eu,
            region: record
                .subdivisions
                .and_then(|s| s.0)
                .and_then(|sub| Region::of(country, sub)),
        })
    }
}

/// Reloads the database when its file changes.
pub fn watch(geo: Arc<Geo>, path: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    crate::file_watch::watch_files(std::slice::from_ref(&path.clone()), move || {
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
    fn continents_and_the_eu_from_the_database() {
        let geo = Geo::open(Some(&fixture("GeoIP2-Country-Test.mmdb"))).unwrap();
        let place = |ip: &str| geo.locate(ip.parse().unwrap());
        let se = place("89.160.20.112").unwrap();
        assert_eq!(
            (se.country.as_str(), se.continent.map(|c| c.as_str()), se.eu),
            ("SE", Some("EU"), true)
        );
        let gb = place("81.2.69.142").unwrap();
        assert_eq!(
            (gb.continent.map(|c| c.as_str()), gb.eu),
            (Some("EU"), false)
        );
        let us = place("216.160.83.56").unwrap();
        assert_eq!(
            (us.continent.map(|c| c.as_str()), us.eu),
            (Some("NA"), false)
        );
        // A continent without a country places nobody.
        assert_eq!(place("2a02:d500::1"), None);
    }

    #[test]
    fn regions_from_a_city_database() {
        let city = Geo::open(Some(&fixture("GeoIP2-City-Test.mmdb"))).unwrap();
        assert!(city.has_regions());
        let region = |ip: &str| city.locate(ip.parse().unwrap()).and_then(|p| p.region);
        assert_eq!(
            region("216.160.83.56").map(|r| r.to_string()).as_deref(),
            Some("US-WA")
        );
        assert_eq!(
            region("2001:480:10::1").map(|r| r.to_string()).as_deref(),
            Some("US-CA")
        );
        // The least specific of several subdivisions.
        assert_eq!(
            region("2.125.160.216").map(|r| r.to_string()).as_deref(),
            Some("GB-ENG")
        );
        let country = Geo::open(Some(&fixture("GeoIP2-Country-Test.mmdb"))).unwrap();
        assert!(!country.has_regions());
        assert_eq!(
            country
                .locate("216.160.83.56".parse().unwrap())
                .unwrap()
                .region,
            None
        );
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
}
