//! Rules files as written: serde types only, with spans for later checks.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    pub path: Option<Spanned<OneOrMany<String>>>,
    pub country: Option<Spanned<OneOrMany<String>>>,
    pub not_country: Option<Spanned<OneOrMany<String>>>,
    pub language: Option<Spanned<OneOrMany<String>>>,
    pub query: Option<BTreeMap<String, OneOrMany<String>>>,
    pub cookie: Option<BTreeMap<String, OneOrMany<String>>>,
    pub header: Option<BTreeMap<Spanned<String>, Spanned<OneOrMany<String>>>>,
    pub method: Option<Spanned<OneOrMany<String>>>,
}

/// Every key any action takes; which ones an action allows is checked after
/// parsing, so an unknown key still gets a suggestion from serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    pub sites: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub when: RawWhen,
    pub action: Spanned<String>,
    // redirect
    pub to: Option<Spanned<String>>,
    pub to_site: Option<Spanned<String>>,
    // redirect, block
    pub status: Option<Spanned<u16>>,
    // block
    pub page: Option<Spanned<String>>,
    // offer-local, inject, fragment
    pub template: Option<Spanned<String>>,
    pub selector: Option<Spanned<String>>,
    // offer-local
    pub mode: Option<Spanned<String>>,
    // preview
    pub param: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    // inject
    pub html: Option<Spanned<String>>,
    pub position: Option<Spanned<String>>,
    // headers
    pub set: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub remove: Option<Spanned<Vec<Spanned<String>>>>,
    // variant, goal
    pub experiment: Option<Spanned<String>>,
    // variant
    pub variants: Option<Spanned<Vec<Spanned<RawVariant>>>>,
    pub allow_force: Option<Spanned<bool>>,
    // fragment
    pub source: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub stale_for: Option<Spanned<String>>,
    pub on_error: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
    pub serve: Option<Spanned<String>>,
    #[serde(default)]
    pub transforms: Vec<Spanned<RawTransform>>,
}

/// One change; exactly one of the operations must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    pub selector: Spanned<String>,
    pub set_text: Option<String>,
    pub set_html: Option<String>,
    pub set_attr: Option<RawAttr>,
    pub remove: Option<bool>,
    pub append_html: Option<String>,
    pub prepend_html: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttr {
    pub name: String,
    pub value: String,
}

impl RawRule {
    /// The action-specific keys present, with their spans, for checking
    /// that each belongs to the rule's action.
    pub fn present_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        [
            ("to", span(&self.to)),
            ("to_site", span(&self.to_site)),
            ("status", span(&self.status)),
            ("page", span(&self.page)),
            ("template", span(&self.template)),
            ("selector", span(&self.selector)),
            ("mode", span(&self.mode)),
            ("param", span(&self.param)),
            ("value", span(&self.value)),
            ("secret", span(&self.secret)),
            ("html", span(&self.html)),
            ("position", span(&self.position)),
            ("set", span(&self.set)),
            ("remove", span(&self.remove)),
            ("experiment", span(&self.experiment)),
            ("variants", span(&self.variants)),
            ("allow_force", span(&self.allow_force)),
            ("source", span(&self.source)),
            ("ttl", span(&self.ttl)),
            ("timeout", span(&self.timeout)),
            ("stale_for", span(&self.stale_for)),
            ("on_error", span(&self.on_error)),
        ]
        .into_iter()
        .filter_map(|(key, span)| Some((key, span?)))
        .collect()
    }
}
