//! `method`: the request's HTTP method is one of these.

use http::Method as HttpMethod;
use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Method(Vec<HttpMethod>);

impl ConditionKind for Method {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Method>) {
        let span = raw.span();
        let mut methods = Vec::new();
        for m in raw.into_inner().into_vec() {
            match HttpMethod::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => errors.at(span.clone(), format!("`{m}` is not an HTTP method")),
            }
        }
        if !methods.is_empty() {
            out.push(Method(methods));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.contains(ctx.method)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("method is {}", ctx.method)
    }
}
