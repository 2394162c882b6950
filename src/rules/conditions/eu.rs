//! `eu`: whether the visitor is in a member state of the European Union,
//! by the geo database's flag, else the built-in list of the 27.

use toml::Spanned;

use super::kind::{ConditionKind, Errors};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Eu(bool);

impl ConditionKind for Eu {
    type Raw = Spanned<bool>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, _errors: &mut Errors<'_>, out: &mut Vec<Eu>) {
        out.push(Eu(raw.into_inner()));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.eu == self.0
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        let inside = if ctx.eu { "in" } else { "outside" };
        format!("country {} is {inside} the EU", ctx.country)
    }
}
