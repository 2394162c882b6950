//! The visitor's country: an ISO 3166-1 alpha-2 code, checked when a rule
//! writes one.

use super::places::code_named;

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

#[cfg(test)]
mod tests {
    use super::*;

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
