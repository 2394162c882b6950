//! A compiled rule, and a loaded generation of them.

use std::sync::Arc;

use super::action::Action;
use super::conditions::{Miss, When};
use super::kind::WrittenSelector;
use crate::config::Origin;
use crate::context::RequestContext;
use crate::transform::Templates;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub origin: Origin,
    /// `None`: every site.
    pub sites: Option<Vec<String>>,
    pub when: When,
    /// Conditions of which none may hold.
    pub unless: When,
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
    /// `Ok` when the rule matches: its `when` holds and nothing of its
    /// `unless` does. The URL's conditions are checked first.
    pub fn check<'r>(&'r self, ctx: &RequestContext<'_>) -> Result<(), Miss<'r>> {
        self.when.check(ctx)?;
        self.unless.check_none(ctx)
    }

    /// Whether whether it matches depends on the visitor, not just the URL.
    pub fn about_the_visitor(&self) -> bool {
        self.when.about_the_visitor() || self.unless.about_the_visitor()
    }

    pub fn applies_to(&self, site: &str) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == site))
    }
}

/// Shared so that a generation can be kept by in-flight requests after a swap.
pub type SharedRules = Arc<Rules>;
