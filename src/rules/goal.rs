//! `goal`: a matching request from a visitor in an experiment counts one
//! conversion for that visitor's variant, once per visitor (a cookie
//! remembers it).

use std::sync::Arc;

use http::HeaderValue;

use super::decision::{Applied, Decision, Request};
use super::variant::{Assignment, COOKIE_PREFIX};

#[derive(Debug)]
pub struct Goal {
    pub experiment: Arc<str>,
    /// The experiment's variant names, to ignore forged cookies.
    pub variants: Vec<Arc<str>>,
}

impl Goal {
    pub fn apply(&self, request: &Request<'_>, decision: &mut Decision) -> Applied {
        let ctx = request.ctx;
        let cookie = format!("{COOKIE_PREFIX}{}", self.experiment);
        let Some(variant) = ctx
            .cookie(&cookie)
            .filter(|v| self.variants.iter().any(|n| &**n == *v))
        else {
            return Applied::Skipped(format!(
                "the visitor is not in experiment `{}`",
                self.experiment
            ));
        };
        let converted = format!("outpost_conv_{}", self.experiment);
        if ctx.cookie(&converted).is_some() {
            return Applied::Skipped("this visitor already converted".into());
        }
        if let Ok(c) = HeaderValue::try_from(format!(
            "{converted}=1; Max-Age=2592000; Path=/; SameSite=Lax"
        )) {
            decision.cookies.push(c);
        }
        decision.private = true;
        decision.conversions.push(Assignment {
            experiment: self.experiment.clone(),
            variant: variant.into(),
            drawn: false,
        });
        Applied::Fired
    }
}
