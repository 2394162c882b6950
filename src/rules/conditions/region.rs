//! `region`: the visitor's region is one of these ISO 3166-2 codes (`US-NJ`,
//! `GB-SCT`), from a City database's subdivisions or a trusted proxy's
//! `CF-Region-Code` beside its `CF-IPCountry`.

use toml::Spanned;

use super::kind::{each, ConditionKind, Errors, OneOrMany};
use crate::context::{Region as Code, RequestContext};

#[derive(Debug)]
pub struct Region(Vec<Code>);

impl ConditionKind for Region {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Region>) {
        let codes = each(raw, errors, Code::parse_written);
        if !codes.is_empty() {
            out.push(Region(codes));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.region.is_some_and(|r| self.0.contains(&r))
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        match ctx.region {
            Some(r) => format!("region is {r}"),
            None => "region is unknown".into(),
        }
    }
}
