//! Conditions (`when`): compiled at load, matched against a request context.
//! Every condition must hold; a list means any of its values.

use globset::{GlobBuilder, GlobMatcher};
use http::{HeaderName, Method};

use super::raw::{OneOrMany, RawWhen};
use crate::config::{path_glob, Diagnostic, PathGlobs};
use crate::context::{Country, RequestContext};

/// A value condition: `"*"` means present with any value.
#[derive(Debug, Clone)]
pub enum Expected {
    Any,
    Exactly(String),
}

impl Expected {
    fn new(value: String) -> Expected {
        if value == "*" {
            Expected::Any
        } else {
            Expected::Exactly(value)
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Expected::Any => true,
            Expected::Exactly(v) => v == value,
        }
    }
}

/// A compiled `when`.
#[derive(Debug, Default)]
pub struct When {
    pub path: PathGlobs,
    country: Vec<Country>,
    not_country: Vec<Country>,
    language: Vec<String>,
    query: Vec<(String, Vec<Expected>)>,
    cookie: Vec<(String, Vec<Expected>)>,
    header: Vec<(HeaderName, Vec<GlobMatcher>)>,
    method: Vec<Method>,
}

impl When {
    /// Compiles a raw `when`; `err` turns a span into a diagnostic.
    pub fn compile(
        raw: RawWhen,
        err: &dyn Fn(std::ops::Range<usize>, String) -> Diagnostic,
        errors: &mut Vec<Diagnostic>,
    ) -> When {
        let mut when = When::default();
        if let Some(paths) = raw.path {
            let span = paths.span();
            let mut globs = Vec::new();
            for p in paths.into_inner().into_vec() {
                match path_glob(&p) {
                    Ok(g) if p.starts_with('/') || p.starts_with('*') => globs.push(g),
                    Ok(_) => errors.push(err(
                        span.clone(),
                        format!("path glob `{p}` must start with `/`"),
                    )),
                    Err(e) => errors.push(err(
                        span.clone(),
                        format!("bad path glob `{p}`: {}", e.kind()),
                    )),
                }
            }
            match PathGlobs::new(globs) {
                Ok(set) => when.path = set,
                Err(e) => errors.push(err(span, format!("bad path glob: {}", e.kind()))),
            }
        }
        let mut countries = |list: Option<toml::Spanned<OneOrMany<String>>>| -> Vec<Country> {
            let Some(list) = list else { return Vec::new() };
            let span = list.span();
            list.into_inner()
                .into_vec()
                .into_iter()
                .filter_map(|c| {
                    Country::parse_written(&c)
                        .map_err(|e| errors.push(err(span.clone(), e)))
                        .ok()
                })
                .collect()
        };
        when.country = countries(raw.country);
        when.not_country = countries(raw.not_country);
        if let Some(langs) = raw.language {
            let span = langs.span();
            for l in langs.into_inner().into_vec() {
                if (1..=8).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()) {
                    when.language.push(l.to_ascii_lowercase());
                } else {
                    errors.push(err(
                        span.clone(),
                        format!("`{l}` is not a primary language tag like it"),
                    ));
                }
            }
        }
        let pairs = |map: Option<std::collections::BTreeMap<String, OneOrMany<String>>>| {
            map.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_vec().into_iter().map(Expected::new).collect()))
                .collect()
        };
        when.query = pairs(raw.query);
        when.cookie = pairs(raw.cookie);
        for (name, globs) in raw.header.unwrap_or_default() {
            let Ok(header) = HeaderName::try_from(name.get_ref().as_str()) else {
                errors.push(err(
                    name.span(),
                    format!("`{}` is not a header name", name.get_ref()),
                ));
                continue;
            };
            let span = globs.span();
            let mut compiled = Vec::new();
            for g in globs.into_inner().into_vec() {
                match GlobBuilder::new(&g).case_insensitive(true).build() {
                    Ok(glob) => compiled.push(glob.compile_matcher()),
                    Err(e) => {
                        errors.push(err(span.clone(), format!("bad glob `{g}`: {}", e.kind())))
                    }
                }
            }
            when.header.push((header, compiled));
        }
        if let Some(methods) = raw.method {
            let span = methods.span();
            for m in methods.into_inner().into_vec() {
                match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(method) => when.method.push(method),
                    Err(_) => {
                        errors.push(err(span.clone(), format!("`{m}` is not an HTTP method")))
                    }
                }
            }
        }
        when
    }

    /// Whether the conditions read anything about the visitor (not just the
    /// URL), which makes a response private.
    pub fn about_the_visitor(&self) -> bool {
        !(self.country.is_empty()
            && self.not_country.is_empty()
            && self.language.is_empty()
            && self.cookie.is_empty()
            && self.header.is_empty())
    }

    /// `Ok` when every condition holds, else the first that failed.
    pub fn check<'w>(&'w self, ctx: &RequestContext<'_>) -> Result<(), Miss<'w>> {
        self.check_url(ctx)?;
        self.check_visitor(ctx)
    }

    fn check_url<'w>(&'w self, ctx: &RequestContext<'_>) -> Result<(), Miss<'w>> {
        if !self.method.is_empty() && !self.method.contains(ctx.method) {
            return Err(Miss::Method);
        }
        if !self.path.is_empty() && !self.path.is_match(&ctx.path.path) {
            return Err(Miss::Path);
        }
        for (name, expected) in &self.query {
            if !ctx
                .query_values(name)
                .any(|v| expected.iter().any(|e| e.accepts(v)))
            {
                return Err(Miss::Query(name));
            }
        }
        Ok(())
    }

    fn check_visitor<'w>(&'w self, ctx: &RequestContext<'_>) -> Result<(), Miss<'w>> {
        if !self.country.is_empty() && !self.country.contains(&ctx.country) {
            return Err(Miss::Country);
        }
        if self.not_country.contains(&ctx.country) {
            return Err(Miss::Country);
        }
        if !self.language.is_empty() && !ctx.languages.iter().any(|l| self.language.contains(l)) {
            return Err(Miss::Language);
        }
        for (name, expected) in &self.cookie {
            if !ctx
                .cookie(name)
                .is_some_and(|v| expected.iter().any(|e| e.accepts(v)))
            {
                return Err(Miss::Cookie(name));
            }
        }
        for (name, globs) in &self.header {
            let ok = ctx.headers.get_all(name).iter().any(|v| {
                globs
                    .iter()
                    .any(|g| g.is_match(String::from_utf8_lossy(v.as_bytes()).as_ref()))
            });
            if !ok {
                return Err(Miss::Header(name));
            }
        }
        Ok(())
    }
}

/// The first condition of a `when` that a request failed. Put into words
/// only when someone asks (`explain`), not on every request.
#[derive(Debug, Clone, Copy)]
pub enum Miss<'w> {
    Method,
    Path,
    Query(&'w str),
    Country,
    Language,
    Cookie(&'w str),
    Header(&'w HeaderName),
}

impl Miss<'_> {
    /// Whether the failed condition is about the visitor (so that another
    /// visitor could have matched: the response is then private).
    pub fn about_the_visitor(self) -> bool {
        !matches!(self, Miss::Method | Miss::Path | Miss::Query(_))
    }

    /// What failed, in words, for the request it failed on.
    pub fn describe(self, ctx: &RequestContext<'_>) -> String {
        match self {
            Miss::Method => format!("method is {}", ctx.method),
            Miss::Path => format!("path {} does not match", ctx.path.path),
            Miss::Query(name) => format!("query `{name}` does not match"),
            Miss::Country => format!("country is {}", ctx.country),
            Miss::Language => format!("languages are [{}]", ctx.languages.join(", ")),
            Miss::Cookie(name) => format!("cookie `{name}` does not match"),
            Miss::Header(name) => format!("header `{name}` does not match"),
        }
    }
}
