//! `percent`: the visitor is in this share of visitors, by the id in their
//! `outpost_id` cookie (see [`Visitor`](crate::context::Visitor)). The same
//! visitors are in at every percentage up to theirs, so a rollout that
//! grows keeps everyone it had.

use serde::Deserialize;
use toml::Spanned;

use super::kind::{ConditionKind, Errors};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Percent {
    /// In ten thousandths: a visitor whose share is below it is in.
    below: u32,
}

/// A whole or decimal number, as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Whole(i64),
    Decimal(f64),
}

impl ConditionKind for Percent {
    type Raw = Spanned<Number>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Percent>) {
        let value = match *raw.get_ref() {
            Number::Whole(n) => n as f64,
            Number::Decimal(x) => x,
        };
        if !(0.0..=100.0).contains(&value) {
            errors.at(
                raw.span(),
                format!("percent {value} is not between 0 and 100"),
            );
            return;
        }
        out.push(Percent {
            below: (value * 100.0).round() as u32,
        });
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.visitor.share() < self.below
    }

    fn describe(&self, _ctx: &RequestContext<'_>) -> String {
        let percent = f64::from(self.below) / 100.0;
        format!("the visitor is not in the first {percent}% (`outpost_id`)")
    }
}
