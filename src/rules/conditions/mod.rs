//! Conditions (`when`): compiled at load, matched against a request context.
//! Every condition must hold; a list means any of its values.
//!
//! Each condition's file holds all that is known about it (see
//! [`ConditionKind`]); the table below is the one place that lists them,
//! and its order is the order they are checked in: the URL's first, so
//! that a request another URL would have matched is not made private.

mod after;
mod before;
mod bot;
mod continent;
mod cookie;
mod country;
mod device;
mod eu;
mod header;
mod hours;
mod kind;
mod language;
mod method;
mod path;
mod percent;
mod query;
mod region;

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;

pub(crate) use kind::OneOrMany;
use kind::{ConditionKind, Errors};

use crate::config::{Diagnostic, PathGlobs};
use crate::context::RequestContext;
use crate::rules::route::{Captures, Route};

macro_rules! conditions {
    ($($key:ident => $variant:ident($kind:ty)),* $(,)?) => {
        /// A `when` as written: its keys are the conditions' names.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawWhen {
            $(pub(crate) $key: Option<<$kind as ConditionKind>::Raw>,)*
        }

        /// One compiled condition.
        #[derive(Debug)]
        enum Condition {
            $($variant($kind)),*
        }

        impl Condition {
            fn holds(&self, ctx: &RequestContext<'_>) -> bool {
                match self {
                    $(Condition::$variant(c) => c.holds(ctx)),*
                }
            }

            fn describe(&self, ctx: &RequestContext<'_>) -> String {
                match self {
                    $(Condition::$variant(c) => c.describe(ctx)),*
                }
            }

            fn about_the_visitor(&self) -> bool {
                match self {
                    $(Condition::$variant(_) => <$kind as ConditionKind>::ABOUT_THE_VISITOR),*
                }
            }

            /// Its key, as written under `when` or `unless`.
            fn key(&self) -> &'static str {
                match self {
                    $(Condition::$variant(_) => stringify!($key)),*
                }
            }
        }

        /// Every condition written, compiled in table order.
        fn compile_all(raw: RawWhen, errors: &mut Errors<'_>) -> Vec<Condition> {
            let mut all = Vec::new();
            $(if let Some(raw) = raw.$key {
                let mut some = Vec::new();
                <$kind>::compile(raw, errors, &mut some);
                all.extend(some.into_iter().map(Condition::$variant));
            })*
            all
        }
    };
}

conditions! {
    method => Method(method::Method),
    path => Path(path::Path),
    query => Query(query::Query),
    after => After(after::After),
    before => Before(before::Before),
    hours => Hours(hours::Hours),
    country => Country(country::Country),
    not_country => NotCountry(country::NotCountry),
    continent => Continent(continent::Continent),
    eu => Eu(eu::Eu),
    region => Region(region::Region),
    language => Language(language::Language),
    cookie => Cookie(cookie::Cookie),
    header => Header(header::Header),
    percent => Percent(percent::Percent),
    bot => Bot(bot::Bot),
    device => Device(device::Device),
}

/// A compiled `when`.
#[derive(Debug, Default)]
pub struct When {
    /// The paths it is limited to (empty: any), kept apart to tell quickly
    /// whether any rule could apply to a path.
    pub path: PathGlobs,
    conditions: Vec<Condition>,
    /// `(parameter, name)`: the query's values captured as `{name}` (a
    /// `_redirects` line's `id=:id`).
    query_captures: Vec<(String, Arc<str>)>,
    /// The routes of a path matched before the conditions are checked (by
    /// a `_redirects` index), for their captures only.
    matched_path: Option<path::Path>,
}

impl When {
    /// Compiles a raw `when`; `err` turns a span into a diagnostic.
    pub fn compile(
        raw: RawWhen,
        err: &dyn Fn(Range<usize>, String) -> Diagnostic,
        errors: &mut Vec<Diagnostic>,
    ) -> When {
        let (after, before) = (raw.after.clone(), raw.before.clone());
        let conditions = compile_all(raw, &mut Errors { err, list: errors });
        let instant = |c: &Condition| match c {
            Condition::After(a) => Some((true, a.0)),
            Condition::Before(b) => Some((false, b.0)),
            _ => None,
        };
        let starts = conditions.iter().filter_map(instant).find(|(a, _)| *a);
        let ends = conditions.iter().filter_map(instant).find(|(a, _)| !*a);
        if let (Some((_, start)), Some((_, end)), Some(after), Some(before)) =
            (starts, ends, after, before)
        {
            if end <= start {
                errors.push(err(
                    before.span(),
                    format!(
                        "`before` ({}) is not later than `after` ({}): the rule would never apply",
                        before.get_ref(),
                        after.get_ref()
                    ),
                ));
            }
        }
        let path = conditions.iter().find_map(|c| match c {
            Condition::Path(p) => Some(p.globs.clone()),
            _ => None,
        });
        When {
            path: path.unwrap_or_default(),
            conditions,
            query_captures: Vec::new(),
            matched_path: None,
        }
    }

    /// Takes the captures of `routes` (the path having been matched by
    /// whoever gives them), as a `when.path` of them would.
    pub fn capture_path(&mut self, routes: Vec<Route>) {
        self.matched_path = Some(path::Path {
            globs: PathGlobs::default(),
            routes,
        });
    }

    /// Captures the (first) value of query parameter `param` as `name`.
    pub fn capture_query(&mut self, param: &str, name: &str) {
        self.query_captures.push((param.to_string(), name.into()));
    }

    /// What the matching pattern of `when.path` captured from the path
    /// (see [`Route`](crate::rules::route::Route)), then the query's
    /// captures; empty without captures.
    pub fn captures(&self, ctx: &RequestContext<'_>) -> Captures {
        let mut captures = self
            .path_condition()
            .and_then(|p| p.captures(&ctx.path.path))
            .unwrap_or_default();
        for (param, name) in &self.query_captures {
            let value = ctx.query_values(param).next().unwrap_or_default();
            captures.push((name.clone(), value.to_string()));
        }
        captures
    }

    /// The captures every pattern of `when.path` has and the query's, which
    /// a `to` may name.
    pub fn capture_names(&self) -> Vec<&str> {
        let mut names = self
            .path_condition()
            .map(path::Path::capture_names)
            .unwrap_or_default();
        names.extend(self.query_captures.iter().map(|(_, name)| &**name));
        names
    }

    fn path_condition(&self) -> Option<&path::Path> {
        let written = self.conditions.iter().find_map(|c| match c {
            Condition::Path(p) => Some(p),
            _ => None,
        });
        written.or(self.matched_path.as_ref())
    }

    /// Whether the conditions read anything about the visitor (not just the
    /// URL), which makes a response private.
    pub fn about_the_visitor(&self) -> bool {
        self.conditions.iter().any(Condition::about_the_visitor)
    }

    /// `Ok` when every condition holds, else the first that failed.
    pub fn check<'w>(&'w self, ctx: &RequestContext<'_>) -> Result<(), Miss<'w>> {
        match self.conditions.iter().find(|c| !c.holds(ctx)) {
            Some(failed) => Err(Miss {
                condition: failed,
                excluded: false,
            }),
            None => Ok(()),
        }
    }

    /// As an `unless`: `Ok` when none of its conditions holds, else the
    /// first that does.
    pub fn check_none<'w>(&'w self, ctx: &RequestContext<'_>) -> Result<(), Miss<'w>> {
        match self.conditions.iter().find(|c| c.holds(ctx)) {
            Some(held) => Err(Miss {
                condition: held,
                excluded: true,
            }),
            None => Ok(()),
        }
    }

    /// Whether it has a condition under `key` (`region`…).
    pub fn has(&self, key: &str) -> bool {
        self.conditions.iter().any(|c| c.key() == key)
    }

    /// Whether it has no condition at all.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }
}

/// Why a rule did not match a request: the first condition of its `when`
/// that failed, or of its `unless` that held. Put into words only when
/// someone asks (`explain`), not on every request.
#[derive(Debug, Clone, Copy)]
pub struct Miss<'w> {
    condition: &'w Condition,
    /// From `unless`: the condition held.
    excluded: bool,
}

impl Miss<'_> {
    /// Whether the condition is about the visitor (so that another visitor
    /// could have matched: the response is then private).
    pub fn about_the_visitor(self) -> bool {
        self.condition.about_the_visitor()
    }

    /// Why, in words, for the request it missed.
    pub fn describe(self, ctx: &RequestContext<'_>) -> String {
        if self.excluded {
            format!("unless: its `{}` holds", self.condition.key())
        } else {
            self.condition.describe(ctx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Country, SitePath};
    use http::{HeaderMap, Method};

    fn when(written: &str) -> When {
        let raw: RawWhen = toml::from_str(written).unwrap();
        let mut errors = Vec::new();
        let err = |_: Range<usize>, m: String| Diagnostic::whole_file("t.toml".as_ref(), m);
        let when = When::compile(raw, &err, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        when
    }

    #[test]
    fn the_url_is_checked_before_the_visitor() {
        let headers = HeaderMap::new();
        let ctx = RequestContext {
            method: &Method::GET,
            path: SitePath::parse("/about").unwrap(),
            raw_query: None,
            query: Vec::new(),
            host: "a.test",
            scheme: "http",
            client: [127, 0, 0, 1].into(),
            country: Country::parse("FR").unwrap(),
            continent: crate::context::Continent::parse("EU"),
            eu: true,
            region: None,
            languages: vec!["fr".into()],
            cookies: Vec::new(),
            headers: &headers,
            visitor: Default::default(),
            now: "2026-12-24T18:00:00+01:00".parse().unwrap(),
        };
        // Another visitor on this URL would not have matched either.
        let both = when("country = \"IT\"\npath = \"/it/*\"");
        assert!(both.about_the_visitor());
        let miss = both.check(&ctx).unwrap_err();
        assert!(!miss.about_the_visitor());
        assert_eq!(miss.describe(&ctx), "path /about does not match");

        let country = when("country = \"IT\"");
        let miss = country.check(&ctx).unwrap_err();
        assert!(miss.about_the_visitor());
        assert_eq!(miss.describe(&ctx), "country is FR");
        let not = when("not_country = [\"DE\", \"FR\"]");
        assert_eq!(not.check(&ctx).unwrap_err().describe(&ctx), "country is FR");
        assert!(when("not_country = \"DE\"\nlanguage = \"FR\"")
            .check(&ctx)
            .is_ok());

        // `unless` misses on the first condition that holds.
        let unless = when("path = \"/about\"\ncountry = [\"DE\", \"FR\"]");
        let excluded = unless.check_none(&ctx).unwrap_err();
        assert_eq!(excluded.describe(&ctx), "unless: its `path` holds");
        assert!(!excluded.about_the_visitor());
        assert!(when("country = \"DE\"").check_none(&ctx).is_ok());

        // `percent`: over 10,000 visitors the share is the setting's, and
        // raising it keeps everyone who was in.
        let (ten, fifty) = (when("percent = 10"), when("percent = 50.0"));
        let mut rng = fastrand::Rng::with_seed(14);
        let (mut in_ten, mut in_fifty) = (0, 0);
        for _ in 0..10_000 {
            let id = format!("{:032x}", rng.u128(..));
            let ctx = RequestContext {
                visitor: crate::context::Visitor::from_cookie(Some(&id)),
                path: ctx.path.clone(),
                query: Vec::new(),
                languages: Vec::new(),
                cookies: Vec::new(),
                ..ctx
            };
            let (a, b) = (ten.check(&ctx).is_ok(), fifty.check(&ctx).is_ok());
            assert!(!a || b, "in at 10% but out at 50%");
            in_ten += usize::from(a);
            in_fifty += usize::from(b);
        }
        assert!((850..=1150).contains(&in_ten), "{in_ten} of 10,000 at 10%");
        assert!(
            (4850..=5150).contains(&in_fifty),
            "{in_fifty} of 10,000 at 50%"
        );

        // Empty lists ask nothing.
        let empty = when("path = []\ncountry = []\nlanguage = []");
        assert!(empty.check(&ctx).is_ok() && !empty.about_the_visitor());
        assert!(empty.path.is_empty());
        assert!(when("path = \"/about\"").path.is_match("/about"));
    }
}
