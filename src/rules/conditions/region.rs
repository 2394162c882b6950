//! `region`: the visitor's region is one of these ISO 3166-2 codes (`US-NJ`,
//! `GB-SCT`), from a City database's subdivisions or a trusted proxy's
//! `CF-Region-Code` beside its `CF-IPCountry`.

use toml::Spanned;

use super::kind::{each, ConditionKind, Errors, OneOrMany};
use crate::context::region::subdivisions_of;
use crate::context::{Region as Code, RequestContext};

#[derive(Debug)]
pub struct Region(Vec<Code>);

impl ConditionKind for Region {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Region>) {
        let codes = each(raw, errors, |written| {
            let code = Code::parse_written(written)?;
            let country = &code.as_str()[..2];
            let known = subdivisions_of(country);
            if known.iter().any(|k| k == code.as_str()) {
                return Ok(code);
            }
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            let hint = crate::config::closest(code.as_str(), &names)
                .map(|c| format!(", did you mean {c}?"))
                .unwrap_or_default();
            Err(format!(
                "{code} is not an ISO 3166-2 region of {country}{hint}"
            ))
        });
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
