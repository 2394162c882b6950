//! Loading rules: parse every rules/*.toml (in file-name order) with spans,
//! validate, and compile globs, selectors and template references, so that
//! evaluation can never meet an invalid rule.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use lol_html::Selector;

use super::block::Block;
use super::condition::When;
use super::headers::Headers;
use super::inject::{Content, Inject, Position};
use super::offer_local::{Mode, OfferLocal};
use super::preview::Preview;
use super::raw::{RawFile, RawRule};
use super::redirect::{Redirect, Target};
use super::{Action, Rule, Rules};
use crate::config::{closest, parse_toml, Diagnostic, Origin};
use crate::transform::Templates;

/// Every rules file problem found in one load.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LoadError(pub Vec<Diagnostic>);

const ACTIONS: [&str; 6] = [
    "redirect",
    "block",
    "offer-local",
    "preview",
    "inject",
    "headers",
];

fn allowed_keys(action: &str) -> &'static [&'static str] {
    match action {
        "redirect" => &["to", "to_site", "status"],
        "block" => &["status", "page"],
        "offer-local" => &["template", "selector", "mode", "status"],
        "preview" => &["param", "value", "secret"],
        "inject" => &["template", "html", "selector", "position"],
        "headers" => &["set", "remove"],
        _ => &[],
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Loads `root/rules`. `sites` are the names rules may refer to.
pub fn load(root: &Path, sites: &[String]) -> Result<Rules, LoadError> {
    let dir = root.join("rules");
    let mut errors = Vec::new();
    let templates = match Templates::load(&dir.join("templates")) {
        Ok(t) => t,
        Err(e) => {
            errors.extend(e);
            Templates::builtin()
        }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();

    let mut rules = Vec::new();
    let mut names: HashMap<String, Origin> = HashMap::new();
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                errors.push(Diagnostic::whole_file(&file, e.to_string()));
                continue;
            }
        };
        if source.trim().is_empty() {
            // Usually a file caught mid-write or truncated by accident.
            errors.push(Diagnostic::whole_file(
                &file,
                "file is empty: expected [[rule]] tables",
            ));
            continue;
        }
        let raw: RawFile = match parse_toml(&file, &source) {
            Ok(r) => r,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        let compiler = Compiler {
            file: &file,
            source: &source,
            sites,
            templates: &templates,
        };
        for raw_rule in raw.rule {
            let origin = Origin::new(&file, &source, raw_rule.span().start);
            let raw_rule = raw_rule.into_inner();
            let name_span = raw_rule.name.span();
            let name = raw_rule.name.get_ref().clone();
            if let Some(first) = names.get(&name) {
                errors.push(compiler.err(
                    name_span,
                    format!(
                        "rule name `{name}` is already used at {}:{}:{}",
                        first.file.display(),
                        first.line,
                        first.col
                    ),
                ));
                continue;
            }
            names.insert(name.clone(), origin.clone());
            if let Some(rule) = compiler.rule(raw_rule, origin, &mut errors) {
                rules.push(rule);
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    Ok(Rules {
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        rules,
        templates,
    })
}

struct Compiler<'a> {
    file: &'a Path,
    source: &'a str,
    sites: &'a [String],
    templates: &'a Templates,
}

impl Compiler<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.file, self.source, span.start, message)
    }

    fn rule(&self, mut raw: RawRule, origin: Origin, errors: &mut Vec<Diagnostic>) -> Option<Rule> {
        let before = errors.len();
        let action_name = raw.action.get_ref().clone();
        if !ACTIONS.contains(&action_name.as_str()) {
            let hint = closest(&action_name, &ACTIONS)
                .map(|c| format!(", did you mean `{c}`?"))
                .unwrap_or_default();
            errors.push(self.err(
                raw.action.span(),
                format!(
                    "unknown action `{action_name}`{hint} (actions: {})",
                    ACTIONS.join(", ")
                ),
            ));
            return None;
        }
        for (key, span) in raw.present_keys() {
            if !allowed_keys(&action_name).contains(&key) {
                errors.push(self.err(
                    span,
                    format!("`{key}` does not apply to action `{action_name}`"),
                ));
            }
        }
        let sites = raw.sites.as_ref().map(|list| {
            list.iter()
                .filter_map(|s| {
                    if self.sites.iter().any(|n| n == s.get_ref()) {
                        Some(s.get_ref().clone())
                    } else {
                        let names: Vec<&str> = self.sites.iter().map(String::as_str).collect();
                        let hint = closest(s.get_ref(), &names)
                            .map(|c| format!(", did you mean `{c}`?"))
                            .unwrap_or_default();
                        errors.push(
                            self.err(s.span(), format!("no site named `{}`{hint}", s.get_ref())),
                        );
                        None
                    }
                })
                .collect()
        });
        let err = |span: Range<usize>, msg: String| self.err(span, msg);
        let when = When::compile(std::mem::take(&mut raw.when), &err, errors);
        let action = self.action(&action_name, &raw, &when, errors);
        if errors.len() > before {
            return None;
        }
        Some(Rule {
            name: raw.name.into_inner(),
            origin,
            sites,
            when,
            action: action?,
        })
    }

    fn selector(
        &self,
        raw: &Option<toml::Spanned<String>>,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Selector>> {
        let raw = raw.as_ref()?;
        match raw.get_ref().parse::<Selector>() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                errors.push(self.err(
                    raw.span(),
                    format!("bad CSS selector `{}`: {e}", raw.get_ref()),
                ));
                None
            }
        }
    }

    fn template(
        &self,
        raw: &Option<toml::Spanned<String>>,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let raw = raw.as_ref()?;
        if !self.templates.has(raw.get_ref()) {
            errors.push(self.err(
                raw.span(),
                format!("no template `{}` under rules/templates/", raw.get_ref()),
            ));
        }
        Some(raw.get_ref().clone())
    }

    fn status(
        &self,
        raw: &Option<toml::Spanned<u16>>,
        allowed: &[u16],
        default: u16,
        errors: &mut Vec<Diagnostic>,
    ) -> StatusCode {
        let Some(raw) = raw else {
            return StatusCode::from_u16(default).expect("defaults are valid");
        };
        let code = *raw.get_ref();
        let ok = if allowed.is_empty() {
            (400..600).contains(&code)
        } else {
            allowed.contains(&code)
        };
        if !ok {
            let expected = if allowed.is_empty() {
                "a 4xx or 5xx status".to_string()
            } else {
                allowed
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            errors.push(self.err(
                raw.span(),
                format!("status {code} is not allowed here (expected {expected})"),
            ));
        }
        StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND)
    }

    fn action(
        &self,
        name: &str,
        raw: &RawRule,
        when: &When,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<Action> {
        const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];
        let missing = |errors: &mut Vec<Diagnostic>, what: &str| {
            errors.push(self.err(raw.action.span(), format!("action `{name}` needs {what}")));
        };
        Some(match name {
            "redirect" => {
                let status = self.status(&raw.status, &REDIRECTS, 302, errors);
                let target =
                    match (&raw.to, &raw.to_site) {
                        (Some(to), None) => match Target::parse_to(to.get_ref()) {
                            Ok(t) => t,
                            Err(e) => {
                                errors.push(self.err(to.span(), e));
                                return None;
                            }
                        },
                        (None, Some(site)) => {
                            if !self.sites.contains(site.get_ref()) {
                                errors.push(self.err(
                                    site.span(),
                                    format!("no site named `{}`", site.get_ref()),
                                ));
                            }
                            Target::Site(site.get_ref().clone())
                        }
                        _ => {
                            missing(errors, "exactly one of `to` and `to_site`");
                            return None;
                        }
                    };
                Action::Redirect(Redirect { target, status })
            }
            "block" => Action::Block(Block {
                status: self.status(&raw.status, &[], 451, errors),
                page: raw.page.as_ref().map(|p| p.get_ref().clone()),
            }),
            "offer-local" => {
                let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                    None | Some(("banner", _)) => Mode::Banner,
                    Some(("redirect", _)) => Mode::Redirect,
                    Some((other, span)) => {
                        errors.push(self.err(
                            span,
                            format!("mode `{other}` is not `banner` or `redirect`"),
                        ));
                        Mode::Banner
                    }
                };
                Action::OfferLocal(OfferLocal {
                    template: self.template(&raw.template, errors),
                    selector: self.selector(&raw.selector, errors),
                    mode,
                    status: self.status(&raw.status, &REDIRECTS, 302, errors),
                })
            }
            "preview" => {
                if when.path.is_empty() {
                    missing(errors, "`when.path`: the paths it hides");
                }
                Action::Preview(Preview {
                    param: raw
                        .param
                        .as_ref()
                        .map_or("preview".into(), |p| p.get_ref().clone()),
                    value: raw
                        .value
                        .as_ref()
                        .map_or("true".into(), |v| v.get_ref().clone()),
                    secret: raw.secret.as_ref().map(|s| s.get_ref().clone()),
                    paths: Arc::new(when.path.clone()),
                })
            }
            "inject" => {
                let content = match (&raw.template, &raw.html) {
                    (Some(_), None) => Content::Template(self.template(&raw.template, errors)?),
                    (None, Some(h)) => Content::Html(h.get_ref().clone()),
                    _ => {
                        missing(errors, "exactly one of `template` and `html`");
                        return None;
                    }
                };
                let Some(selector) = self.selector(&raw.selector, errors) else {
                    if raw.selector.is_none() {
                        missing(errors, "a `selector`");
                    }
                    return None;
                };
                let position = match &raw.position {
                    None => Position::Append,
                    Some(p) => match Position::parse(p.get_ref()) {
                        Some(pos) => pos,
                        None => {
                            errors.push(self.err(
                                p.span(),
                                format!(
                                    "position `{}` is not one of {}",
                                    p.get_ref(),
                                    Position::NAMES.join(", ")
                                ),
                            ));
                            return None;
                        }
                    },
                };
                Action::Inject(Inject {
                    selector,
                    position,
                    content,
                })
            }
            "headers" => {
                let mut set = Vec::new();
                for (k, v) in raw.set.iter().flat_map(|m| m.iter()) {
                    match (
                        HeaderName::try_from(k.get_ref().as_str()),
                        HeaderValue::try_from(v.get_ref().as_str()),
                    ) {
                        (Ok(n), Ok(v)) => set.push((n, v)),
                        (Err(_), _) => errors.push(
                            self.err(k.span(), format!("`{}` is not a header name", k.get_ref())),
                        ),
                        (_, Err(_)) => errors.push(self.err(v.span(), "not a valid header value")),
                    }
                }
                let mut remove = Vec::new();
                for k in raw.remove.iter().flat_map(|v| v.iter()) {
                    match HeaderName::try_from(k.get_ref().as_str()) {
                        Ok(n) => remove.push(n),
                        Err(_) => errors.push(
                            self.err(k.span(), format!("`{}` is not a header name", k.get_ref())),
                        ),
                    }
                }
                Action::Headers(Headers { set, remove })
            }
            _ => unreachable!("action names are checked first"),
        })
    }
}
