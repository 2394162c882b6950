//! What every action is, whichever it is: the trait each action's file
//! implements, and what compiling one can use. The table in `action.rs`
//! lists the actions; nothing else needs to know them.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use http::StatusCode;
use lol_html::Selector;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::conditions::When;
use super::decision::{Applied, Decision, Render, Request};
use super::route::Captures;
use crate::config::{Diagnostic, Origin};
use crate::context::SitePath;
use crate::transform::Templates;

/// One kind of action, end to end.
pub trait ActionKind: Sized {
    /// What a rule writes as `action = "…"`.
    const NAME: &'static str;
    /// Whether it reads the visitor whatever it does, which makes the
    /// response private.
    const READS_VISITOR: bool = false;
    /// Whether it answers the request in place of the page (so that none
    /// applies after a rewrite, which would loop or undo it).
    const TERMINAL: bool = false;
    /// Its keys as written: the struct's fields are the keys it takes, in
    /// the order messages list them.
    type Raw: DeserializeOwned;

    fn compile(raw: Self::Raw, cx: &mut Compiling<'_>) -> Option<Self>;

    /// Runs the action of a rule that matched.
    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied;

    /// Whether the action can change a response that is not an HTML page
    /// (an asset, a missing page); the others only edit HTML, so they
    /// neither run on nor make private anything else.
    fn changes_any_file(&self) -> bool;

    /// The template the action renders, with what it adds to the context.
    fn template(&self) -> Option<(&str, TemplateExtra)> {
        None
    }
}

/// A rule that matched, as its action sees it.
pub struct Firing<'f, 'r> {
    /// The rule's place, which orders its edits among the others'.
    pub index: usize,
    pub rule: &'f Arc<str>,
    /// Its conditions, which hold the captures of its path.
    pub when: &'f When,
    pub request: &'f Request<'r>,
    /// Templates rendered with the request's context, shared by its rules.
    pub render: &'f mut Render<'r>,
}

impl Firing<'_, '_> {
    /// What the rule's `when.path` captured from the request's path.
    pub fn captures(&self) -> Captures {
        self.when.captures(self.request.ctx)
    }
}

/// What a template gets besides `request` and `site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateExtra {
    None,
    /// `offer`, from `offer-local`.
    Offer,
    /// `data`, the fragment source's JSON.
    Data,
}

/// A CSS selector as a rule wrote it, kept for `check` to try on pages.
#[derive(Debug)]
pub struct WrittenSelector {
    pub text: String,
    pub origin: Origin,
}

/// One rule's action being compiled: where it was written, what it may
/// refer to, and the problems found so far.
pub struct Compiling<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    /// The sites rules may name.
    pub sites: &'a [String],
    pub templates: &'a Templates,
    /// The rule's compiled `when`.
    pub when: &'a When,
    /// Where `action = "…"` was written.
    pub action: Range<usize>,
    pub errors: &'a mut Vec<Diagnostic>,
    /// Every selector compiled, in the order written.
    pub selectors: Vec<WrittenSelector>,
}

impl Compiling<'_> {
    /// A problem at `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at(self.file, self.source, span.start, message);
        self.errors.push(d);
    }

    /// The rule lacks something its action needs: said at `action`.
    pub fn missing<A: ActionKind>(&mut self, what: &str) {
        let span = self.action.clone();
        self.error(span, format!("action `{}` needs {what}", A::NAME));
    }

    pub fn origin(&self, span: Range<usize>) -> Origin {
        Origin::new(self.file, self.source, span.start)
    }

    /// A path on the site (`serve`, `page`), decoded and normalized once
    /// here so that serving it is one lookup.
    pub fn site_path(&mut self, key: &str, raw: &Spanned<String>) -> Option<Arc<SitePath>> {
        let path = SitePath::parse(raw.get_ref()).ok();
        if path.is_none() {
            self.error(
                raw.span(),
                format!("`{key}` is a path on the site, starting with `/`"),
            );
        }
        path.map(Arc::new)
    }

    pub fn selector(&mut self, raw: &Option<Spanned<String>>) -> Option<Arc<Selector>> {
        self.selector_at(raw.as_ref()?)
    }

    pub fn selector_at(&mut self, raw: &Spanned<String>) -> Option<Arc<Selector>> {
        self.selectors.push(WrittenSelector {
            text: raw.get_ref().clone(),
            origin: self.origin(raw.span()),
        });
        match raw.get_ref().parse::<Selector>() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                self.error(
                    raw.span(),
                    format!("bad CSS selector `{}`: {e}", raw.get_ref()),
                );
                None
            }
        }
    }

    /// A template's name, which must be under rules/templates/.
    pub fn template(&mut self, raw: &Option<Spanned<String>>) -> Option<String> {
        let raw = raw.as_ref()?;
        if !self.templates.has(raw.get_ref()) {
            self.error(
                raw.span(),
                format!("no template `{}` under rules/templates/", raw.get_ref()),
            );
        }
        Some(raw.get_ref().clone())
    }

    /// A `status`, one of `allowed` (any 4xx or 5xx when empty).
    pub fn status(
        &mut self,
        raw: &Option<Spanned<u16>>,
        allowed: &[u16],
        default: u16,
    ) -> StatusCode {
        let Some(raw) = raw else {
            return StatusCode::from_u16(default).expect("defaults are valid");
        };
        let code = *raw.get_ref();
        let ok = if allowed.is_empty() {
            (400..600).contains(&code)
        } else {
            allowed.contains(&code)
        };
        if !ok {
            let expected = if allowed.is_empty() {
                "a 4xx or 5xx status".to_string()
            } else {
                allowed
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            self.error(
                raw.span(),
                format!("status {code} is not allowed here (expected {expected})"),
            );
        }
        StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND)
    }

    /// A duration like `300ms`, `default` when not written.
    pub fn duration(
        &mut self,
        raw: &Option<Spanned<String>>,
        default: &str,
    ) -> std::time::Duration {
        let text = raw.as_ref().map_or(default, |r| r.get_ref().as_str());
        humantime::parse_duration(text).unwrap_or_else(|e| {
            let span = raw.as_ref().map(|r| r.span()).unwrap_or(0..0);
            self.error(
                span,
                format!("`{text}` is not a duration like 300ms, 10s or 1h: {e}"),
            );
            humantime::parse_duration(default).expect("defaults parse")
        })
    }
}
