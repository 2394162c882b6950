//! A visitor's region: the ISO 3166-2 code of their country's first-level
//! subdivision (`US-NJ`, `GB-SCT`, `IT-25`), from a City database's
//! subdivisions or a trusted proxy's `CF-Region-Code`.

use super::country::Country;

/// An ISO 3166-2 code: a country, `-`, and one to three letters or digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    code: [u8; 6],
    len: u8,
}

impl Region {
    /// `country` and a subdivision's own code (`NJ`), as a database or a
    /// proxy gives them; `None` when the code is not one.
    pub fn of(country: Country, subdivision: &str) -> Option<Region> {
        let sub = subdivision.as_bytes();
        if !(1..=3).contains(&sub.len()) || !sub.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut code = [0; 6];
        code[..2].copy_from_slice(country.as_str().as_bytes());
        code[2] = b'-';
        for (to, from) in code[3..].iter_mut().zip(sub) {
            *to = from.to_ascii_uppercase();
        }
        Some(Region {
            code,
            len: 3 + sub.len() as u8,
        })
    }

    /// A full code (`US-NJ`) as written in a rule; the error says what is
    /// wrong with it.
    pub fn parse_written(code: &str) -> Result<Region, String> {
        let Some((country, sub)) = code.split_once('-') else {
            return Err(format!(
                "`{code}` has no country part: a region is an ISO 3166-2 code like US-NJ or GB-SCT"
            ));
        };
        let country = Country::parse_written(country)
            .map_err(|e| format!("the country part of region `{code}`: {e}"))?;
        match Region::of(country, sub) {
            Some(region) if region.as_str() == code => Ok(region),
            Some(region) => Err(format!(
                "`{code}` is written {} in ISO 3166-2",
                region.as_str()
            )),
            None => Err(format!(
                "`{code}` is not an ISO 3166-2 code: after the country, one to three letters or digits (US-NJ, GB-SCT, IT-25)"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code[..usize::from(self.len)]).expect("region codes are ASCII")
    }
}

/// The ISO 3166-2 codes of `country` (`US-NJ`…), from the CLDR list kept
/// in `subdivisions.txt` (its source and license are in its header and
/// `subdivisions-LICENSE.txt`).
pub fn subdivisions_of(country: &str) -> Vec<String> {
    let prefix = country.to_ascii_lowercase();
    let mut codes = Vec::new();
    let list = include_str!("subdivisions.txt");
    for token in list
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
    {
        let (start, end) = token.split_once('~').unwrap_or((token, ""));
        if !start.starts_with(&prefix) {
            continue;
        }
        let (stem, first) = start.split_at(start.len() - 1);
        let last = end.bytes().next().unwrap_or(first.as_bytes()[0]);
        for c in first.as_bytes()[0]..=last {
            let sub = format!("{}{}", &stem[2..], c as char);
            codes.push(format!("{}-{}", country, sub.to_ascii_uppercase()));
        }
    }
    codes
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let us = Country::parse("US").unwrap();
        assert_eq!(Region::of(us, "nj").unwrap().as_str(), "US-NJ");
        assert_eq!(
            Region::of(Country::parse("GB").unwrap(), "SCT")
                .unwrap()
                .as_str(),
            "GB-SCT"
        );
        assert!(Region::of(us, "").is_none());
        assert!(Region::of(us, "ABCD").is_none());
        assert!(Region::of(us, "N J").is_none());
        assert_eq!(Region::parse_written("US-NJ").unwrap().as_str(), "US-NJ");
        let err = |c| Region::parse_written(c).unwrap_err();
        assert!(err("NJ").contains("has no country part"), "{}", err("NJ"));
        assert!(
            err("US-nj").contains("is written US-NJ"),
            "{}",
            err("US-nj")
        );
        assert!(
            err("UK-SCT").contains("did you mean GB?"),
            "{}",
            err("UK-SCT")
        );
        assert!(
            err("US-").contains("is not an ISO 3166-2 code"),
            "{}",
            err("US-")
        );
        assert!(err("US-ABCD").contains("is not an ISO 3166-2 code"));
        let us = subdivisions_of("US");
        assert!(us.contains(&"US-NJ".to_string()) && us.contains(&"US-AK".to_string()));
        assert!(us.contains(&"US-AL".to_string()), "ranges expand: usak~l");
        assert!(!us.contains(&"US-XX".to_string()));
        assert_eq!(
            subdivisions_of("IT")
                .iter()
                .filter(|c| *c == "IT-25")
                .count(),
            1
        );
        assert!(subdivisions_of("CZ").contains(&"CZ-20B".to_string()));
    }
}
