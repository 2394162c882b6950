//! `header`: per name, a request header of that name matches one of these
//! globs (case-insensitive).

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use http::HeaderName;
use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Header {
    name: HeaderName,
    globs: Vec<GlobMatcher>,
}

impl ConditionKind for Header {
    type Raw = BTreeMap<Spanned<String>, Spanned<OneOrMany<String>>>;
    const ABOUT_THE_VISITOR: bool = true;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Header>) {
        for (name, globs) in raw {
            let Ok(header) = HeaderName::try_from(name.get_ref().as_str()) else {
                errors.at(
                    name.span(),
                    format!("`{}` is not a header name", name.get_ref()),
                );
                continue;
            };
            let span = globs.span();
            let mut compiled = Vec::new();
            for g in globs.into_inner().into_vec() {
                match GlobBuilder::new(&g).case_insensitive(true).build() {
                    Ok(glob) => compiled.push(glob.compile_matcher()),
                    Err(e) => errors.at(span.clone(), format!("bad glob `{g}`: {}", e.kind())),
                }
            }
            out.push(Header {
                name: header,
                globs: compiled,
            });
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        ctx.headers.get_all(&self.name).iter().any(|v| {
            self.globs
                .iter()
                .any(|g| g.is_match(String::from_utf8_lossy(v.as_bytes()).as_ref()))
        })
    }

    fn describe(&self, _ctx: &RequestContext<'_>) -> String {
        format!("header `{}` does not match", self.name)
    }
}
