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

use super::places::{code_named, in_eu, Continent};

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

    /// A code as written in a file: two uppercase letters that ISO 3166-1
    /// assigns, or `XX` (unknown) and `XK` (Kosovo), which geo databases
    /// give. The error says what to write instead.
    pub fn parse_written(code: &str) -> Result<Country, String> {
        let iso = || format!("`{code}` is not an ISO 3166-1 alpha-2 country code");
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            let upper = code.to_ascii_uppercase();
            let meant = Some(upper.as_str())
                .filter(|u| u.len() == 2 && ASSIGNED.binary_search(u).is_ok())
                .or_else(|| code_named(code));
            return Err(match meant {
                Some(meant) => format!("{}, did you mean {meant}?", iso()),
                None => format!("{} like IT", iso()),
            });
        }
        if ASSIGNED.binary_search(&code).is_ok() || matches!(code, "XX" | "XK") {
            return Ok(Country::parse(code).expect("two letters"));
        }
        Err(match code {
            "UK" => format!("{}, did you mean GB? (the United Kingdom is GB)", iso()),
            "EL" => format!("{}, did you mean GR? (Greece is GR)", iso()),
            "EU" => format!(
                "{}: the European Union is not a country; write `eu = true` (or `continent = \"EU\"` for Europe)",
                iso()
            ),
            _ => match code_named(code) {
                Some(meant) => format!("{}, did you mean {meant}?", iso()),
                None => format!("{}: no country has it", iso()),
            },
        })
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

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted, as ISO's
/// Online Browsing Platform lists them (none added since 2011).
const ASSIGNED: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

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

/// Where a visitor is: their country, and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub country: Country,
    pub continent: Option<Continent>,
    /// In a member state of the European Union.
    pub eu: bool,
}

impl Place {
    /// A country's place, from the built-in tables.
    pub fn of(country: Country) -> Place {
        Place {
            country,
            continent: Continent::of(country.as_str()),
            eu: in_eu(country.as_str()),
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
        let record: Record = reader.lookup(ip.to_canonical()).ok()??;
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

    #[test]
    fn written_codes_are_iso_3166_1() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]), "sorted");
        for ok in ["GB", "IT", "SS", "ZW", "AD", "XX", "XK"] {
            assert_eq!(Country::parse_written(ok).unwrap().as_str(), ok);
        }
        let err = |c| Country::parse_written(c).unwrap_err();
        assert!(err("UK").contains("did you mean GB?"), "{}", err("UK"));
        assert!(err("EU").contains("not a country"), "{}", err("EU"));
        assert!(err("ZZ").contains("not an ISO 3166-1"), "{}", err("ZZ"));
        assert!(err("gb").contains("did you mean GB?"), "{}", err("gb"));
        assert!(
            err("Italy").contains("did you mean IT?"),
            "{}",
            err("Italy")
        );
        assert!(err("DEU").contains("did you mean DE?"), "{}", err("DEU"));
        assert!(err("xq").contains("like IT"), "{}", err("xq"));
        assert!(err("GBR").contains("did you mean GB?"), "{}", err("GBR"));
    }
}
