//! `country`: the visitor's country is one of these; `not_country`, the
//! shorthand for its opposite: none of these.

use toml::Spanned;

use super::kind::{each, ConditionKind, Errors, OneOrMany};
use crate::context::{Country as VisitorCountry, RequestContext};

#[derive(Debug)]
pub struct Country(Vec<VisitorCountry>);

/// `country`'s opposite, read and described as `country` is.
#[derive(Debug)]
pub struct NotCountry(Country);

impl ConditionKind for Country {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Country>) {
        let list = each(raw, errors, VisitorCountry::parse_written);
        if !list.is_empty() {
            out.push(Country(list));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.contains(&ctx.country)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("country is {}", ctx.country)
    }
}

impl ConditionKind for NotCountry {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<NotCountry>) {
        let mut country = Vec::new();
        Country::compile(raw, errors, &mut country);
        out.extend(country.into_iter().map(NotCountry));
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        !self.0.holds(ctx)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        self.0.describe(ctx)
    }
}
