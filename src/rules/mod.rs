//! Rules: loaded from rules/*.toml in file-name order, checked and compiled
//! once (globs, selectors, templates), then evaluated per request into a
//! [`Decision`].
//!
//! Terminal actions (`redirect`, `block`, and a hidden `preview`) end
//! evaluation; the others accumulate in file order.

mod block;
mod condition;
mod decision;
pub mod fragment;
mod goal;
mod headers;
mod inject;
mod load;
mod offer_local;
pub mod preview;
mod raw;
mod redirect;
pub mod variant;

pub use condition::When;
pub use decision::{evaluate, Decision, Outcome, Render, Request, Trace, Verdict};
pub use load::{load, LoadError};
pub use offer_local::sample_offer;

use std::sync::Arc;

use crate::config::Origin;
use crate::transform::{Templates, OFFER_TEMPLATE};

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub origin: Origin,
    /// `None`: every site.
    pub sites: Option<Vec<String>>,
    pub when: When,
    pub action: Action,
    /// Every CSS selector the rule uses, in the order written.
    pub selectors: Vec<WrittenSelector>,
}

/// What a rule does when it matches.
#[derive(Debug)]
pub enum Action {
    Redirect(redirect::Redirect),
    Block(block::Block),
    OfferLocal(offer_local::OfferLocal),
    Preview(preview::Preview),
    Inject(inject::Inject),
    Headers(headers::Headers),
    Variant(variant::Experiment),
    Goal(goal::Goal),
    Fragment(fragment::Fragment),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Redirect(_) => "redirect",
            Action::Block(_) => "block",
            Action::OfferLocal(_) => "offer-local",
            Action::Preview(_) => "preview",
            Action::Inject(_) => "inject",
            Action::Headers(_) => "headers",
            Action::Variant(_) => "variant",
            Action::Goal(_) => "goal",
            Action::Fragment(_) => "fragment",
        }
    }

    /// The template the action renders, with what it adds to the context.
    pub fn template(&self) -> Option<(&str, TemplateExtra)> {
        match self {
            Action::Inject(inject::Inject {
                content: inject::Content::Template(name),
                ..
            }) => Some((name, TemplateExtra::None)),
            Action::OfferLocal(o) => Some((
                o.template.as_deref().unwrap_or(OFFER_TEMPLATE),
                TemplateExtra::Offer,
            )),
            Action::Fragment(f) => Some((&f.template, TemplateExtra::Data)),
            _ => None,
        }
    }

    /// Whether the action can change a response that is not an HTML page
    /// (an asset, a missing page); the others only edit HTML, so they
    /// neither run on nor make private anything else.
    pub fn changes_any_file(&self) -> bool {
        match self {
            Action::Redirect(a) => a.changes_any_file(),
            Action::Block(a) => a.changes_any_file(),
            Action::OfferLocal(a) => a.changes_any_file(),
            Action::Preview(a) => a.changes_any_file(),
            Action::Inject(a) => a.changes_any_file(),
            Action::Headers(a) => a.changes_any_file(),
            Action::Variant(a) => a.changes_any_file(),
            Action::Goal(a) => a.changes_any_file(),
            Action::Fragment(a) => a.changes_any_file(),
        }
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

/// A loaded generation of rules with their templates.
#[derive(Debug)]
pub struct Rules {
    /// Changes with every successful load; part of rendered-page cache keys.
    pub generation: u64,
    pub rules: Vec<Rule>,
    pub templates: Templates,
}

impl Rules {
    /// No rules at all (before the first load, or with no rules/ folder).
    pub fn empty() -> Rules {
        Rules {
            generation: 0,
            rules: Vec::new(),
            templates: Templates::builtin(),
        }
    }

    /// Whether any rule could apply to `path` on `site`; when none does,
    /// the request takes the static path with no context built.
    pub fn any_for(&self, site: &str, path: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies_to(site) && (r.when.path.is_empty() || r.when.path.is_match(path)))
    }
}

impl Rule {
    pub fn applies_to(&self, site: &str) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == site))
    }
}

/// Shared so that a generation can be kept by in-flight requests after a swap.
pub type SharedRules = Arc<Rules>;
