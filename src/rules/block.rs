//! `block` (terminal): answer with a status (451 by default) and optionally
//! one of the site's pages.

use http::StatusCode;

use super::decision::{Applied, Decision, Outcome};

#[derive(Debug)]
pub struct Block {
    pub status: StatusCode,
    pub page: Option<String>,
}

impl Block {
    /// A block answers for whatever file the path names.
    pub fn changes_any_file(&self) -> bool {
        true
    }

    pub fn apply(&self, decision: &mut Decision) -> Applied {
        decision.outcome = Outcome::Block {
            status: self.status,
            page: self.page.clone(),
        };
        Applied::Fired
    }
}
