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
use super::fragment::{Fragment, OnError, Source};
use super::goal::Goal;
use super::headers::Headers;
use super::inject::{Content, Inject, Position};
use super::offer_local::{Mode, OfferLocal};
use super::preview::Preview;
use super::raw::{RawFile, RawRule};
use super::redirect::{Redirect, Target};
use super::variant::{keep_cookie, Experiment, Transform, Variant, COOKIE_PREFIX};
use super::{Action, Rule, Rules, WrittenSelector};
use crate::config::{closest, parse_toml, Diagnostic, Origin};
use crate::transform::Op;
use crate::transform::Templates;
use crate::transform::Timing;

/// Every rules file problem found in one load.
#[derive(Debug, thiserror::Error)]
#[error("{}", Diagnostic::lines(.0))]
pub struct LoadError(pub Vec<Diagnostic>);

const ACTIONS: [&str; 9] = [
    "redirect",
    "block",
    "offer-local",
    "preview",
    "inject",
    "headers",
    "variant",
    "goal",
    "fragment",
];

fn allowed_keys(action: &str) -> &'static [&'static str] {
    match action {
        "redirect" => &["to", "to_site", "status"],
        "block" => &["status", "page"],
        "offer-local" => &["template", "selector", "mode", "status"],
        "preview" => &["param", "value", "secret"],
        "inject" => &["template", "html", "selector", "position"],
        "headers" => &["set", "remove"],
        "variant" => &["experiment", "variants", "allow_force"],
        "goal" => &["experiment"],
        "fragment" => &[
            "selector",
            "template",
            "source",
            "ttl",
            "timeout",
            "stale_for",
            "on_error",
        ],
        _ => &[],
    }
}

/// Says which actions take `key`, and what `action` takes instead.
fn misplaced_key(key: &str, action: &str) -> String {
    let takers: Vec<String> = ACTIONS
        .iter()
        .filter(|a| allowed_keys(a).contains(&key))
        .map(|a| format!("`{a}`"))
        .collect();
    let takes = match allowed_keys(action) {
        [] => "no other keys".to_string(),
        keys => keys.join(", "),
    };
    format!(
        "`{key}` does not apply to action `{action}`: it is a key of {} (`{action}` takes {takes})",
        takers.join(", ")
    )
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
    link_goals(&mut rules, &mut errors);
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    Ok(Rules {
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        rules,
        templates,
    })
}

/// Gives each goal its experiment's variants; a goal for an experiment no
/// rule runs is an error, and so is an experiment run by two rules.
fn link_goals(rules: &mut [Rule], errors: &mut Vec<Diagnostic>) {
    let mut experiments: HashMap<Arc<str>, (Vec<Arc<str>>, Origin)> = HashMap::new();
    for rule in rules.iter() {
        if let Action::Variant(e) = &rule.action {
            let names = e.variants.iter().map(|v| v.name.clone()).collect();
            if let Some((_, first)) =
                experiments.insert(e.experiment.clone(), (names, rule.origin.clone()))
            {
                errors.push(rule.origin.error(format!(
                    "experiment `{}` is already run by the rule at {}:{}:{}",
                    e.experiment,
                    first.file.display(),
                    first.line,
                    first.col
                )));
            }
        }
    }
    for rule in rules.iter_mut() {
        if let Action::Goal(goal) = &mut rule.action {
            match experiments.get(&goal.experiment) {
                Some((names, _)) => goal.variants = names.clone(),
                None => errors.push(rule.origin.error(format!(
                    "no `variant` rule runs experiment `{}`",
                    goal.experiment
                ))),
            }
        }
    }
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
                errors.push(self.err(span, misplaced_key(key, &action_name)));
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
        let written = |s: &toml::Spanned<String>| WrittenSelector {
            text: s.get_ref().clone(),
            origin: Origin::new(self.file, self.source, s.span().start),
        };
        let transforms = raw
            .variants
            .iter()
            .flat_map(|v| v.get_ref())
            .flat_map(|v| &v.get_ref().transforms);
        let selectors = raw
            .selector
            .iter()
            .chain(transforms.map(|t| &t.get_ref().selector))
            .map(written)
            .collect();
        Some(Rule {
            name: raw.name.into_inner().into(),
            origin,
            sites,
            when,
            action: action?,
            selectors,
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
                    (None, Some(h)) => Content::Html(h.get_ref().as_str().into()),
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
                for (k, v) in raw.set.iter().flat_map(|m| m.get_ref().iter()) {
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
                for k in raw.remove.iter().flat_map(|v| v.get_ref().iter()) {
                    match HeaderName::try_from(k.get_ref().as_str()) {
                        Ok(n) => remove.push(n),
                        Err(_) => errors.push(
                            self.err(k.span(), format!("`{}` is not a header name", k.get_ref())),
                        ),
                    }
                }
                Action::Headers(Headers { set, remove })
            }
            "variant" => self.variant(raw, errors)?,
            "goal" => {
                let Some(experiment) = &raw.experiment else {
                    missing(errors, "an `experiment`");
                    return None;
                };
                Action::Goal(Goal::new(experiment.get_ref()))
            }
            "fragment" => self.fragment(raw, errors)?,
            _ => unreachable!("action names are checked first"),
        })
    }
}

/// Names that go into cookies: letters, digits, `-` and `_`.
fn cookie_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Compiler<'_> {
    fn variant(&self, raw: &RawRule, errors: &mut Vec<Diagnostic>) -> Option<Action> {
        let Some(experiment) = &raw.experiment else {
            errors.push(self.err(raw.action.span(), "action `variant` needs an `experiment`"));
            return None;
        };
        if !cookie_safe(experiment.get_ref()) {
            errors.push(self.err(
                experiment.span(),
                "experiment names may use letters, digits, `-` and `_` (up to 64)",
            ));
        }
        let Some(raw_variants) = &raw.variants else {
            errors.push(self.err(raw.action.span(), "action `variant` needs `variants`"));
            return None;
        };
        let cookie = format!("{COOKIE_PREFIX}{}", experiment.get_ref());
        let mut variants: Vec<Variant> = Vec::new();
        for v in raw_variants.get_ref() {
            let v = v.get_ref();
            let name = v.name.get_ref();
            if !cookie_safe(name) {
                errors.push(self.err(
                    v.name.span(),
                    "variant names may use letters, digits, `-` and `_` (up to 64)",
                ));
            }
            if variants.iter().any(|o: &Variant| *o.name == **name) {
                errors.push(self.err(v.name.span(), format!("variant `{name}` is listed twice")));
            }
            let mut transforms = Vec::new();
            for t in &v.transforms {
                let span = t.span();
                let t = t.get_ref();
                let selector = match t.selector.get_ref().parse::<Selector>() {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        errors.push(self.err(
                            t.selector.span(),
                            format!("bad CSS selector `{}`: {e}", t.selector.get_ref()),
                        ));
                        continue;
                    }
                };
                let mut ops = Vec::new();
                if let Some(x) = &t.set_text {
                    ops.push(Op::SetText(x.as_str().into()));
                }
                if let Some(x) = &t.set_html {
                    ops.push(Op::SetHtml(x.as_str().into()));
                }
                if let Some(a) = &t.set_attr {
                    ops.push(Op::SetAttr(a.name.as_str().into(), a.value.as_str().into()));
                }
                if t.remove == Some(true) {
                    ops.push(Op::Remove);
                }
                if let Some(x) = &t.append_html {
                    ops.push(Op::Append(x.as_str().into()));
                }
                if let Some(x) = &t.prepend_html {
                    ops.push(Op::Prepend(x.as_str().into()));
                }
                if ops.len() != 1 {
                    errors.push(self.err(span, "a transform needs exactly one of set_text, set_html, set_attr, remove, append_html, prepend_html"));
                    continue;
                }
                transforms.push(Transform {
                    selector,
                    op: ops.remove(0),
                });
            }
            if let Some(serve) = &v.serve {
                if !serve.get_ref().starts_with('/') {
                    errors.push(self.err(
                        serve.span(),
                        "`serve` is a path on the site, starting with `/`",
                    ));
                }
            }
            variants.push(Variant {
                name: name.as_str().into(),
                weight: v.weight.as_ref().map_or(1, |w| *w.get_ref()),
                serve: v.serve.as_ref().map(|s| s.get_ref().as_str().into()),
                serve_origin: v
                    .serve
                    .as_ref()
                    .map(|s| Origin::new(self.file, self.source, s.span().start)),
                transforms,
                set_cookie: keep_cookie(&cookie, name),
            });
        }
        if variants.is_empty() {
            errors.push(self.err(
                raw_variants.span(),
                "an experiment needs at least one variant",
            ));
        } else if variants.iter().map(|v| v.weight).sum::<u32>() == 0 {
            errors.push(self.err(raw_variants.span(), "the variants' weights add up to 0"));
        }
        Some(Action::Variant(Experiment {
            cookie,
            experiment: experiment.get_ref().as_str().into(),
            variants,
            allow_force: raw.allow_force.as_ref().is_some_and(|f| *f.get_ref()),
        }))
    }

    fn duration(
        &self,
        raw: &Option<toml::Spanned<String>>,
        default: &str,
        errors: &mut Vec<Diagnostic>,
    ) -> std::time::Duration {
        let text = raw.as_ref().map_or(default, |r| r.get_ref().as_str());
        humantime::parse_duration(text).unwrap_or_else(|e| {
            let span = raw.as_ref().map(|r| r.span()).unwrap_or(0..0);
            errors.push(self.err(
                span,
                format!("`{text}` is not a duration like 300ms, 10s or 1h: {e}"),
            ));
            humantime::parse_duration(default).expect("defaults parse")
        })
    }

    fn fragment(&self, raw: &RawRule, errors: &mut Vec<Diagnostic>) -> Option<Action> {
        let (Some(source), Some(_), Some(_)) = (&raw.source, &raw.selector, &raw.template) else {
            errors.push(self.err(
                raw.action.span(),
                "action `fragment` needs `source`, `selector` and `template`",
            ));
            return None;
        };
        let parsed = Source::parse(source.get_ref())
            .map_err(|e| errors.push(self.err(source.span(), e)))
            .ok();
        let selector = self.selector(&raw.selector, errors);
        let template = self.template(&raw.template, errors);
        let timing = Timing {
            ttl: self.duration(&raw.ttl, "10s", errors),
            timeout: self.duration(&raw.timeout, "300ms", errors),
            stale_for: self.duration(&raw.stale_for, "1h", errors),
        };
        let on_error = match raw
            .on_error
            .as_ref()
            .map(|o| (o.get_ref().as_str(), o.span()))
        {
            None | Some(("stale", _)) => OnError::Stale,
            Some(("empty", _)) => OnError::Empty,
            Some(("keep", _)) => OnError::Keep,
            Some((other, span)) => {
                errors.push(self.err(
                    span,
                    format!("on_error `{other}` is not one of stale, empty, keep"),
                ));
                OnError::Stale
            }
        };
        Some(Action::Fragment(Fragment {
            selector: selector?,
            template: template?.into(),
            source: parsed?,
            timing,
            on_error,
        }))
    }
}
