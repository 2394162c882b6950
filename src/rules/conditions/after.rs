//! `after`: the request comes at or after this instant, written in RFC
//! 3339 with its offset (`2026-12-24T18:00:00+01:00`). Checked against the
//! clock on every request, so a rule starts on time with no reload.

use jiff::Timestamp;
use toml::Spanned;

use super::kind::{ConditionKind, Errors};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct After(pub Timestamp);

/// An instant as written, or why it is not one.
pub fn instant(raw: &Spanned<String>, errors: &mut Errors<'_>) -> Option<Timestamp> {
    raw.get_ref()
        .parse()
        .map_err(|e: jiff::Error| {
            errors.at(
                raw.span(),
                format!(
                    "`{}` is not a time like 2026-12-24T18:00:00+01:00 (RFC 3339, with its offset or Z): {e}",
                    raw.get_ref()
                ),
            )
        })
        .ok()
}

impl ConditionKind for After {
    type Raw = Spanned<String>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<After>) {
        out.extend(instant(&raw, errors).map(After));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.now >= self.0
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("it is {}, before {}", ctx.now, self.0)
    }
}
