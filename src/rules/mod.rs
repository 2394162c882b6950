//! Rules: loaded from rules/*.toml in file-name order, checked and compiled
//! once (globs, selectors, templates), then evaluated per request into a
//! [`Decision`].
//!
//! Terminal actions (`redirect`, `block`, and a hidden `preview`) end
//! evaluation; the others accumulate in file order.

mod action;
mod block;
mod conditions;
mod decision;
mod evaluate;
pub mod fragment;
mod goal;
mod headers;
mod inject;
mod kind;
mod load;
mod offer_local;
pub mod preview;
mod raw;
mod redirect;
pub mod variant;

pub use action::Action;
pub use conditions::When;
pub use decision::{Decision, Outcome, Render, Request, Trace, Verdict};
pub use evaluate::evaluate;
pub use kind::{TemplateExtra, WrittenSelector};
pub use load::{load, LoadError};
pub use offer_local::sample_offer;

use std::sync::Arc;

use crate::config::Origin;
use crate::transform::Templates;

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
