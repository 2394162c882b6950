//! `outpost check`: every problem in a root folder's settings, sites, rules
//! and templates, then the rule cases, as `file:line:col: message` lines.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Diagnostic, Overrides, Settings};
use crate::site::Sites;
use crate::store::{Manifest, SiteVersion};

/// All problems found under `root`, in file order.
pub fn check(root: &Path) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    match Settings::load(root, &Overrides::default()) {
        Err(errs) => problems.extend(errs),
        // serve refuses to start without its geo database.
        Ok(settings) => {
            if let Err(e) = crate::context::Geo::open(settings.geoip.as_deref()) {
                problems.push(match &settings.geoip_origin {
                    Some(origin) => origin.error(e.to_string()),
                    None => Diagnostic::whole_file(&root.join("outpost.toml"), e.to_string()),
                });
            }
        }
    }
    let sites_dir = root.join("sites");
    let mut names: Vec<_> = match std::fs::read_dir(&sites_dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(e) => {
            problems.push(Diagnostic::whole_file(
                &sites_dir,
                format!("cannot list sites: {e}"),
            ));
            return problems;
        }
    };
    names.sort();
    let mut versions = Vec::new();
    for name in names {
        let file = sites_dir.join(&name).join("site.toml");
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Diagnostic::whole_file(&file, e.to_string()));
                continue;
            }
        };
        let settings_only = Manifest {
            created_unix_ms: 0,
            site_toml: source.clone(),
            files: Vec::new(),
        };
        match crate::config::SiteConfig::parse(&file, &source) {
            Err(errs) => problems.extend(errs),
            Ok(_) => match SiteVersion::from_manifest(&name, 0, &settings_only, |_, _| {
                unreachable!("no files")
            }) {
                Ok(v) => versions.push(Arc::new(v)),
                Err(e) => problems.push(Diagnostic::whole_file(&file, e.to_string())),
            },
        }
    }
    let names: Vec<String> = versions.iter().map(|v| v.site.clone()).collect();
    let (_, conflicts) = Sites::build(versions);
    problems.extend(conflicts.into_iter().map(|mut d| {
        d.file = sites_dir.join(d.file.strip_prefix("sites").unwrap_or(&d.file));
        d
    }));
    match crate::rules::load(root, &names) {
        Err(e) => problems.extend(e.0),
        Ok(rules) => problems.extend(missing_variant_files(root, &rules, &names)),
    }
    // Rule cases only mean something once everything loads.
    if problems.is_empty() {
        match crate::rule_tests::run(root) {
            Ok(report) => problems.extend(report.failures),
            Err(e) => problems.push(Diagnostic::whole_file(
                &root.join("rules/tests"),
                e.to_string(),
            )),
        }
    }
    problems
}

/// Variants that serve a file which some site of the rule lacks.
fn missing_variant_files(
    root: &Path,
    rules: &crate::rules::Rules,
    sites: &[String],
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for rule in &rules.rules {
        let crate::rules::Action::Variant(exp) = &rule.action else {
            continue;
        };
        for variant in &exp.variants {
            let (Some(serve), Some(origin)) = (&variant.serve, &variant.serve_origin) else {
                continue;
            };
            for site in sites.iter().filter(|s| rule.applies_to(s)) {
                let file = root
                    .join("sites")
                    .join(site)
                    .join("public")
                    .join(serve.trim_start_matches('/'));
                if !file.is_file() {
                    problems.push(origin.error(format!(
                        "variant `{}` serves {serve}, which site `{site}` does not have",
                        variant.name
                    )));
                }
            }
        }
    }
    problems
}
