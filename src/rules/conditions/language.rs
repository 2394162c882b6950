//! `language`: one of the visitor's languages (Accept-Language, primary
//! tags) is one of these.

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Language(Vec<String>);

impl ConditionKind for Language {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Language>) {
        let span = raw.span();
        let mut languages = Vec::new();
        for l in raw.into_inner().into_vec() {
            if (1..=8).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()) {
                languages.push(l.to_ascii_lowercase());
            } else {
                errors.at(
                    span.clone(),
                    format!("`{l}` is not a primary language tag like it"),
                );
            }
        }
        if !languages.is_empty() {
            out.push(Language(languages));
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.languages.iter().any(|l| self.0.contains(l))
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("languages are [{}]", ctx.languages.join(", "))
    }
}
