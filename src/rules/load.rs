//! Loading rules: parse every rules/*.toml (in file-name order) with spans,
//! validate, and compile globs, selectors and template references, so that
//! evaluation can never meet an invalid rule.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::action::{self, misplaced_key, Action, RawAction};
use super::conditions::When;
use super::kind::Compiling;
use super::raw::{RawFile, RawRule};
use super::rule::{Rule, Rules};
use crate::config::{closest, parse_toml, Diagnostic, Origin};
use crate::transform::Templates;

/// Every rules file problem found in one load.
#[derive(Debug, thiserror::Error)]
#[error("{}", Diagnostic::lines(.0))]
pub struct LoadError(pub Vec<Diagnostic>);

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
        // Each rule's action keys, read once its action is known.
        let known: Vec<Option<&str>> = raw
            .rule
            .iter()
            .map(|r| {
                Some(r.get_ref().action.get_ref().as_str()).filter(|a| action::NAMES.contains(a))
            })
            .collect();
        let actions = match action::read_all(&source, &known) {
            Ok(a) => a,
            Err(e) => {
                errors.push(Diagnostic::from_toml(&file, &source, &e));
                continue;
            }
        };
        let compiler = Compiler {
            file: &file,
            source: &source,
            sites,
            templates: &templates,
        };
        for (raw_rule, raw_action) in raw.rule.into_iter().zip(actions) {
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
            if let Some(rule) = compiler.rule(raw_rule, raw_action, origin, &mut errors) {
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

    fn rule(
        &self,
        raw: RawRule,
        raw_action: Option<RawAction>,
        origin: Origin,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<Rule> {
        let before = errors.len();
        let action_name = raw.action.get_ref();
        let Some(raw_action) = raw_action else {
            let hint = closest(action_name, action::NAMES)
                .map(|c| format!(", did you mean `{c}`?"))
                .unwrap_or_default();
            errors.push(self.err(
                raw.action.span(),
                format!(
                    "unknown action `{action_name}`{hint} (actions: {})",
                    action::NAMES.join(", ")
                ),
            ));
            return None;
        };
        for (key, span) in &raw.keys {
            if !action::keys(action_name).contains(key) {
                errors.push(self.err(span.clone(), misplaced_key(key, action_name)));
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
        let when = When::compile(raw.when, &err, errors);
        let unless = When::compile(raw.unless, &err, errors);
        let mut cx = Compiling {
            file: self.file,
            source: self.source,
            sites: self.sites,
            templates: self.templates,
            when: &when,
            action: raw.action.span(),
            errors,
            selectors: Vec::new(),
        };
        let action = raw_action.compile(&mut cx);
        let selectors = cx.selectors;
        if errors.len() > before {
            return None;
        }
        Some(Rule {
            name: raw.name.into_inner().into(),
            origin,
            sites,
            when,
            unless,
            action: action?,
            selectors,
        })
    }
}
