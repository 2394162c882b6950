//! `before`: the request comes before this instant (RFC 3339, with its
//! offset), so a rule stops on time with no reload. With `after`, it must
//! be the later of the two.

use jiff::Timestamp;
use toml::Spanned;

use super::after::instant;
use super::kind::{ConditionKind, Errors};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Before(pub Timestamp);

impl ConditionKind for Before {
    type Raw = Spanned<String>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Before>) {
        out.extend(instant(&raw, errors).map(Before));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.now < self.0
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("it is {}, not before {}", ctx.now, self.0)
    }
}
