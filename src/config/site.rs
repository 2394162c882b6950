//! `sites/<site>/site.toml`: a site's hosts, locale, audience and headers.

use std::collections::BTreeMap;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::{parse_toml, Diagnostic, Origin};
use super::offer_text::{built_in, OfferText, Text};
use crate::context::Country;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    hosts: Vec<Spanned<String>>,
    locale: Spanned<String>,
    #[serde(default)]
    countries: Vec<Spanned<String>>,
    group: Option<String>,
    default: Option<Spanned<bool>>,
    #[serde(default)]
    headers: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<String>>>,
    offer: Option<Spanned<RawOffer>>,
}

/// `[offer]`: the site's own words for the banner that offers it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    message: Option<Spanned<String>>,
    go: Option<Spanned<String>>,
    stay: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
}

/// A Host header pattern: an exact name or `*.domain` (any subdomain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Holds the suffix with its leading dot: `.example.com`.
    Wildcard(String),
}

/// Extra response headers for the paths matching a glob.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub glob: PathGlobs,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A site's validated configuration.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub hosts: Vec<(HostPattern, Origin)>,
    pub locale: String,
    /// The locale's primary language subtag, lowercase (`en` for `en-GB`).
    pub language: String,
    pub countries: Vec<String>,
    pub group: Option<String>,
    /// Set, with where it was said, when this site answers unknown hosts.
    pub default: Option<Origin>,
    pub headers: Vec<HeaderRule>,
    /// The words of the banner that offers this site on the other sites of
    /// its group.
    pub offer: OfferText,
}

impl SiteConfig {
    /// Parses and validates the text of a site.toml found at `file`.
    pub fn parse(file: &Path, source: &str) -> Result<SiteConfig, Vec<Diagnostic>> {
        let raw: RawSite = parse_toml(file, source).map_err(|d| vec![d])?;
        let mut errors = Vec::new();
        let at = |span: std::ops::Range<usize>| Origin::new(file, source, span.start);

        let mut hosts = Vec::new();
        for host in &raw.hosts {
            match HostPattern::parse(host.get_ref()) {
                Some(p) => hosts.push((p, at(host.span()))),
                None => errors.push(at(host.span()).error(format!(
                    "`{}` is not a host name (use names like www.example.com or *.example.com)",
                    host.get_ref()
                ))),
            }
        }
        if raw.hosts.is_empty() && !raw.default.as_ref().is_some_and(|d| *d.get_ref()) {
            errors.push(Diagnostic::at(
                file,
                source,
                0,
                "`hosts` is empty: the site could never be reached",
            ));
        }

        let locale = raw.locale.get_ref().clone();
        let language = primary_language(&locale);
        if language.is_none() {
            errors.push(
                at(raw.locale.span())
                    .error(format!("`{locale}` is not a BCP 47 locale like en-GB")),
            );
        }

        let mut countries = Vec::new();
        for c in &raw.countries {
            match Country::parse_written(c.get_ref()) {
                Ok(code) => countries.push(code.to_string()),
                Err(e) => errors.push(at(c.span()).error(e)),
            }
        }

        let mut headers = Vec::new();
        for (glob, set) in &raw.headers {
            let compiled = match path_glob(glob.get_ref()).and_then(|g| PathGlobs::new(vec![g])) {
                Ok(g) => g,
                Err(e) => {
                    errors.push(at(glob.span()).error(format!("bad path glob: {e}")));
                    continue;
                }
            };
            let mut pairs = Vec::new();
            for (name, value) in set {
                let Ok(n) = HeaderName::try_from(name.get_ref().as_str()) else {
                    errors.push(
                        at(name.span())
                            .error(format!("`{}` is not a valid header name", name.get_ref())),
                    );
                    continue;
                };
                let Ok(v) = HeaderValue::try_from(value.get_ref().as_str()) else {
                    errors.push(at(value.span()).error("not a valid header value"));
                    continue;
                };
                pairs.push((n, v));
            }
            headers.push(HeaderRule {
                glob: compiled,
                headers: pairs,
            });
        }

        let offer = offer_text(&raw, &locale, file, source, &mut errors);

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SiteConfig {
            hosts,
            locale,
            language: language.unwrap_or_default(),
            countries,
            group: raw.group,
            default: raw.default.filter(|d| *d.get_ref()).map(|d| at(d.span())),
            headers,
            offer,
        })
    }
}

/// The banner's words for this site: `[offer]`, the rest built in.
fn offer_text(
    raw: &RawSite,
    locale: &str,
    file: &Path,
    source: &str,
    errors: &mut Vec<Diagnostic>,
) -> OfferText {
    let Some(offer) = &raw.offer else {
        return OfferText::new(locale, [None, None, None, None]);
    };
    let given = offer.get_ref();
    let keys = [
        ("message", &given.message),
        ("go", &given.go),
        ("stay", &given.stay),
        ("label", &given.label),
    ];
    let texts = keys.map(|(_, value)| {
        let value = value.as_ref()?;
        match Text::parse(value.get_ref()) {
            Ok(text) => Some(text),
            Err((offset, message)) => {
                errors.push(Diagnostic::at(
                    file,
                    source,
                    position_in_string(source, value, offset),
                    message,
                ));
                None
            }
        }
    });
    // Half the banner in the site's language and half in English would be
    // worse than either.
    let missing: Vec<&str> = keys
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() && missing.len() < keys.len() && !built_in(locale).1 {
        errors.push(Diagnostic::at(
            file,
            source,
            offer.span().start,
            format!(
                "[offer] lacks {}: outpost has no banner words in `{locale}` to fill in, so give all of message, go, stay and label",
                missing.join(", ")
            ),
        ));
    }
    OfferText::new(locale, texts)
}

/// Where the character at `offset` of a string value is in `source`: exact
/// for a string written without escapes, else the string's start.
fn position_in_string(source: &str, value: &Spanned<String>, offset: usize) -> usize {
    let span = value.span();
    let written = &source[span.clone()];
    let plain = written.len() == value.get_ref().len() + 2
        && (written.starts_with('"') || written.starts_with('\''));
    if plain {
        span.start + 1 + offset
    } else {
        span.start
    }
}

impl HostPattern {
    fn parse(text: &str) -> Option<HostPattern> {
        let text = text.trim_end_matches('.').to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        match text.strip_prefix("*.") {
            Some(domain) if valid_name(domain) => Some(HostPattern::Wildcard(format!(".{domain}"))),
            Some(_) => None,
            None if valid_name(&text) => Some(HostPattern::Exact(text)),
            None => None,
        }
    }

    /// The pattern as the user wrote it, for messages.
    pub fn display(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        }
    }
}

/// Parses a URL path glob: `*` stays within one segment, `**` crosses them.
pub fn path_glob(text: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// URL path globs, matched per request. Plain paths and `/dir/**` are
/// compared as strings (the common cases, and far cheaper than building a
/// globset candidate); the rest go through one `GlobSet`.
#[derive(Debug, Clone, Default)]
pub struct PathGlobs {
    exact: Vec<String>,
    /// `/dir/` for `/dir/**`.
    under: Vec<String>,
    other: GlobSet,
}

impl PathGlobs {
    pub fn new(globs: Vec<Glob>) -> Result<PathGlobs, globset::Error> {
        let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let mut globs_set = PathGlobs::default();
        let mut other = GlobSetBuilder::new();
        for g in globs {
            let text = g.glob();
            if plain(text) {
                globs_set.exact.push(text.to_string());
            } else if let Some(dir) = text.strip_suffix("/**").filter(|d| plain(d)) {
                globs_set.under.push(format!("{dir}/"));
            } else {
                other.add(g);
            }
        }
        globs_set.other = other.build()?;
        Ok(globs_set)
    }

    /// No globs at all (a rule without `when.path` matches every path).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.under.is_empty() && self.other.is_empty()
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.exact.iter().any(|e| e == path)
            || self.under.iter().any(|dir| path.starts_with(dir.as_str()))
            || (!self.other.is_empty() && self.other.is_match(path))
    }
}

fn primary_language(locale: &str) -> Option<String> {
    let mut parts = locale.split('-');
    let primary = parts.next()?;
    let ok_primary =
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    let ok_rest =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (ok_primary && ok_rest).then(|| primary.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SiteConfig, Vec<Diagnostic>> {
        SiteConfig::parse(Path::new("sites/x/site.toml"), text)
    }

    #[test]
    fn a_full_site() {
        let s = parse(
            "hosts = [\"A.example.com\", \"*.example.org\"]\nlocale = \"it-IT\"\ncountries = [\"IT\"]\ngroup = \"g\"\ndefault = true\n[headers.\"/assets/**\"]\nCache-Control = \"max-age=1\"\n",
        )
        .unwrap();
        assert_eq!(s.hosts[0].0, HostPattern::Exact("a.example.com".into()));
        assert_eq!(s.hosts[1].0, HostPattern::Wildcard(".example.org".into()));
        assert_eq!(s.language, "it");
        assert!(s.default.is_some());
        assert!(s.headers[0].glob.is_match("/assets/css/a.css"));
        assert!(!s.headers[0].glob.is_match("/index.html"));
    }

    #[test]
    fn problems_carry_their_position() {
        let errs = parse(
            "hosts = [\"ok.com\", \"bad host\"]\nlocale = \"english!\"\ncountries = [\"gb\"]\n",
        )
        .unwrap_err();
        let at: Vec<_> = errs.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(at, vec![(1, 20), (2, 10), (3, 14)]);
    }

    #[test]
    fn unknown_key_suggests() {
        let errs = parse("hots = [\"a.com\"]\nlocale = \"en\"\n").unwrap_err();
        assert_eq!(errs[0].message, "unknown key `hots`, did you mean `hosts`?");
        assert_eq!((errs[0].line, errs[0].col), (1, 1));
    }

    #[test]
    fn offer_words_built_in_or_the_sites_own() {
        let site = |rest: &str| parse(&format!("hosts = [\"a.se\"]\n{rest}")).unwrap().offer;
        let sv = site("locale = \"sv-SE\"\n");
        assert_eq!(sv.go.fill("SE", "a.se"), "Till webbplatsen på svenska");
        assert_eq!((sv.lang.as_str(), sv.right_to_left), ("sv-SE", false));
        let he = site("locale = \"he-IL\"\n");
        assert_eq!((he.lang.as_str(), he.right_to_left), ("he-IL", true));
        // No built-in Icelandic: English, tagged as English.
        let is = site("locale = \"is-IS\"\n");
        assert_eq!(is.stay.fill("IS", "a.se"), "Stay here");
        assert_eq!(is.lang, "en");
        // The site's own words replace the built-in ones they name.
        let own = site(
            "locale = \"sv-SE\"\n[offer]\nmessage = \"Besöker du oss från {country}? Prova {host}.\"\n",
        );
        assert_eq!(
            own.message.fill("SE", "a.se"),
            "Besöker du oss från SE? Prova a.se."
        );
        assert_eq!(own.stay.fill("SE", "a.se"), "Stanna här");
        // All four in a language without built-in words.
        let is = site("locale = \"is-IS\"\n[offer]\nmessage = \"m\"\ngo = \"g\"\nstay = \"s\"\nlabel = \"l\"\n");
        assert_eq!(
            (is.lang.as_str(), is.go.fill("", "")),
            ("is-IS", "g".into())
        );
    }

    #[test]
    fn offer_problems_carry_their_position() {
        let errs = |text: &str| -> Vec<(usize, usize, String)> {
            parse(text)
                .unwrap_err()
                .into_iter()
                .map(|d| (d.line, d.col, d.message))
                .collect()
        };
        assert_eq!(
            errs("hosts = [\"a.se\"]\nlocale = \"sv\"\n[offer]\ngo = \"Till {site}\"\n"),
            vec![(
                4,
                12,
                "unknown placeholder `{site}` (use {country} or {host})".into()
            )]
        );
        assert_eq!(
            errs("hosts = [\"a.se\"]\nlocale = \"sv\"\n[offer]\ngo = \"x {host\"\n"),
            vec![(4, 9, "unclosed `{`".into())]
        );
        let unknown = errs("hosts = [\"a.se\"]\nlocale = \"sv\"\n[offer]\ngoo = \"x\"\n");
        assert_eq!((unknown[0].0, unknown[0].1), (4, 1));
        assert!(
            unknown[0].2.contains("did you mean `go`?"),
            "{}",
            unknown[0].2
        );
        let half = errs("hosts = [\"a.is\"]\nlocale = \"is\"\n[offer]\ngo = \"Áfram\"\n");
        assert_eq!(half.len(), 1);
        assert!(
            half[0].2.contains("lacks message, stay, label"),
            "{}",
            half[0].2
        );
    }

    /// docs/site.md has a row for every key site.toml takes.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/site.md");
        let keys = |text: &str| -> Vec<String> {
            let errs = parse(text).unwrap_err();
            let (_, list) = errs[0]
                .message
                .split_once("expected one of: ")
                .unwrap_or_else(|| panic!("{}", errs[0].message));
            list.split(", ").map(str::to_string).collect()
        };
        let top = keys("zzzzzzzzzzzz = 1\n");
        assert!(top.len() >= 7, "{top:?}");
        for key in top {
            assert!(
                doc.contains(&format!("| `{key}` |")) || doc.contains(&format!("| `[{key}")),
                "docs/site.md has no row for `{key}`"
            );
        }
        let offer = keys("hosts = []\nlocale = \"en\"\n[offer]\nzzzzzzzzzzzz = 1\n");
        assert_eq!(offer, ["message", "go", "stay", "label"]);
        for key in offer {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/site.md has no row for `[offer]` key `{key}`"
            );
        }
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        let g = PathGlobs::new(vec![path_glob("/blog/*").unwrap()]).unwrap();
        assert!(g.is_match("/blog/a.html"));
        assert!(!g.is_match("/blog/a/b.html"));
        assert!(!g.is_match("/blog"));
        let all = PathGlobs::new(vec![
            path_glob("/a.html").unwrap(),
            path_glob("/d/**").unwrap(),
        ])
        .unwrap();
        assert!(all.is_match("/a.html") && all.is_match("/d/x/y.html"));
        assert!(!all.is_match("/b.html") && !all.is_match("/a.html/x"));
    }

    /// The string shortcuts agree with globset on every kind of path.
    #[test]
    fn shortcuts_match_as_globset_does() {
        let patterns = ["/a.html", "/d/**", "/", "/blog/*.html", "/x/**/y", "*.css"];
        let paths = [
            "/",
            "/a.html",
            "/a.htm",
            "/a.html/",
            "/d",
            "/d/",
            "/d/x",
            "/d/x/y.html",
            "/dd/x",
            "/blog/a.html",
            "/blog/a/b.html",
            "/x/y",
            "/x/q/y",
            "/s/a.css",
        ];
        for pattern in patterns {
            let ours = PathGlobs::new(vec![path_glob(pattern).unwrap()]).unwrap();
            let theirs = path_glob(pattern).unwrap().compile_matcher();
            for path in paths {
                assert_eq!(
                    ours.is_match(path),
                    theirs.is_match(path),
                    "{pattern} on {path}"
                );
            }
        }
        assert!(path_glob("[").is_err());
    }
}
