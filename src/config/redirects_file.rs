//! A site's `public/_redirects`, in Netlify's format: one rule a line,
//! `from [query…] to [status][!] [Key=Value…]`, `#` comments. Parsed and
//! checked here, at ingest, so that a version whose file has a line outpost
//! cannot honour never goes live; `rules` compiles the lines.

use std::collections::BTreeSet;
use std::path::Path;

use super::diagnostic::{Diagnostic, Origin};
use crate::context::Country;

/// The statuses a line may give, and what each does.
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// One line of `_redirects`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectLine {
    /// Where the line's `from` starts; rules name it `_redirects:<line>`.
    pub origin: Origin,
    /// The path pattern as written (`/news/:year/*`): literal segments,
    /// `:name` segments, and a last `*` segment (the splat).
    pub from: String,
    /// Query parameters the request must have.
    pub query: Vec<QueryMatch>,
    /// Where it goes, with every placeholder as `{name}` (`:splat` is
    /// `{splat}`) and a literal brace percent-encoded.
    pub to: String,
    pub to_origin: Origin,
    pub status: u16,
    /// `!`: applies even where a file exists at the path.
    pub force: bool,
    /// `Country=`, uppercased ISO codes (any of them).
    pub countries: Vec<String>,
    /// `Language=`, lowercased primary tags (any of them).
    pub languages: Vec<String>,
}

/// `key=:name` (any value, captured as `name`) or `key=value` (exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    pub key: String,
    pub value: QueryValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryValue {
    Capture(String),
    Equals(String),
}

impl RedirectLine {
    /// What the line answers with.
    pub fn kind(&self) -> LineKind {
        match self.status {
            200 if self.to.starts_with("http") => LineKind::Proxy,
            200 => LineKind::Rewrite,
            404 | 410 => LineKind::Page,
            _ => LineKind::Redirect,
        }
    }

    /// The placeholders `from` and its query give (`splat` for a `*`).
    pub fn captures(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .from
            .split('/')
            .filter_map(|s| match s {
                "*" => Some("splat".to_string()),
                s => s.strip_prefix(':').map(str::to_string),
            })
            .collect();
        names.extend(self.query.iter().filter_map(|q| match &q.value {
            QueryValue::Capture(name) => Some(name.clone()),
            QueryValue::Equals(_) => None,
        }));
        names
    }
}

/// What a line answers with, by its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// 301, 302, 303, 307, 308.
    Redirect,
    /// 200: another path of the site, at this URL.
    Rewrite,
    /// 200 to an http(s) URL: forwarded there.
    Proxy,
    /// 404, 410: the `to` page with that status.
    Page,
}

/// A token of a line and the byte offset it starts at in the file.
#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    at: usize,
}

/// Parses the text of a `_redirects` found at `file`: every line, or every
/// problem, each at its `file:line:col`.
pub fn parse_redirects(file: &Path, source: &str) -> Result<Vec<RedirectLine>, Vec<Diagnostic>> {
    let file = file.strip_prefix(".").unwrap_or(file);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut start = 0;
    for (index, text) in source.split('\n').enumerate() {
        let place = Place {
            file,
            line: index + 1,
            text,
            start,
        };
        start += text.len() + 1;
        let tokens: Vec<Token<'_>> = tokens(text, place.start);
        if tokens.is_empty() || tokens[0].text.starts_with('#') {
            continue;
        }
        match place.parse(&tokens) {
            Ok(line) => lines.push(line),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// The whitespace-separated tokens of `text`, which starts at `start`.
fn tokens(text: &str, start: usize) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut from = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_whitespace(), from) {
            (true, Some(f)) => {
                out.push(Token {
                    text: &text[f..i],
                    at: start + f,
                });
                from = None;
            }
            (false, None) => from = Some(i),
            _ => {}
        }
    }
    out
}

/// One line being parsed.
struct Place<'a> {
    file: &'a Path,
    line: usize,
    text: &'a str,
    /// Byte offset of the line in the file.
    start: usize,
}

impl Place<'_> {
    fn origin(&self, at: usize) -> Origin {
        let col = self.text[..at - self.start].chars().count() + 1;
        Origin {
            file: self.file.to_path_buf(),
            line: self.line,
            col,
        }
    }

    fn error(&self, token: Token<'_>, message: impl Into<String>) -> Diagnostic {
        self.origin(token.at).error(message)
    }

    fn parse(&self, tokens: &[Token<'_>]) -> Result<RedirectLine, Diagnostic> {
        let from = tokens[0];
        let names = self.from(from)?;
        let mut rest = tokens[1..].iter().copied().peekable();
        let mut query = Vec::new();
        let to = loop {
            let Some(t) = rest.next() else {
                return Err(self.error(from, "this line has no `to`: write `from to [status]`"));
            };
            if t.text.starts_with('/') || t.text.contains("://") {
                break t;
            }
            query.push(self.query(t)?);
        };
        let mut captures = names;
        for q in &query {
            if let QueryValue::Capture(name) = &q.value {
                if !captures.insert(name.clone()) {
                    return Err(self.error(to, format!("placeholder `:{name}` is given twice")));
                }
            }
        }
        let (mut status, mut force) = (301, false);
        if let Some(t) = rest.next_if(|t| t.text.starts_with(|c: char| c.is_ascii_digit())) {
            (status, force) = self.status(t)?;
        }
        let mut line = RedirectLine {
            origin: self.origin(from.at),
            from: from.text.to_string(),
            query,
            to: String::new(),
            to_origin: self.origin(to.at),
            status,
            force,
            countries: Vec::new(),
            languages: Vec::new(),
        };
        line.to = self.to(to, &line, &captures)?;
        for t in rest {
            self.condition(t, &mut line)?;
        }
        Ok(line)
    }

    /// Checks `from`; gives its placeholders' names.
    fn from(&self, t: Token<'_>) -> Result<BTreeSet<String>, Diagnostic> {
        if t.text.contains("://") {
            return Err(self.error(
                t,
                "a `from` with a host is not supported: a site's hosts are in its site.toml; write the path",
            ));
        }
        if !t.text.starts_with('/') {
            return Err(self.error(t, format!("`{}` is not a path starting with `/`", t.text)));
        }
        let mut names = BTreeSet::new();
        let segments: Vec<&str> = t.text[1..].split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if *segment == "*" {
                if !last {
                    return Err(self.error(t, "a splat `*` can only be the last segment of `from`"));
                }
                names.insert("splat".to_string());
            } else if segment.contains('*') {
                return Err(self.error(
                    t,
                    format!("`{segment}`: a splat `*` is a whole segment (`/news/*`)"),
                ));
            } else if let Some(name) = segment.strip_prefix(':') {
                if !is_name(name) || name == "splat" {
                    return Err(self.error(
                        t,
                        format!("`:{name}` is not a placeholder name (letters, digits, `_`; not `splat`)"),
                    ));
                }
                if !names.insert(name.to_string()) {
                    return Err(self.error(t, format!("placeholder `:{name}` is given twice")));
                }
            }
        }
        Ok(names)
    }

    /// `key=:name` or `key=value`.
    fn query(&self, t: Token<'_>) -> Result<QueryMatch, Diagnostic> {
        let Some((key, value)) = t.text.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(self.error(
                t,
                format!(
                    "`{}` is neither a query match (`key=:name`, `key=value`) nor a `to` (a path starting with `/` or an http(s) URL)",
                    t.text
                ),
            ));
        };
        let value = match value.strip_prefix(':') {
            Some(name) if is_name(name) => QueryValue::Capture(name.to_string()),
            Some(name) => {
                return Err(self.error(t, format!("`:{name}` is not a placeholder name")));
            }
            None if value.is_empty() => {
                return Err(self.error(t, format!("`{key}=` needs a value or `:name`")));
            }
            None => QueryValue::Equals(value.to_string()),
        };
        Ok(QueryMatch {
            key: key.to_string(),
            value,
        })
    }

    /// `301`, `200!`, …
    fn status(&self, t: Token<'_>) -> Result<(u16, bool), Diagnostic> {
        let (digits, force) = match t.text.strip_suffix('!') {
            Some(d) => (d, true),
            None => (t.text, false),
        };
        let code: u16 = digits
            .parse()
            .map_err(|_| self.error(t, format!("`{}` is not a status like 301 or 200!", t.text)))?;
        if code == 200 || code == 404 || code == 410 || REDIRECT_STATUSES.contains(&code) {
            return Ok((code, force));
        }
        let why = match code {
            401 | 403 => ": access by role or password is not supported",
            _ => "",
        };
        Err(self.error(
            t,
            format!("status {code} is not supported{why} (200, 301, 302, 303, 307, 308, 404 and 410 are)"),
        ))
    }

    /// Checks `to` against what the line does, and writes its
    /// placeholders as `{name}`.
    fn to(
        &self,
        t: Token<'_>,
        line: &RedirectLine,
        captures: &BTreeSet<String>,
    ) -> Result<String, Diagnostic> {
        let external = !t.text.starts_with('/');
        if external && !(t.text.starts_with("http://") || t.text.starts_with("https://")) {
            return Err(self.error(t, format!("`{}` is not an http(s) URL", t.text)));
        }
        if t.text.starts_with("//") {
            return Err(self.error(
                t,
                "a `to` must not start with `//`: that names another host",
            ));
        }
        // The line's `to` is not set yet: its kind follows from this one.
        let kind = match line.kind() {
            LineKind::Rewrite if external => LineKind::Proxy,
            kind => kind,
        };
        match kind {
            LineKind::Page if external => {
                return Err(self.error(
                    t,
                    format!("a {} line shows a page of the site: `to` must be a path", line.status),
                ))
            }
            LineKind::Rewrite | LineKind::Page if t.text.contains(['?', '#']) => {
                return Err(self.error(
                    t,
                    format!("a {} line serves a file: `to` is a path without a query (the request's query is kept)", line.status),
                ))
            }
            LineKind::Page if t.text.contains(':') => {
                return Err(self.error(
                    t,
                    format!("a {} line shows one page: its `to` has no placeholders", line.status),
                ))
            }
            _ => {}
        }
        let mut out = String::with_capacity(t.text.len() + 8);
        let mut rest = t.text;
        while let Some(c) = rest.chars().next() {
            // `:` is one byte: what follows it is the placeholder's name.
            let name = rest[c.len_utf8()..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            match c {
                ':' if is_name(name) => {
                    if !captures.contains(name) {
                        let known = captures.iter().map(|n| format!(":{n}")).collect::<Vec<_>>();
                        let known = if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        };
                        return Err(self.error(
                            t,
                            format!("`:{name}` is not a placeholder of this line's `from` (it has {known}); write a literal colon as %3A"),
                        ));
                    }
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                    rest = &rest[1 + name.len()..];
                    continue;
                }
                '{' => out.push_str("%7B"),
                '}' => out.push_str("%7D"),
                c => out.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        // As on Netlify, a redirect or a proxy keeps the request's query,
        // unless the line matched on it or gives its own.
        let passes_query = matches!(kind, LineKind::Redirect | LineKind::Proxy);
        if passes_query && line.query.is_empty() && !out.contains('?') {
            let at = out.find('#').unwrap_or(out.len());
            out.insert_str(at, "?{query}");
        }
        Ok(out)
    }

    /// `Country=au,nz`, `Language=en,de`; the rest are errors.
    fn condition(&self, t: Token<'_>, line: &mut RedirectLine) -> Result<(), Diagnostic> {
        let Some((key, values)) = t.text.split_once('=') else {
            return Err(self.error(
                t,
                format!(
                    "`{}` is not a condition like Country=us,ca or Language=en",
                    t.text
                ),
            ));
        };
        let values = values.split(',').filter(|v| !v.is_empty());
        match key.to_ascii_lowercase().as_str() {
            "country" => {
                for v in values {
                    let code = v.to_ascii_uppercase();
                    Country::parse_written(&code).map_err(|e| self.error(t, e))?;
                    line.countries.push(code);
                }
                if line.countries.is_empty() {
                    return Err(self.error(t, "`Country=` needs at least one code"));
                }
            }
            "language" => {
                for v in values {
                    if !((1..=8).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphabetic())) {
                        return Err(
                            self.error(t, format!("`{v}` is not a primary language tag like en"))
                        );
                    }
                    line.languages.push(v.to_ascii_lowercase());
                }
                if line.languages.is_empty() {
                    return Err(self.error(t, "`Language=` needs at least one tag"));
                }
            }
            "role" => {
                return Err(self.error(t, "`Role=` is not supported: outpost has no user roles"))
            }
            "signed" => {
                return Err(self.error(
                    t,
                    "`Signed=` is not supported: outpost does not sign proxied requests",
                ))
            }
            "cookie" => {
                return Err(self.error(
                    t,
                    "`Cookie=` is not supported here: write a rule in rules/ with `when.cookie`",
                ))
            }
            _ => {
                return Err(self.error(
                    t,
                    format!("unknown condition `{key}` (Country= and Language= are supported)"),
                ))
            }
        }
        Ok(())
    }
}

/// A placeholder name: letters, digits and `_`, not starting with a digit.
fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RedirectLine>, Vec<Diagnostic>> {
        parse_redirects(Path::new("sites/x/public/_redirects"), text)
    }

    /// The one problem of `text`, as `line:col: message`.
    fn error(text: &str) -> String {
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.file, Path::new("sites/x/public/_redirects"));
        format!("{}:{}: {}", e.line, e.col, e.message)
    }

    #[test]
    fn every_form() {
        let text = "# old blog\n\n/home / \n  /old   /new  302  \n/news/:year/:slug/* /blog/:year/:splat?s=:slug 301!\n\
                    /store id=:id /blog/:id 308\n/shop kind=book /books 307\n/app/* /app/index.html 200\n\
                    /gone /gone.html 410\n/en/* /en/404.html 404\n/ https://example.com/au 302 Country=au,NZ Language=EN\n\
                    /{x} /y{z}\n";
        let lines = parse(text).unwrap();
        assert_eq!(lines.len(), 10);
        let home = &lines[0];
        assert_eq!((home.origin.line, home.origin.col), (3, 1));
        assert_eq!(
            (
                home.from.as_str(),
                home.to.as_str(),
                home.status,
                home.force
            ),
            ("/home", "/?{query}", 301, false)
        );
        assert_eq!(
            (lines[1].origin.col, lines[1].to_origin.col, lines[1].status),
            (3, 10, 302)
        );
        let news = &lines[2];
        assert_eq!(news.to, "/blog/{year}/{splat}?s={slug}");
        assert!(news.force);
        assert_eq!(news.captures(), ["year", "slug", "splat"]);
        let store = &lines[3];
        assert_eq!(
            store.query,
            [QueryMatch {
                key: "id".into(),
                value: QueryValue::Capture("id".into())
            }]
        );
        assert_eq!((store.to.as_str(), store.status), ("/blog/{id}", 308));
        assert_eq!(lines[4].query[0].value, QueryValue::Equals("book".into()));
        assert_eq!(lines[5].kind(), LineKind::Rewrite);
        let proxy = &parse("/api/* https://api.example/v2/:splat 200").unwrap()[0];
        assert_eq!(proxy.kind(), LineKind::Proxy);
        assert_eq!(proxy.to, "https://api.example/v2/{splat}?{query}");
        assert_eq!(
            (lines[6].kind(), lines[7].kind()),
            (LineKind::Page, LineKind::Page)
        );
        let au = &lines[8];
        assert_eq!(
            (au.kind(), au.countries.clone(), au.languages.clone()),
            (
                LineKind::Redirect,
                vec!["AU".to_string(), "NZ".into()],
                vec!["en".to_string()]
            )
        );
        assert_eq!(lines[9].to, "/y%7Bz%7D?{query}");
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only\n   \n").unwrap().is_empty());
    }

    #[test]
    fn every_error_names_its_place() {
        let cases = [
            ("/a", "1:1: this line has no `to`: write `from to [status]`"),
            ("x /b", "1:1: `x` is not a path starting with `/`"),
            ("https://a.example/* /b", "1:1: a `from` with a host is not supported: a site's hosts are in its site.toml; write the path"),
            ("/a/*/b /c", "1:1: a splat `*` can only be the last segment of `from`"),
            ("/a* /c", "1:1: `a*`: a splat `*` is a whole segment (`/news/*`)"),
            ("/:1 /c", "1:1: `:1` is not a placeholder name (letters, digits, `_`; not `splat`)"),
            ("/:splat /c", "1:1: `:splat` is not a placeholder name (letters, digits, `_`; not `splat`)"),
            ("/:a/:a /c", "1:1: placeholder `:a` is given twice"),
            ("/a  x  /c", "1:5: `x` is neither a query match (`key=:name`, `key=value`) nor a `to` (a path starting with `/` or an http(s) URL)"),
            ("/a k= /c", "1:4: `k=` needs a value or `:name`"),
            ("/a k=:1 /c", "1:4: `:1` is not a placeholder name"),
            ("/:id id=:id /c", "1:13: placeholder `:id` is given twice"),
            ("/a /b 3o1", "1:7: `3o1` is not a status like 301 or 200!"),
            ("/a /b 418", "1:7: status 418 is not supported (200, 301, 302, 303, 307, 308, 404 and 410 are)"),
            ("/a /b 403", "1:7: status 403 is not supported: access by role or password is not supported (200, 301, 302, 303, 307, 308, 404 and 410 are)"),
            ("/a ftp://x/ 301", "1:4: `ftp://x/` is not an http(s) URL"),
            ("/a //evil.example/ 301", "1:4: a `to` must not start with `//`: that names another host"),
            ("/a https://x.example/ 404", "1:4: a 404 line shows a page of the site: `to` must be a path"),
            ("/a/:id /b/:slug", "1:8: `:slug` is not a placeholder of this line's `from` (it has :id); write a literal colon as %3A"),
            ("/a /b/:x", "1:4: `:x` is not a placeholder of this line's `from` (it has none); write a literal colon as %3A"),
            ("/a /b 301 Role=admin", "1:11: `Role=` is not supported: outpost has no user roles"),
            ("/a /b 200! Signed=API", "1:12: `Signed=` is not supported: outpost does not sign proxied requests"),
            ("/a /b 302 Cookie=x", "1:11: `Cookie=` is not supported here: write a rule in rules/ with `when.cookie`"),
            ("/a /b 302 Colour=red", "1:11: unknown condition `Colour` (Country= and Language= are supported)"),
            ("/a /b 302 fr", "1:11: `fr` is not a condition like Country=us,ca or Language=en"),
            ("/a /b 302 Country=uk", "1:11: `UK` is not an ISO 3166-1 alpha-2 country code, did you mean GB? (the United Kingdom is GB)"),
            ("/a /b 302 Country=", "1:11: `Country=` needs at least one code"),
            ("/a /b 302 Language=en-GB", "1:11: `en-GB` is not a primary language tag like en"),
            ("/a /b 302 Language=", "1:11: `Language=` needs at least one tag"),
            ("/a /b?x=1 200", "1:4: a 200 line serves a file: `to` is a path without a query (the request's query is kept)"),
            ("/a/* /404.html#top 404", "1:6: a 404 line serves a file: `to` is a path without a query (the request's query is kept)"),
            ("/a/* /:splat.html 410", "1:6: a 410 line shows one page: its `to` has no placeholders"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
        // Columns count characters, on the line they are on.
        assert_eq!(
            error("# ok\n/é  /b 999"),
            "2:8: status 999 is not supported (200, 301, 302, 303, 307, 308, 404 and 410 are)"
        );
        // Every bad line is reported, not only the first.
        assert_eq!(parse("/a\n/b /c\n/d").unwrap_err().len(), 2);
    }
}
