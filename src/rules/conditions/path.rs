//! `path`: the request's path matches one of these patterns: globs, with
//! `:name` for a captured segment and a final `/**` captured as `splat`
//! (see [`Route`]).

use toml::Spanned;

use super::kind::{ConditionKind, Errors, OneOrMany};
use crate::config::{path_glob, PathGlobs};
use crate::context::RequestContext;
use crate::rules::route::{Captures, Route};

#[derive(Debug)]
pub struct Path {
    pub globs: PathGlobs,
    /// Each pattern's captures, in the order written.
    pub routes: Vec<Route>,
}

impl Path {
    /// The captures of the first pattern `path` matches.
    pub fn captures(&self, path: &str) -> Option<Captures> {
        self.routes.iter().find_map(|r| r.captures(path))
    }

    /// The names every pattern captures: what a `to` may use whichever
    /// pattern matched.
    pub fn capture_names(&self) -> Vec<&str> {
        let mut routes = self.routes.iter();
        let Some(first) = routes.next() else {
            return Vec::new();
        };
        let mut names: Vec<&str> = first.names().collect();
        for route in routes {
            names.retain(|n| route.names().any(|m| m == *n));
        }
        names
    }
}

impl ConditionKind for Path {
    type Raw = Spanned<OneOrMany<String>>;
    const ABOUT_THE_VISITOR: bool = false;

    fn compile(raw: Self::Raw, errors: &mut Errors<'_>, out: &mut Vec<Path>) {
        let span = raw.span();
        let mut globs = Vec::new();
        let mut routes = Vec::new();
        for p in raw.into_inner().into_vec() {
            let glob = match path_glob(&Route::glob(&p)) {
                Ok(g) if p.starts_with('/') || p.starts_with('*') => g,
                Ok(_) => {
                    errors.at(span.clone(), format!("path glob `{p}` must start with `/`"));
                    continue;
                }
                Err(e) => {
                    errors.at(span.clone(), format!("bad path glob `{p}`: {}", e.kind()));
                    continue;
                }
            };
            match Route::parse(&p) {
                Ok(route) => {
                    globs.push(glob);
                    routes.push(route);
                }
                Err(e) => errors.at(span.clone(), format!("bad path pattern `{p}`: {e}")),
            }
        }
        match PathGlobs::new(globs) {
            Ok(set) if set.is_empty() => {}
            Ok(globs) => out.push(Path { globs, routes }),
            Err(e) => errors.at(span, format!("bad path glob: {}", e.kind())),
        }
    }

    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        self.globs.is_match(&ctx.path.path)
    }

    fn describe(&self, ctx: &RequestContext<'_>) -> String {
        format!("path {} does not match", ctx.path.path)
    }
}
