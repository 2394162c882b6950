//! `variant`: an A/B test applied on the box, so the page leaves already in
//! its variant. A visitor keeps the variant their cookie names; a cookie
//! naming no variant of the experiment (forged, stale, oversized) is ignored
//! and a new variant drawn by weight. QA may force one with
//! `?outpost_variant=<name>` when the rule allows it.

use std::sync::Arc;

use http::HeaderValue;
use lol_html::Selector;
use serde::Deserialize;
use toml::Spanned;

pub use super::decision::Assignment;
use super::decision::{Applied, Decision};
use super::kind::{ActionKind, Compiling, Firing};
use crate::context::SitePath;
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
    pub serve: Option<Arc<SitePath>>,
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

#[derive(Debug, Deserialize)]
pub struct RawExperiment {
    experiment: Option<Spanned<String>>,
    variants: Option<Spanned<Vec<Spanned<RawVariant>>>>,
    allow_force: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: Spanned<String>,
    weight: Option<Spanned<u32>>,
    serve: Option<Spanned<String>>,
    #[serde(default)]
    transforms: Vec<Spanned<RawTransform>>,
}

/// One change; exactly one of the operations must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    selector: Spanned<String>,
    set_text: Option<String>,
    set_html: Option<String>,
    set_attr: Option<RawAttr>,
    remove: Option<bool>,
    append_html: Option<String>,
    prepend_html: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttr {
    name: String,
    value: String,
}

/// Names that go into cookies: letters, digits, `-` and `_`.
fn cookie_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A 30-day cookie `name=value`, as experiments and goals set them.
pub fn keep_cookie(name: &str, value: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(format!(
        "{name}={value}; Max-Age=2592000; Path=/; SameSite=Lax"
    ))
    .ok()
}

impl ActionKind for Experiment {
    const NAME: &'static str = "variant";
    const READS_VISITOR: bool = true;
    type Raw = RawExperiment;

    fn compile(raw: RawExperiment, cx: &mut Compiling<'_>) -> Option<Experiment> {
        let Some(experiment) = &raw.experiment else {
            cx.missing::<Self>("an `experiment`");
            return None;
        };
        if !cookie_safe(experiment.get_ref()) {
            cx.error(
                experiment.span(),
                "experiment names may use letters, digits, `-` and `_` (up to 64)",
            );
        }
        let Some(raw_variants) = &raw.variants else {
            cx.missing::<Self>("`variants`");
            return None;
        };
        let cookie = format!("{COOKIE_PREFIX}{}", experiment.get_ref());
        let mut variants: Vec<Variant> = Vec::new();
        for v in raw_variants.get_ref() {
            let v = v.get_ref();
            let name = v.name.get_ref();
            if !cookie_safe(name) {
                cx.error(
                    v.name.span(),
                    "variant names may use letters, digits, `-` and `_` (up to 64)",
                );
            }
            if variants.iter().any(|o: &Variant| *o.name == **name) {
                cx.error(v.name.span(), format!("variant `{name}` is listed twice"));
            }
            let transforms = v
                .transforms
                .iter()
                .filter_map(|t| transform(t, cx))
                .collect();
            variants.push(Variant {
                name: name.as_str().into(),
                weight: v.weight.as_ref().map_or(1, |w| *w.get_ref()),
                serve: v.serve.as_ref().and_then(|s| cx.site_path("serve", s)),
                serve_origin: v.serve.as_ref().map(|s| cx.origin(s.span())),
                transforms,
                set_cookie: keep_cookie(&cookie, name),
            });
        }
        if variants.is_empty() {
            cx.error(
                raw_variants.span(),
                "an experiment needs at least one variant",
            );
        } else if variants.iter().map(|v| v.weight).sum::<u32>() == 0 {
            cx.error(raw_variants.span(), "the variants' weights add up to 0");
        }
        Some(Experiment {
            cookie,
            experiment: experiment.get_ref().as_str().into(),
            variants,
            allow_force: raw.allow_force.as_ref().is_some_and(|f| *f.get_ref()),
        })
    }

    /// Transforms edit HTML pages only; a variant that serves another file
    /// replaces any file.
    fn changes_any_file(&self) -> bool {
        self.variants.iter().any(|v| v.serve.is_some())
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let Firing { index, request, .. } = firing;
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
}

impl Experiment {
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

/// One transform of a variant, which must make exactly one change.
fn transform(raw: &Spanned<RawTransform>, cx: &mut Compiling<'_>) -> Option<Transform> {
    let span = raw.span();
    let t = raw.get_ref();
    let selector = cx.selector_at(&t.selector)?;
    let mut ops = Vec::new();
    if let Some(x) = &t.set_text {
        ops.push(Op::SetText(x.as_str().into()));
    }
    if let Some(x) = &t.set_html {
        ops.push(Op::SetHtml(x.as_str().into()));
    }
    if let Some(a) = &t.set_attr {
        ops.push(Op::SetAttr(a.name.as_str().into(), a.value.as_str().into()));
    }
    if t.remove == Some(true) {
        ops.push(Op::Remove);
    }
    if let Some(x) = &t.append_html {
        ops.push(Op::Append(x.as_str().into()));
    }
    if let Some(x) = &t.prepend_html {
        ops.push(Op::Prepend(x.as_str().into()));
    }
    if ops.len() != 1 {
        cx.error(span, "a transform needs exactly one of set_text, set_html, set_attr, remove, append_html, prepend_html");
        return None;
    }
    Some(Transform {
        selector,
        op: ops.remove(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

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
        let path = |p: &str| Arc::new(SitePath::parse(p).unwrap());
        let a = |edits: Range<usize>, serve: Option<&str>| Assignment {
            edits,
            serve: serve.map(path),
            ..Assignment::of("e".into(), "v".into())
        };
        let alt = path("/alt.html");
        let other = path("/other.html");
        // Every transform of the variant must match; other edits do not matter.
        assert!(a(1..3, None).applied_in(None, &[false, true, true, false]));
        assert!(!a(1..3, None).applied_in(None, &[true, true, false, true]));
        // A page that was not rewritten (not HTML, too large) shows no transform.
        assert!(!a(0..1, None).applied_in(None, &[]));
        // The control is the page as it is.
        assert!(a(0..0, None).applied_in(None, &[]));
        assert!(a(0..0, None).applied_in(None, &[false]));
        // A variant with a file is applied only when that file went out.
        assert!(a(0..0, Some("/alt.html")).applied_in(Some(&alt), &[]));
        assert!(!a(0..0, Some("/alt.html")).applied_in(None, &[]));
        assert!(!a(0..0, Some("/alt.html")).applied_in(Some(&other), &[]));
        assert!(!a(0..1, Some("/alt.html")).applied_in(Some(&alt), &[false]));
    }
}
