//! `bot`: whether the visitor is a crawler, by its User-Agent (see
//! [`crawler`](crate::context::crawler)): `bot = false` keeps a rule from
//! search engines, social previews and SEO tools.

use toml::Spanned;

use super::kind::{ConditionKind, Errors};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Bot(bool);

impl ConditionKind for Bot {
    type Raw = Spanned<bool>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, _errors: &mut Errors<'_>, out: &mut Vec<Bot>) {
        out.push(Bot(raw.into_inner()));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.is_bot() == self.0
    }

    fn describe(&self, _ctx: &RequestContext<'_>) -> String {
        if self.0 {
            "the visitor is not a crawler".into()
        } else {
            "the visitor is a crawler".into()
        }
    }
}
