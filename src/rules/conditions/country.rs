//! `country`: the visitor's country is one of these; `not_country`, the
//! shorthand for its opposite: none of these.

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::{Country as VisitorCountry, RequestContext};

#[derive(Debug)]
pub struct Country(Vec<VisitorCountry>);

#[derive(Debug)]
pub struct NotCountry(Vec<VisitorCountry>);

/// The countries written, each a valid code.
fn countries(raw: Spanned<OneOrMany<String>>, errors: &mut Errors<'_>) -> Vec<VisitorCountry> {
    let span = raw.span();
    raw.into_inner()
        .into_vec()
        .into_iter()
        .filter_map(|c| {
            VisitorCountry::parse_written(&c)
                .map_err(|e| errors.at(span.clone(), e))
                .ok()
        })
        .collect()
}

fn describe(ctx: &RequestContext<'_>) -> String {
    format!("country is {}", ctx.country)
}

impl ConditionKind for Country {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Country>) {
        let list = countries(raw, errors);
        if !list.is_empty() {
            out.push(Country(list));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.contains(&ctx.country)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        describe(ctx)
    }
}

impl ConditionKind for NotCountry {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<NotCountry>) {
        let list = countries(raw, errors);
        if !list.is_empty() {
            out.push(NotCountry(list));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        !self.0.contains(&ctx.country)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        describe(ctx)
    }
}
