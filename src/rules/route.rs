//! Path patterns with captures: `/team/:slug` names one segment, a final
//! `/**` the rest (`splat`). A pattern is matched as a glob (with `:slug`
//! standing for `*`), so `when.path` keeps one fast matcher for every rule;
//! the route only takes the captures out of a path that matched, when the
//! rule fires and its `to` or templates ask for them.

use std::sync::Arc;

use globset::GlobMatcher;

use crate::config::path_glob;

/// The name the rest of the path is captured under.
pub const SPLAT: &str = "splat";

/// One segment of a pattern.
#[derive(Debug, Clone)]
pub enum Segment {
    Literal(String),
    /// `:name`: any one non-empty segment.
    Param(Arc<str>),
    /// A segment with glob characters (`*.html`), matched but not captured.
    Glob(GlobMatcher),
}

/// A path pattern split into segments, for captures.
#[derive(Debug, Clone)]
pub struct Route {
    segments: Vec<Segment>,
    /// Ends in `/**`: the rest of the path is captured as `splat`.
    splat: bool,
}

/// What a matched path captured, in the order the pattern names them.
pub type Captures = Vec<(Arc<str>, String)>;

impl Route {
    /// Splits a pattern; the glob it stands for is [`Route::glob`]. Errors
    /// say what is wrong with a capture.
    pub fn parse(pattern: &str) -> Result<Route, String> {
        let (body, splat) = match pattern.strip_suffix("/**") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let mut segments = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let captures = body.split('/').any(|s| s.starts_with(':'));
        for segment in body.split('/').skip(1) {
            let segment = match segment.strip_prefix(':') {
                Some(name) => {
                    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        return Err(format!(
                            "`:{name}` is not a capture: a name is letters, digits and `_`, starting with a letter"
                        ));
                    }
                    if name == SPLAT || names.iter().any(|n| &**n == name) {
                        return Err(format!("capture `:{name}` is named twice"));
                    }
                    let name: Arc<str> = name.into();
                    names.push(name.clone());
                    Segment::Param(name)
                }
                None if segment.contains("**") => {
                    if !captures {
                        // A plain glob with `**` inside captures nothing.
                        return Ok(Route {
                            segments: Vec::new(),
                            splat: false,
                        });
                    }
                    return Err("a pattern with captures may have `**` only at its end".into());
                }
                None if segment.contains(['*', '?', '[', '{']) => Segment::Glob(
                    path_glob(segment)
                        .map_err(|e| format!("bad glob `{segment}`: {}", e.kind()))?
                        .compile_matcher(),
                ),
                None => Segment::Literal(segment.to_string()),
            };
            segments.push(segment);
        }
        Ok(Route { segments, splat })
    }

    /// The glob the pattern matches as, `:name` standing for one
    /// non-empty segment.
    pub fn glob(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|s| if s.starts_with(':') { "?*" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether it ends in a splat (`/**`).
    pub fn has_splat(&self) -> bool {
        self.splat
    }

    /// The names it captures, `splat` last.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let params = self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(&**name),
            _ => None,
        });
        params.chain(self.splat.then_some(SPLAT))
    }

    /// The captures of `path` (a site path, starting with `/`), or `None`
    /// when it does not match.
    pub fn captures(&self, path: &str) -> Option<Captures> {
        let mut rest = path.strip_prefix('/')?;
        let mut out = Captures::new();
        for (i, segment) in self.segments.iter().enumerate() {
            let last = i + 1 == self.segments.len() && !self.splat;
            let (this, after) = match rest.split_once('/') {
                Some(_) if last => return None,
                Some((this, after)) => (this, after),
                None if last => (rest, ""),
                None => return None,
            };
            match segment {
                Segment::Literal(l) if l == this => {}
                Segment::Param(name) if !this.is_empty() => out.push((name.clone(), this.into())),
                Segment::Glob(g) if g.is_match(this) => {}
                _ => return None,
            }
            rest = after;
        }
        if self.splat {
            out.push((SPLAT.into(), rest.to_string()));
        } else if self.segments.is_empty() && !rest.is_empty() {
            return None;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        let route = Route::parse(pattern).unwrap();
        route
            .captures(path)
            .map(|c| c.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn segments_and_splats_are_captured() {
        assert_eq!(
            caps("/team/:slug", "/team/juve"),
            pairs(&[("slug", "juve")])
        );
        assert_eq!(caps("/team/:slug", "/team/juve/"), None);
        assert_eq!(caps("/team/:slug", "/team/"), None);
        assert_eq!(caps("/team/:slug", "/teams/juve"), None);
        assert_eq!(
            caps("/docs/:section/**", "/docs/api/v1/intro.html"),
            pairs(&[("section", "api"), ("splat", "v1/intro.html")])
        );
        assert_eq!(
            caps("/docs/:section/**", "/docs/api/"),
            pairs(&[("section", "api"), ("splat", "")])
        );
        assert_eq!(caps("/docs/:section/**", "/docs/api"), None);
        assert_eq!(caps("/blog/**", "/blog/a/b"), pairs(&[("splat", "a/b")]));
        assert_eq!(
            caps("/:lang/*.html", "/it/a.html"),
            pairs(&[("lang", "it")])
        );
        assert_eq!(caps("/:lang/*.html", "/it/a.css"), None);
    }

    #[test]
    fn the_glob_stands_for_the_same_paths() {
        assert_eq!(Route::glob("/team/:slug"), "/team/?*");
        assert_eq!(Route::glob("/docs/:s/**"), "/docs/?*/**");
        assert_eq!(Route::glob("/a:b/c"), "/a:b/c");
    }

    #[test]
    fn bad_captures_are_refused() {
        assert!(Route::parse("/a/:1x").is_err());
        assert!(Route::parse("/a/:").is_err());
        assert!(Route::parse("/:a/:a").is_err());
        assert!(Route::parse("/:splat").is_err());
        assert!(Route::parse("/:a/**/b").is_err());
        assert!(Route::parse("/a/**/:b").is_err());
        // Without captures, `**` anywhere is a plain glob's business.
        assert_eq!(Route::parse("/**/b").unwrap().names().count(), 0);
    }
}
