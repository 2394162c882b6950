//! Tera templates from rules/templates/, compiled once per rules load, with
//! autoescaping on for every template whatever its extension.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tera::{Context, Tera};

use crate::config::Diagnostic;
use crate::context::RequestContext;
use crate::store::SiteVersion;

/// The banner `offer-local` shows when a rule names no template.
pub const OFFER_TEMPLATE: &str = "outpost/offer.html";
const OFFER_SOURCE: &str = include_str!("offer.html");

/// Rendered outputs remembered, at most.
const REMEMBERED: usize = 10_000;

pub struct Templates {
    tera: Tera,
    /// Outputs by everything they depend on (see `rules::Render`).
    outputs: quick_cache::sync::Cache<u64, std::sync::Arc<str>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("tera", &self.tera)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Only the built-in templates.
    pub fn builtin() -> Templates {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![""]);
        tera.add_raw_template(OFFER_TEMPLATE, OFFER_SOURCE)
            .expect("the built-in offer template compiles");
        Templates {
            tera,
            outputs: quick_cache::sync::Cache::new(REMEMBERED),
        }
    }

    /// Compiles every file under `dir` (named by its path relative to it).
    pub fn load(dir: &Path) -> Result<Templates, Vec<Diagnostic>> {
        let mut templates = Templates::builtin();
        let mut errors = Vec::new();
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        files.sort();
        for (name, path) in files {
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(Diagnostic::whole_file(&path, e.to_string()));
                    continue;
                }
            };
            if let Err(e) = templates.tera.add_raw_template(&name, &source) {
                errors.push(template_error(&path, &e));
            }
        }
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    pub fn remembered(&self, key: u64) -> Option<std::sync::Arc<str>> {
        self.outputs.get(&key)
    }

    pub fn remember(&self, key: u64, output: std::sync::Arc<str>) {
        self.outputs.insert(key, output);
    }

    pub fn has(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|n| n == name)
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, tera::Error> {
        self.tera.render(name, context)
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let hidden = e.file_name().to_str().is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((rel.to_string_lossy().replace('\\', "/"), path));
        }
    }
}

/// Tera's parse errors carry ` --> line:col` in their source chain.
fn template_error(path: &Path, err: &tera::Error) -> Diagnostic {
    let text = crate::error_chain(err, "\n");
    let position = text.split("--> ").nth(1).and_then(|rest| {
        let mut nums = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty());
        Some((nums.next()?.parse().ok()?, nums.next()?.parse().ok()?))
    });
    let message = text
        .lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("-->")
                && !l.contains(" | ")
                && !l.chars().all(|c| c == '|' || c == ' ' || c == '^')
        })
        .unwrap_or("template error")
        .to_string();
    let (line, col) = position.unwrap_or((1, 1));
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message: format!("template syntax error: {message}"),
    }
}

/// The context every template sees: `request` and `site`.
/// `params` are the captures of the rule's `when.path`.
pub fn template_context(
    ctx: &RequestContext<'_>,
    site: &SiteVersion,
    params: &[(Arc<str>, String)],
) -> Context {
    let query: BTreeMap<&str, &str> = ctx
        .query
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    let params: BTreeMap<&str, &str> = params.iter().map(|(k, v)| (&**k, v.as_str())).collect();
    let request = serde_json::json!({
        "path": &ctx.path.path,
        "query": query,
        "params": params,
        "host": ctx.host,
        "country": ctx.country.as_str(),
        "continent": ctx.continent.map(|c| c.as_str()),
        "eu": ctx.eu,
        "language": ctx.languages.first(),
    });
    context_of(request, &site.site, &site.config.locale)
}

/// The context with a sample value for every variable docs/rules.md lists
/// (and no query parameter, which a request may not have), for `check` to
/// render each template as a request would; `params` are the captures the
/// rule's path has.
pub fn sample_context(site: &str, locale: &str, params: &[&str]) -> Context {
    let params: BTreeMap<&str, &str> = params.iter().map(|&p| (p, "sample")).collect();
    let request = serde_json::json!({
        "path": "/",
        "query": {},
        "params": params,
        "host": format!("{site}.example"),
        "country": "GB",
        "continent": "EU",
        "eu": false,
        "language": "en",
    });
    context_of(request, site, locale)
}

fn context_of(request: serde_json::Value, site: &str, locale: &str) -> Context {
    let mut c = Context::new();
    c.insert("request", &request);
    c.insert(
        "site",
        &serde_json::json!({ "name": site, "locale": locale }),
    );
    c
}
