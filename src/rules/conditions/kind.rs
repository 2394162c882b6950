//! What every condition is, whichever it is: the trait each condition's
//! file implements, and the pieces several of them share.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

use crate::config::Diagnostic;
use crate::context::RequestContext;

/// One kind of condition of a `when`, end to end.
pub trait ConditionKind: Sized {
    /// Its value as written under `when`.
    type Raw: DeserializeOwned;
    /// Whether it reads the visitor, not just the URL: another visitor could
    /// then have been answered otherwise, so the response is private.
    const ABOUT_THE_VISITOR: bool;

    /// Compiles what was written into `out`: none when it asks nothing (an
    /// empty list), one per name for a table of names.
    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Self>);

    /// Whether the request meets it; runs per request, so it allocates
    /// nothing.
    fn holds(&self, ctx: &RequestContext<'_>) -> bool;

    /// Why it failed, for the request it failed on (for `explain`).
    fn describe(&self, ctx: &RequestContext<'_>) -> String;
}

/// Where compiling a `when` puts its problems.
pub struct Errors<'a> {
    /// Turns a span into a diagnostic.
    pub err: &'a dyn Fn(Range<usize>, String) -> Diagnostic,
    pub list: &'a mut Vec<Diagnostic>,
}

impl Errors<'_> {
    pub fn at(&mut self, span: Range<usize>, message: String) {
        self.list.push((self.err)(span, message));
    }
}

/// One value or a list of them (a list means any of).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Each value of a list, parsed by `parse`; a value it refuses is an error
/// at the list, with `parse`'s words.
pub fn each<T>(
    raw: Spanned<OneOrMany<String>>,
    errors: &mut Errors<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let span = raw.span();
    let values = raw.into_inner().into_vec();
    values
        .iter()
        .filter_map(|v| parse(v).map_err(|e| errors.at(span.clone(), e)).ok())
        .collect()
}

/// A value condition: `"*"` means present with any value.
#[derive(Debug, Clone)]
pub enum Expected {
    Any,
    Exactly(String),
}

impl Expected {
    pub fn new(value: String) -> Expected {
        if value == "*" {
            Expected::Any
        } else {
            Expected::Exactly(value)
        }
    }

    pub fn accepts(&self, value: &str) -> bool {
        match self {
            Expected::Any => true,
            Expected::Exactly(v) => v == value,
        }
    }
}

/// A value condition per name (`query`, `cookie`): one condition each.
pub fn by_name(
    raw: std::collections::BTreeMap<String, OneOrMany<String>>,
) -> impl Iterator<Item = (String, Vec<Expected>)> {
    raw.into_iter()
        .map(|(k, v)| (k, v.into_vec().into_iter().map(Expected::new).collect()))
}
