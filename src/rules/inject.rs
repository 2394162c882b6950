//! `inject`: a template or literal HTML at a selector.

use std::sync::Arc;

use lol_html::Selector;

use super::decision::{Applied, Decision, Render};
use crate::transform::{Edit, Op, Place, Snippet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Prepend,
    Append,
    Before,
    After,
    Replace,
}

impl Position {
    pub const NAMES: [&'static str; 5] = ["prepend", "append", "before", "after", "replace"];

    pub fn parse(text: &str) -> Option<Position> {
        Some(match text {
            "prepend" => Position::Prepend,
            "append" => Position::Append,
            "before" => Position::Before,
            "after" => Position::After,
            "replace" => Position::Replace,
            _ => return None,
        })
    }

    pub fn op(self, html: Snippet) -> Op {
        match self {
            Position::Prepend => Op::Prepend(html),
            Position::Append => Op::Append(html),
            Position::Before => Op::Before(html),
            Position::After => Op::After(html),
            Position::Replace => Op::Replace(html),
        }
    }
}

#[derive(Debug)]
pub enum Content {
    Template(String),
    Html(Snippet),
}

#[derive(Debug)]
pub struct Inject {
    pub selector: Arc<Selector>,
    pub position: Position,
    pub content: Content,
}

impl Inject {
    /// Injected HTML goes into HTML pages only.
    pub fn changes_any_file(&self) -> bool {
        false
    }

    pub fn apply(&self, index: usize, render: &mut Render<'_>, decision: &mut Decision) -> Applied {
        let html = match &self.content {
            Content::Html(h) => h.clone(),
            Content::Template(name) => match render.render(name, None) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(template = name, error = %e, "template failed; nothing injected");
                    return Applied::Skipped(format!("template {name} failed: {e}"));
                }
            },
        };
        decision.edits.push(Edit {
            slot: (index, 0),
            place: Place::Selector(self.selector.clone()),
            op: self.position.op(html),
        });
        Applied::Fired
    }
}
