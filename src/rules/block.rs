//! `block` (terminal): answer with a status (451 by default) and optionally
//! one of the site's pages.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision, Outcome};
use super::kind::{ActionKind, Compiling, Firing};
use crate::context::SitePath;

#[derive(Debug)]
pub struct Block {
    pub status: StatusCode,
    pub page: Option<Arc<SitePath>>,
}

#[derive(Debug, Deserialize)]
pub struct RawBlock {
    pub(super) status: Option<Spanned<u16>>,
    pub(super) page: Option<Spanned<String>>,
}

impl ActionKind for Block {
    const TERMINAL: bool = true;
    const NAME: &'static str = "block";
    type Raw = RawBlock;

    fn compile(raw: RawBlock, cx: &mut Compiling<'_>) -> Option<Block> {
        Some(Block {
            status: cx.status(&raw.status, &[], 451),
            page: raw.page.as_ref().and_then(|p| cx.site_path("page", p)),
        })
    }

    /// A block answers for whatever file the path names.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, _: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        decision.outcome = Outcome::Block {
            status: self.status,
            page: self.page.clone(),
        };
        Applied::Fired
    }
}
