//! A site's `_redirects`, compiled: one rule per line (named
//! `_redirects:<line>`, so `explain` and `outpost test` name the line),
//! compiled by the same actions as rules/ (`redirect`, `rewrite`, and
//! `block` with a page for 404 and 410), and an index, so that a request
//! costs one hash lookup and a walk down a prefix tree whatever the
//! number of lines: never a scan of every line.
//!
//! The index alone matches the path, exactly: as on Netlify, a path
//! matches with or without its trailing slash, and a line without `!` does
//! not apply where a file exists at the path. A line's rule checks only
//! its other conditions (query, country, language).

use std::ops::Range;
use std::path::Path;

use foldhash::{HashMap, HashMapExt};
use toml::Spanned;

use super::action::Action;
use super::block::{Block, RawBlock};
use super::conditions::{OneOrMany, RawWhen, When};
use super::kind::{ActionKind, Compiling};
use super::proxy::{Proxy, RawProxy};
use super::redirect::{RawRedirect, Redirect};
use super::rewrite::{RawRewrite, Rewrite};
use super::route::Route;
use super::rule::Rule;
use crate::config::{parse_redirects, Diagnostic, LineKind, QueryValue, RedirectLine};
use crate::context::SitePath;
use crate::store::{SiteVersion, REDIRECTS_FILE};
use crate::transform::Templates;

/// One line of the file, compiled.
#[derive(Debug)]
pub struct Line {
    pub rule: Rule,
    /// `!`: applies even where a file exists at the path.
    pub force: bool,
}

/// A site version's `_redirects`, compiled and indexed.
#[derive(Debug)]
pub struct RedirectsFile {
    /// The number of the version it was compiled from.
    pub version: u64,
    pub lines: Vec<Line>,
    /// Lines with a plain path, by [`key`].
    exact: HashMap<String, Vec<u32>>,
    /// Lines with `:name` segments or a splat.
    tree: Node,
}

/// A node of the prefix tree, one level per path segment.
#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    /// `:name`: any one non-empty segment.
    param: Option<Box<Node>>,
    /// Lines whose pattern ends here.
    ends: Vec<u32>,
    /// Lines whose pattern ends here in a splat: any rest, even none.
    splat: Vec<u32>,
}

/// A path as the index keys it: no slash at either end, so `/a` and
/// `/a/` are one key, and `/` is the empty one.
fn key(path: &str) -> &str {
    path.trim_matches('/')
}

impl Node {
    /// Adds `line` under the pattern whose segments (of its key) are
    /// `segments`.
    fn insert<'s>(&mut self, mut segments: impl Iterator<Item = &'s str>, line: u32) {
        match segments.next() {
            None => self.ends.push(line),
            Some("*") => self.splat.push(line),
            Some(s) if s.starts_with(':') => self
                .param
                .get_or_insert_with(Box::default)
                .insert(segments, line),
            Some(s) => self
                .literal
                .entry(s.to_string())
                .or_default()
                .insert(segments, line),
        }
    }

    /// Calls `found` with the lines of every pattern that matches `rest`
    /// (the path's key from this level on; `None` when no segment is left)
    /// until it returns true; says whether it did.
    fn walk(&self, rest: Option<&str>, found: &mut dyn FnMut(&[u32]) -> bool) -> bool {
        if !self.splat.is_empty() && found(&self.splat) {
            return true;
        }
        let Some(rest) = rest else {
            return !self.ends.is_empty() && found(&self.ends);
        };
        let (segment, after) = match rest.split_once('/') {
            Some((segment, after)) => (segment, Some(after)),
            None => (rest, None),
        };
        if let Some(child) = self.literal.get(segment) {
            if child.walk(after, found) {
                return true;
            }
        }
        match &self.param {
            Some(child) if !segment.is_empty() => child.walk(after, found),
            _ => false,
        }
    }
}

impl RedirectsFile {
    /// Parses and compiles `site`'s `_redirects` (checked when the version
    /// was ingested, so that a version served has no problem here); `None`
    /// when the site has none.
    pub fn compile(site: &SiteVersion) -> Option<Result<RedirectsFile, Vec<Diagnostic>>> {
        let text = site.redirects.as_deref()?;
        let public = Path::new("sites").join(&site.site).join("public");
        Some(
            parse_redirects(&public.join(REDIRECTS_FILE), text)
                .and_then(|lines| RedirectsFile::compile_lines(site, &lines)),
        )
    }

    /// Compiles the checked lines of `site`'s `_redirects`.
    pub fn compile_lines(
        site: &SiteVersion,
        lines: &[RedirectLine],
    ) -> Result<RedirectsFile, Vec<Diagnostic>> {
        let templates = Templates::builtin();
        let sites = [site.site.clone()];
        let mut errors = Vec::new();
        let mut file = RedirectsFile {
            version: site.number,
            lines: Vec::with_capacity(lines.len()),
            exact: HashMap::new(),
            tree: Node::default(),
        };
        for written in lines {
            let Some(rule) = compile_line(written, &sites, &templates, &mut errors) else {
                continue;
            };
            let index = file.lines.len() as u32;
            let from = pattern_path(&written.from);
            let from = key(&from);
            if from.split('/').any(|s| s == "*" || s.starts_with(':')) {
                let segments = Some(from).filter(|f| !f.is_empty());
                file.tree
                    .insert(segments.into_iter().flat_map(|f| f.split('/')), index);
            } else {
                file.exact.entry(from.to_string()).or_default().push(index);
            }
            file.lines.push(Line {
                rule,
                force: written.force,
            });
        }
        if errors.is_empty() {
            Ok(file)
        } else {
            Err(errors)
        }
    }

    /// Whether any line could apply to `path`: the static path is taken
    /// when none does. Allocates nothing.
    pub fn any_for(&self, path: &str) -> bool {
        let key = key(path);
        self.exact.contains_key(key)
            || self
                .tree
                .walk(Some(key).filter(|k| !k.is_empty()), &mut |_| true)
    }

    /// The lines whose path matches `path`, in file order: the only ones
    /// whose other conditions are checked. `:name` is one non-empty
    /// segment, a last `*` any rest (none too); a trailing slash is
    /// ignored.
    pub fn candidates(&self, path: &str) -> Vec<usize> {
        let key = key(path);
        let mut out: Vec<u32> = self.exact.get(key).cloned().unwrap_or_default();
        self.tree
            .walk(Some(key).filter(|k| !k.is_empty()), &mut |lines| {
                out.extend_from_slice(lines);
                false
            });
        out.sort_unstable();
        out.dedup();
        out.into_iter().map(|i| i as usize).collect()
    }
}

impl RedirectsFile {
    /// Redirects written in a circle (`/a /b` and `/b /a`, or a line to
    /// itself), one warning at the first line of each: from each
    /// redirect's target (its placeholders filled with a sample), the line
    /// that would answer it is followed until the path leaves the file, a
    /// line with conditions answers it, or a file `exists` there. `written`
    /// are the lines this was compiled from.
    pub fn loops(
        &self,
        written: &[RedirectLine],
        exists: &dyn Fn(&str) -> bool,
    ) -> Vec<Diagnostic> {
        let certain = |line: &RedirectLine| {
            line.kind() == LineKind::Redirect
                && line.query.is_empty()
                && line.countries.is_empty()
                && line.languages.is_empty()
                && line.to.starts_with('/')
        };
        let mut warnings = Vec::new();
        for (start, line) in written.iter().enumerate() {
            if !certain(line) {
                continue;
            }
            let mut chain = vec![start];
            let mut path = sample_target(line);
            let mut steps = vec![line.from.clone(), path.clone()];
            while chain.len() <= written.len() {
                let Some(&next) = self.candidates(&path).first() else {
                    break;
                };
                let line = &written[next];
                if !certain(line) || (!line.force && exists(&path)) {
                    break;
                }
                if next == start {
                    let lines: Vec<String> = chain
                        .iter()
                        .map(|&i| written[i].origin.line.to_string())
                        .collect();
                    warnings.push(written[start].origin.error(format!(
                        "redirect loop: {} (lines {})",
                        steps.join(" → "),
                        lines.join(", ")
                    )));
                    break;
                }
                if chain.contains(&next) {
                    // A circle that this line only leads into: said at its own lines.
                    break;
                }
                chain.push(next);
                path = sample_target(line);
                steps.push(path.clone());
            }
        }
        warnings
    }
}

/// Where a redirect line sends a request, its placeholders filled with
/// `x`, without query or fragment.
fn sample_target(line: &RedirectLine) -> String {
    let mut to = line.to.clone();
    for name in line.captures() {
        to = to.replace(&format!("{{{name}}}"), "x");
    }
    let end = to.find(['?', '#']).unwrap_or(to.len());
    to.truncate(end);
    to
}

/// `from` as a site path: decoded like a request's path (`%20` is a
/// space), its placeholders and splat left as written.
fn pattern_path(from: &str) -> String {
    SitePath::parse(from).map_or_else(|_| from.to_string(), |p| p.path)
}

/// `from` as route patterns, for captures: literal segments escaped from
/// globbing, a splat as `/**`; without a splat, with and without the
/// trailing slash.
fn when_paths(from: &str) -> Vec<String> {
    let mut pattern = String::with_capacity(from.len() + 4);
    let path = pattern_path(from);
    let trimmed = path.trim_end_matches('/');
    for (i, segment) in trimmed.split('/').enumerate() {
        if i > 0 {
            pattern.push('/');
        }
        match segment {
            "*" => pattern.push_str("**"),
            s if s.starts_with(':') => pattern.push_str(s),
            s => {
                for c in s.chars() {
                    if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
            }
        }
    }
    if pattern.ends_with("/**") {
        vec![pattern]
    } else if pattern.is_empty() {
        vec!["/".into()]
    } else {
        let slash = format!("{pattern}/");
        vec![pattern, slash]
    }
}

/// A value as a rule file would give it (its place is the line's).
fn at<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// One line into a rule, through the actions' own compile; a problem is
/// said at the line's `from` (its conditions) or `to` (its action).
fn compile_line(
    line: &RedirectLine,
    sites: &[String],
    templates: &Templates,
    errors: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let before = errors.len();
    let many = |list: &[String]| Some(at(OneOrMany::Many(list.to_vec())));
    let query = line.query.iter().map(|q| {
        let value = match &q.value {
            QueryValue::Capture(_) => "*".to_string(),
            QueryValue::Equals(v) => v.clone(),
        };
        (q.key.clone(), OneOrMany::One(value))
    });
    let raw = RawWhen {
        query: Some(query.collect()).filter(|q: &std::collections::BTreeMap<_, _>| !q.is_empty()),
        country: Some(&line.countries)
            .filter(|c| !c.is_empty())
            .and_then(|c| many(c)),
        language: Some(&line.languages)
            .filter(|l| !l.is_empty())
            .and_then(|l| many(l)),
        ..RawWhen::default()
    };
    let err = |_: Range<usize>, message: String| line.origin.error(message);
    let mut when = When::compile(raw, &err, errors);
    // The index matches the path; the routes give `to` its captures.
    if line.from.contains([':', '*']) {
        match when_paths(&line.from)
            .iter()
            .map(|p| Route::parse(p))
            .collect()
        {
            Ok(routes) => when.capture_path(routes),
            Err(e) => errors.push(line.origin.error(e)),
        }
    }
    for q in &line.query {
        if let QueryValue::Capture(name) = &q.value {
            when.capture_query(&q.key, name);
        }
    }
    let mut found = Vec::new();
    let mut cx = Compiling {
        file: &line.to_origin.file,
        source: "",
        sites,
        templates,
        when: &when,
        action: 0..0,
        errors: &mut found,
        selectors: Vec::new(),
    };
    let to = Some(at(line.to.clone()));
    let status = Some(at(line.status));
    let action = match line.kind() {
        LineKind::Redirect => Redirect::compile(
            RawRedirect {
                to,
                to_site: None,
                status,
            },
            &mut cx,
        )
        .map(Action::Redirect),
        LineKind::Rewrite => {
            Rewrite::compile(RawRewrite { to, to_site: None }, &mut cx).map(Action::Rewrite)
        }
        LineKind::Page => Block::compile(RawBlock { status, page: to }, &mut cx).map(Action::Block),
        LineKind::Proxy => {
            let raw = RawProxy {
                to,
                ..RawProxy::default()
            };
            Proxy::compile(raw, &mut cx).map(Action::Proxy)
        }
    };
    errors.extend(found.into_iter().map(|d| line.to_origin.error(d.message)));
    if errors.len() > before {
        return None;
    }
    Some(Rule {
        name: format!("_redirects:{}", line.origin.line).into(),
        origin: line.origin.clone(),
        sites: Some(sites.to_vec()),
        when,
        unless: When::default(),
        action: action?,
        selectors: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Country, RequestContext};
    use crate::store::Manifest;
    use http::{HeaderMap, Method};

    fn site() -> SiteVersion {
        let manifest = Manifest {
            created_unix_ms: 0,
            site_toml: "hosts = [\"a.test\"]\nlocale = \"en-GB\"\n".into(),
            files: Vec::new(),
        };
        SiteVersion::from_manifest("a", 1, &manifest, |_, _| unreachable!("no files")).unwrap()
    }

    fn compile(text: &str) -> RedirectsFile {
        let lines = parse_redirects(Path::new("_redirects"), text).unwrap();
        RedirectsFile::compile_lines(&site(), &lines).unwrap()
    }

    /// Whether `from` matches `path`, segment by segment, as the reference
    /// the index must agree with: `:name` one non-empty segment, a last `*`
    /// any rest, trailing slashes ignored.
    fn matches(from: &str, path: &str) -> bool {
        let from = pattern_path(from);
        let split = |p: &str| -> Vec<String> {
            let p = p.trim_matches('/');
            if p.is_empty() {
                Vec::new()
            } else {
                p.split('/').map(str::to_string).collect()
            }
        };
        let (pattern, path) = (split(&from), split(path));
        let splat = pattern.last().is_some_and(|s| s == "*");
        let fixed = pattern.len() - usize::from(splat);
        if path.len() < fixed || (!splat && path.len() != fixed) {
            return false;
        }
        pattern[..fixed].iter().zip(&path).all(|(p, s)| {
            if p.starts_with(':') {
                !s.is_empty()
            } else {
                p == s
            }
        })
    }

    /// What `path` captures for line `i`'s `to`.
    fn captures(file: &RedirectsFile, i: usize, path: &str) -> Vec<(String, String)> {
        let headers = HeaderMap::new();
        let ctx = RequestContext {
            method: &Method::GET,
            path: SitePath::parse(path).unwrap(),
            raw_query: None,
            query: Vec::new(),
            host: "a.test",
            scheme: "http",
            client: [127, 0, 0, 1].into(),
            country: Country::UNKNOWN,
            continent: None,
            eu: false,
            region: None,
            languages: Vec::new(),
            cookies: Vec::new(),
            headers: &headers,
            visitor: Default::default(),
            now: jiff::Timestamp::UNIX_EPOCH,
        };
        let when = &file.lines[i].rule.when;
        when.captures(&ctx)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn lines_become_rules_named_by_line() {
        let file = compile("# c\n/a /b 302\n\n/team/:slug /t/:slug 200\n/x/* /404.html 404!\n");
        let names: Vec<&str> = file.lines.iter().map(|l| &*l.rule.name).collect();
        assert_eq!(names, ["_redirects:2", "_redirects:4", "_redirects:5"]);
        assert_eq!(file.lines[1].rule.action.name(), "rewrite");
        assert_eq!(file.lines[2].rule.action.name(), "block");
        assert!(file.lines[2].force && !file.lines[0].force);
        // Both forms of a path, and nothing else.
        assert_eq!(file.candidates("/a"), [0]);
        assert_eq!(file.candidates("/a/"), [0]);
        assert!(file.candidates("/ab").is_empty() && !file.any_for("/b"));
        assert_eq!(file.candidates("/x/y/z"), [2]);
        assert_eq!(file.candidates("/x"), [2]);
        assert!(file.any_for("/team/ana") && !file.any_for("/team/ana/more"));
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(captures(&file, 1, "/team/ana/"), [pair("slug", "ana")]);
        assert_eq!(captures(&file, 2, "/x/y/z"), [pair("splat", "y/z")]);
        assert!(captures(&file, 0, "/a").is_empty());
    }

    #[test]
    fn loops_are_found_and_only_loops() {
        let text =
            "/a /b\n/b /a/ 302\n/self /self/ 301\n/news/* /blog/:splat\n/blog/* /news/:splat\n\
                    /c /d\n/d /e\n/shop /shop 302 Country=IT\n/f /g\n/g /f\n/h /h 200!\n";
        let lines = parse_redirects(Path::new("_redirects"), text).unwrap();
        let file = RedirectsFile::compile_lines(&site(), &lines).unwrap();
        let warnings: Vec<String> = file
            .loops(&lines, &|path| path == "/g")
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect();
        assert_eq!(
            warnings,
            [
                "1:1: redirect loop: /a → /b → /a/ (lines 1, 2)",
                "2:1: redirect loop: /b → /a/ → /b (lines 2, 1)",
                "3:1: redirect loop: /self → /self/ (lines 3)",
                "4:1: redirect loop: /news/* → /blog/x → /news/x (lines 4, 5)",
                "5:1: redirect loop: /blog/* → /news/x → /blog/x (lines 5, 4)",
            ]
        );
    }

    /// The index finds, in file order, exactly the lines whose path
    /// matches: what a scan of every line would have found.
    #[test]
    fn the_index_agrees_with_a_scan_of_every_line() {
        let words = ["a", "b", "team", "x", "%20y"];
        let mut rng = fastrand::Rng::with_seed(14);
        let segment = |rng: &mut fastrand::Rng, params: bool| -> String {
            match rng.u8(0..6) {
                0 if params => format!(":p{}", rng.u8(0..9)),
                _ => words[rng.usize(0..words.len())].to_string(),
            }
        };
        let mut matched = 0;
        for round in 0..40 {
            let (mut text, mut froms) = (String::new(), Vec::new());
            for n in 0..rng.usize(1..60) {
                let depth = rng.usize(0..4);
                let mut from = String::new();
                let mut used = std::collections::HashSet::new();
                for _ in 0..depth {
                    let mut s = segment(&mut rng, true);
                    if !used.insert(s.clone()) {
                        s = format!("d{n}");
                    }
                    from.push('/');
                    from.push_str(&s);
                }
                match rng.u8(0..4) {
                    0 => from.push_str("/*"),
                    1 => from.push('/'),
                    _ if from.is_empty() => from.push('/'),
                    _ => {}
                }
                text.push_str(&format!("{from} /to{n} 301\n"));
                froms.push(from);
            }
            let file = compile(&text);
            for _ in 0..200 {
                let mut path = String::new();
                for _ in 0..rng.usize(0..5) {
                    path.push('/');
                    // Now and then an empty segment (`/a//b`), which no
                    // `:name` matches.
                    if rng.u8(0..10) > 0 {
                        path.push_str(&segment(&mut rng, false).replace("%20", " "));
                    }
                }
                if path.is_empty() || rng.bool() {
                    path.push('/');
                }
                let scan: Vec<usize> = (0..froms.len())
                    .filter(|&i| matches(&froms[i], &path))
                    .collect();
                let index = file.candidates(&path);
                assert_eq!(index, scan, "round {round}, {path}\n{text}");
                matched += usize::from(!scan.is_empty());
                assert_eq!(file.any_for(&path), !index.is_empty(), "{path}");
            }
        }
        // Enough paths matched for the comparison to mean something.
        assert!(matched > 2000, "{matched}");
    }
}
