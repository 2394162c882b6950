//! Rules: loaded from rules/*.toml in file-name order, checked and compiled
//! once (globs, selectors, templates), then evaluated per request into a
//! [`Decision`].
//!
//! Terminal actions (`redirect`, `block`, and a hidden `preview`) end
//! evaluation; after a `rewrite` only actions that edit the page apply.
//! The others accumulate in file order.

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
pub mod proxy;
mod raw;
mod redirect;
mod redirects_file;
mod rewrite;
pub mod route;
mod rule;
mod to;
mod upstream;
pub mod variant;

pub use action::Action;
pub use conditions::When;
pub use decision::{Decision, Outcome, Render, Request, Rewritten, Trace, Verdict};
pub use evaluate::evaluate;
pub use kind::{TemplateExtra, WrittenSelector};
pub use load::{load, LoadError};
pub use offer_local::sample_offer;
pub use redirects_file::RedirectsFile;
pub use rule::{Rule, Rules, SharedRules};
