//! `inject`: a template or literal HTML at a selector.

use std::sync::Arc;

use lol_html::Selector;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision};
use super::kind::{ActionKind, Compiling, Firing, TemplateExtra};
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

#[derive(Debug, Deserialize)]
pub struct RawInject {
    template: Option<Spanned<String>>,
    html: Option<Spanned<String>>,
    selector: Option<Spanned<String>>,
    position: Option<Spanned<String>>,
}

impl ActionKind for Inject {
    const NAME: &'static str = "inject";
    type Raw = RawInject;

    fn compile(raw: RawInject, cx: &mut Compiling<'_>) -> Option<Inject> {
        let content = match (&raw.template, &raw.html) {
            (Some(_), None) => Content::Template(cx.template(&raw.template)?),
            (None, Some(h)) => Content::Html(h.get_ref().as_str().into()),
            _ => {
                cx.missing::<Self>("exactly one of `template` and `html`");
                return None;
            }
        };
        let Some(selector) = cx.selector(&raw.selector) else {
            if raw.selector.is_none() {
                cx.missing::<Self>("a `selector`");
            }
            return None;
        };
        let position = match &raw.position {
            None => Position::Append,
            Some(p) => match Position::parse(p.get_ref()) {
                Some(pos) => pos,
                None => {
                    let names = Position::NAMES.join(", ");
                    cx.error(
                        p.span(),
                        format!("position `{}` is not one of {names}", p.get_ref()),
                    );
                    return None;
                }
            },
        };
        Some(Inject {
            selector,
            position,
            content,
        })
    }

    /// Injected HTML goes into HTML pages only.
    fn changes_any_file(&self) -> bool {
        false
    }

    fn template(&self) -> Option<(&str, TemplateExtra)> {
        match &self.content {
            Content::Template(name) => Some((name, TemplateExtra::None)),
            Content::Html(_) => None,
        }
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let params = firing.captures();
        let Firing { index, render, .. } = firing;
        let html = match &self.content {
            Content::Html(h) => h.clone(),
            Content::Template(name) => match render.render(name, &params, None) {
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
