//! `path`: the request's path matches one of these globs.

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::config::{path_glob, PathGlobs};
use crate::context::RequestContext;

#[derive(Debug)]
pub struct Path(pub PathGlobs);

impl ConditionKind for Path {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Path>) {
        let span = raw.span();
        let mut globs = Vec::new();
        for p in raw.into_inner().into_vec() {
            match path_glob(&p) {
                Ok(g) if p.starts_with('/') || p.starts_with('*') => globs.push(g),
                Ok(_) => errors.at(span.clone(), format!("path glob `{p}` must start with `/`")),
                Err(e) => errors.at(span.clone(), format!("bad path glob `{p}`: {}", e.kind())),
            }
        }
        match PathGlobs::new(globs) {
            Ok(set) if set.is_empty() => {}
            Ok(set) => out.push(Path(set)),
            Err(e) => errors.at(span, format!("bad path glob: {}", e.kind())),
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.0.is_match(&ctx.path.path)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("path {} does not match", ctx.path.path)
    }
}
