//! `goal`: a matching request from a visitor in an experiment counts one
//! conversion for that visitor's variant, once per visitor (a cookie
//! remembers it).

use std::sync::Arc;

use http::HeaderValue;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Assignment, Decision};
use super::kind::{ActionKind, Compiling, Firing};
use super::variant::{keep_cookie, COOKIE_PREFIX};

#[derive(Debug)]
pub struct Goal {
    pub experiment: Arc<str>,
    /// The experiment's variant names, to ignore forged cookies.
    pub variants: Vec<Arc<str>>,
    /// The cookie naming the visitor's variant.
    variant_cookie: String,
    /// The cookie that remembers the conversion, and its Set-Cookie value.
    converted: String,
    set_converted: Option<HeaderValue>,
}

#[derive(Debug, Deserialize)]
pub struct RawGoal {
    experiment: Option<Spanned<String>>,
}

impl Goal {
    /// A goal of `experiment`; its variants are linked once all rules load.
    pub fn new(experiment: &str) -> Goal {
        let converted = format!("outpost_conv_{experiment}");
        Goal {
            experiment: experiment.into(),
            variants: Vec::new(),
            variant_cookie: format!("{COOKIE_PREFIX}{experiment}"),
            set_converted: keep_cookie(&converted, "1"),
            converted,
        }
    }
}

impl ActionKind for Goal {
    const NAME: &'static str = "goal";
    const READS_VISITOR: bool = true;
    type Raw = RawGoal;

    fn compile(raw: RawGoal, cx: &mut Compiling<'_>) -> Option<Goal> {
        let Some(experiment) = &raw.experiment else {
            cx.missing::<Self>("an `experiment`");
            return None;
        };
        Some(Goal::new(experiment.get_ref()))
    }

    /// A conversion's cookie goes on any response (a download can be a goal).
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let Firing { request, .. } = firing;
        let ctx = request.ctx;
        let Some(variant) = ctx
            .cookie(&self.variant_cookie)
            .filter(|v| self.variants.iter().any(|n| &**n == *v))
        else {
            return Applied::Skipped(format!(
                "the visitor is not in experiment `{}`",
                self.experiment
            ));
        };
        if ctx.cookie(&self.converted).is_some() {
            return Applied::Skipped("this visitor already converted".into());
        }
        if let Some(c) = &self.set_converted {
            decision.cookies.push(c.clone());
        }
        decision.private = true;
        decision
            .conversions
            .push(Assignment::of(self.experiment.clone(), variant.into()));
        Applied::Fired
    }
}
