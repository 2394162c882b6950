//! `query`: per name, the query string has that parameter with one of
//! these values (`"*"`: any).

use std::collections::BTreeMap;

use super::kind::{by_name, ConditionKind, Errors, Expected, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Query {
    name: String,
    expected: Vec<Expected>,
}

impl ConditionKind for Query {
    type Raw = BTreeMap<String, OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, _errors: &mut Errors<'_>, out: &mut Vec<Query>) {
        out.extend(by_name(raw).map(|(name, expected)| Query { name, expected }));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.query_values(&self.name)
            .any(|v| self.expected.iter().any(|e| e.accepts(v)))
    }

    fn describe(&self, _ctx: &RequestContext<'_>) -> String {
        format!("query `{}` does not match", self.name)
    }
}
