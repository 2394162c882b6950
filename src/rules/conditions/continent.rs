//! `continent`: the visitor's continent is one of these (`AF`, `AN`, `AS`,
//! `EU`, `NA`, `OC`, `SA`), from the geo database or, for a country from a
//! trusted header, the built-in table.

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::{Continent as Code, RequestContext, CONTINENTS};

#[derive(Debug)]
pub struct Continent(Vec<Code>);

/// A code as written in a rule; the error names the codes, or the one a
/// name or typo meant.
fn written(code: &str) -> Result<Code, String> {
    if let Some(c) = Code::parse(code) {
        return Ok(c);
    }
    let by_name = CONTINENTS
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(code))
        .map(|(c, _)| *c);
    let codes: Vec<&str> = CONTINENTS.iter().map(|(c, _)| *c).collect();
    let hint = by_name
        .or_else(|| crate::config::closest(&code.to_ascii_uppercase(), &codes))
        .map(|c| format!(", did you mean {c}?"))
        .unwrap_or_default();
    let all: Vec<String> = CONTINENTS.iter().map(|(c, n)| format!("{c} {n}")).collect();
    Err(format!(
        "`{code}` is not a continent code{hint} ({})",
        all.join(", ")
    ))
}

impl ConditionKind for Continent {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Continent>) {
        let span = raw.span();
        let codes: Vec<Code> = raw
            .into_inner()
            .into_vec()
            .into_iter()
            .filter_map(|c| written(&c).map_err(|e| errors.at(span.clone(), e)).ok())
            .collect();
        if !codes.is_empty() {
            out.push(Continent(codes));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.continent.is_some_and(|c| self.0.contains(&c))
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        match ctx.continent {
            Some(c) => format!("continent is {}", c.as_str()),
            None => "continent is unknown".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_codes() {
        assert_eq!(written("OC").unwrap().as_str(), "OC");
        assert!(written("Europe").unwrap_err().contains("did you mean EU?"));
        assert!(written("EUR").unwrap_err().contains("did you mean EU?"));
        assert!(written("XY")
            .unwrap_err()
            .contains("is not a continent code"));
    }
}
