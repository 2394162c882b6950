//! `cookie`: per name, the visitor sent that cookie with one of these
//! values (`"*"`: any).

use std::collections::BTreeMap;

use super::kind::{by_name, ConditionKind, Errors, Expected, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Cookie {
    name: String,
    expected: Vec<Expected>,
}

impl ConditionKind for Cookie {
    type Raw = BTreeMap<String, OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, _errors: &mut Errors<'_>, out: &mut Vec<Cookie>) {
        out.extend(by_name(raw).map(|(name, expected)| Cookie { name, expected }));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.cookie(&self.name)
            .is_some_and(|v| self.expected.iter().any(|e| e.accepts(v)))
    }

    fn describe(&self, _ctx: &RequestContext<'_>) -> String {
        format!("cookie `{}` does not match", self.name)
    }
}
