//! Cookie and query parsing. Both are capped, and bytes that are not UTF-8
//! are replaced rather than refused, so an odd cookie never fails a request.
//! Pairs borrow from the request unless they had to be decoded.

use std::borrow::Cow;

/// Most cookies or query parameters read from one request.
const MAX_PAIRS: usize = 64;

/// `name=value` pairs of the Cookie headers (HTTP/2 may split one into
/// several).
pub fn cookies<'a>(headers: impl Iterator<Item = &'a [u8]>) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    headers
        .flat_map(|header| header.split(|b| *b == b';'))
        .filter_map(|pair| match String::from_utf8_lossy(pair) {
            Cow::Borrowed(text) => split_pair(text).map(|(n, v)| (n.into(), v.into())),
            Cow::Owned(text) => {
                split_pair(&text).map(|(n, v)| (n.to_string().into(), v.to_string().into()))
            }
        })
        .take(MAX_PAIRS)
        .collect()
}

fn split_pair(text: &str) -> Option<(&str, &str)> {
    let (name, value) = text.split_once('=')?;
    let name = name.trim();
    let value = value.trim().trim_matches('"');
    (!name.is_empty()).then_some((name, value))
}

/// Decoded pairs of a query string.
pub fn query(raw: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let Some(raw) = raw else { return Vec::new() };
    url::form_urlencoded::parse(raw.as_bytes())
        .take(MAX_PAIRS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_pairs() {
        let c = cookies(
            [b"a=1; outpost_exp_hero=b ;\xff\xfe=x; =bad; noeq; q=\"quoted\"".as_slice()]
                .into_iter(),
        );
        assert_eq!(c[0], ("a".into(), "1".into()));
        assert_eq!(c[1], ("outpost_exp_hero".into(), "b".into()));
        assert!(c.iter().any(|(k, v)| k == "q" && v == "quoted"));
        assert!(!c.iter().any(|(k, _)| k.is_empty()));
        let split = cookies([b"a=1".as_slice(), b"b=2; c=3"].into_iter());
        assert_eq!(split.len(), 3);
        assert_eq!(split[2], ("c".into(), "3".into()));
        assert_eq!(
            cookies(std::iter::once("a=1;".repeat(1000).as_bytes())).len(),
            MAX_PAIRS
        );
    }

    #[test]
    fn query_pairs() {
        assert_eq!(
            query(Some("preview=true&x=a%20b")),
            vec![
                ("preview".into(), "true".into()),
                ("x".into(), "a b".into())
            ]
        );
        assert!(query(None).is_empty());
    }
}
