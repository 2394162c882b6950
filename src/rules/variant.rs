//! `variant`: an A/B test applied on the box, so the page leaves already in
//! its variant. A visitor keeps the variant their cookie names; a cookie
//! naming no variant of the experiment (forged, stale, oversized) is ignored
//! and a new variant drawn by weight. QA may force one with
//! `?outpost_variant=<name>` when the rule allows it.

use std::ops::Range;
use std::sync::Arc;

use http::HeaderValue;
use lol_html::Selector;

use super::decision::{Applied, Decision, Request};
use crate::transform::{Edit, Op, Place};

pub const FORCE_PARAM: &str = "outpost_variant";
pub const COOKIE_PREFIX: &str = "outpost_exp_";

/// One change a variant makes to the page.
#[derive(Debug)]
pub struct Transform {
    pub selector: Arc<Selector>,
    pub op: Op,
}

#[derive(Debug)]
pub struct Variant {
    pub name: Arc<str>,
    pub weight: u32,
    /// Serve this file instead of the page.
    pub serve: Option<Arc<str>>,
    /// Where `serve` was written, for `check` to point at.
    pub serve_origin: Option<crate::config::Origin>,
    pub transforms: Vec<Transform>,
    /// Set-Cookie for a visitor newly drawn into this variant.
    pub set_cookie: Option<HeaderValue>,
}

#[derive(Debug)]
pub struct Experiment {
    pub experiment: Arc<str>,
    pub variants: Vec<Variant>,
    pub allow_force: bool,
    /// `outpost_exp_<experiment>`
    pub cookie: String,
}

/// A 30-day cookie `name=value`, as experiments and goals set them.
pub fn keep_cookie(name: &str, value: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(format!(
        "{name}={value}; Max-Age=2592000; Path=/; SameSite=Lax"
    ))
    .ok()
}

/// The variant a response was served in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub experiment: Arc<str>,
    pub variant: Arc<str>,
    /// Newly drawn for a new visitor: counted once, as an exposure or as
    /// not applied. Kept variants (returning visitors) and forced ones (QA)
    /// are not counted again, so exposures and conversions both count
    /// visitors.
    pub drawn: bool,
    /// Where the variant's transforms are in the decision's edits.
    pub edits: Range<usize>,
    /// The file the variant serves instead of the page.
    pub serve: Option<Arc<str>>,
    /// Set once the response is made: the page went out showing the
    /// variant as written (see [`Assignment::applied_in`]).
    pub applied: bool,
    /// The Set-Cookie that keeps a new draw, for the response to take back
    /// when the page did not go out.
    pub keep: Option<HeaderValue>,
}

impl Assignment {
    /// A visitor's variant as a goal sees it: no page of its own.
    pub fn of(experiment: Arc<str>, variant: Arc<str>) -> Assignment {
        Assignment {
            experiment,
            variant,
            drawn: false,
            edits: 0..0,
            serve: None,
            applied: false,
            keep: None,
        }
    }

    /// Whether the page served shows the variant as written: its own file
    /// was served (when it names one) and every one of its transforms
    /// matched an element. `served_file` is the variant file served, if
    /// any; `matched` says per edit of the decision whether it matched
    /// (empty when the page was not rewritten).
    pub fn applied_in(&self, served_file: Option<&str>, matched: &[bool]) -> bool {
        let file = self
            .serve
            .as_deref()
            .is_none_or(|own| served_file == Some(own));
        file && matched
            .get(self.edits.clone())
            .is_some_and(|m| m.iter().all(|&hit| hit))
    }
}

impl Experiment {
    /// Transforms edit HTML pages only; a variant that serves another file
    /// replaces any file.
    pub fn changes_any_file(&self) -> bool {
        self.variants.iter().any(|v| v.serve.is_some())
    }

    pub fn apply(&self, index: usize, request: &Request<'_>, decision: &mut Decision) -> Applied {
        let ctx = request.ctx;
        let forced = self
            .allow_force
            .then(|| ctx.query_values(FORCE_PARAM).find_map(|v| self.variant(v)))
            .flatten();
        let kept = ctx.cookie(&self.cookie).and_then(|v| self.variant(v));
        let (variant, drawn) = match (forced, kept) {
            (Some(v), _) => (v, false),
            (None, Some(v)) => (v, false),
            (None, None) => {
                let v = self.draw(fastrand::u32(..self.total_weight().max(1)));
                if let Some(c) = &v.set_cookie {
                    decision.cookies.push(c.clone());
                }
                (v, true)
            }
        };
        let keep = if drawn {
            variant.set_cookie.clone()
        } else {
            None
        };
        let first = decision.edits.len();
        for (n, t) in variant.transforms.iter().enumerate() {
            decision.edits.push(Edit {
                slot: (index, n),
                place: Place::Selector(t.selector.clone()),
                op: t.op.clone(),
            });
        }
        if let Some(serve) = &variant.serve {
            decision.serve = Some(serve.clone());
        }
        decision.private = true;
        decision.variants.push(Assignment {
            experiment: self.experiment.clone(),
            variant: variant.name.clone(),
            drawn,
            edits: first..decision.edits.len(),
            serve: variant.serve.clone(),
            applied: false,
            keep,
        });
        Applied::Fired
    }

    fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| &*v.name == name)
    }

    fn total_weight(&self) -> u32 {
        self.variants.iter().map(|v| v.weight).sum()
    }

    /// The variant at `point` in `0..total_weight`.
    fn draw(&self, mut point: u32) -> &Variant {
        for v in &self.variants {
            if point < v.weight {
                return v;
            }
            point -= v.weight;
        }
        &self.variants[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(weights: &[u32]) -> Experiment {
        Experiment {
            experiment: "e".into(),
            allow_force: false,
            cookie: "outpost_exp_e".into(),
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Variant {
                    name: format!("v{i}").into(),
                    weight: *w,
                    serve: None,
                    serve_origin: None,
                    set_cookie: None,
                    transforms: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn draws_follow_the_weights() {
        let e = exp(&[1, 3, 0]);
        assert_eq!(&*e.draw(0).name, "v0");
        assert_eq!(&*e.draw(1).name, "v1");
        assert_eq!(&*e.draw(3).name, "v1");
        assert_eq!(&*exp(&[0, 5]).draw(0).name, "v1");
    }

    #[test]
    fn applied_means_as_written() {
        let a = |edits: Range<usize>, serve: Option<&str>| Assignment {
            edits,
            serve: serve.map(Into::into),
            ..Assignment::of("e".into(), "v".into())
        };
        // Every transform of the variant must match; other edits do not matter.
        assert!(a(1..3, None).applied_in(None, &[false, true, true, false]));
        assert!(!a(1..3, None).applied_in(None, &[true, true, false, true]));
        // A page that was not rewritten (not HTML, too large) shows no transform.
        assert!(!a(0..1, None).applied_in(None, &[]));
        // The control is the page as it is.
        assert!(a(0..0, None).applied_in(None, &[]));
        assert!(a(0..0, None).applied_in(None, &[false]));
        // A variant with a file is applied only when that file went out.
        assert!(a(0..0, Some("/alt.html")).applied_in(Some("/alt.html"), &[]));
        assert!(!a(0..0, Some("/alt.html")).applied_in(None, &[]));
        assert!(!a(0..0, Some("/alt.html")).applied_in(Some("/other.html"), &[]));
        assert!(!a(0..1, Some("/alt.html")).applied_in(Some("/alt.html"), &[false]));
    }
}
