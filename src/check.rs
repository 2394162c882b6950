//! What `outpost check` finds (`cli::check` prints it): every problem in a
//! root folder's settings, sites, rules and templates, then the rule cases,
//! as diagnostics at `file:line:col`; and warnings about what loads but
//! likely does nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lol_html::Selector;

use crate::config::{Diagnostic, Overrides, Settings};
use crate::rules::{RedirectsFile, Rule, Rules, TemplateExtra};
use crate::site::Sites;
use crate::store::{read_site_files, Manifest, SiteVersion, HEADERS_FILE, REDIRECTS_FILE};
use crate::transform::{Edit, Op, Place};

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// What `serve` would refuse or ignore: any fails the check.
    pub problems: Vec<Diagnostic>,
    /// What loads but likely does nothing (a selector no page has).
    pub warnings: Vec<Diagnostic>,
}

/// Everything found under `root`, problems in file order.
pub fn check(root: &Path) -> Report {
    let mut warnings = Vec::new();
    let problems = problems(root, &mut warnings);
    Report { problems, warnings }
}

fn problems(root: &Path, warnings: &mut Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    // Whether visitors can have a region: from a City database, or from
    // the CF-Region-Code of trusted proxies.
    let mut regions = true;
    match Settings::load(root, &Overrides::default()) {
        Err(errs) => problems.extend(errs),
        // serve refuses to start without its geo database.
        Ok(settings) => match crate::context::Geo::open(settings.geoip.as_deref()) {
            Err(e) => problems.push(match &settings.geoip_origin {
                Some(origin) => origin.error(e.to_string()),
                None => Diagnostic::whole_file(&root.join("outpost.toml"), e.to_string()),
            }),
            Ok(geo) => regions = geo.has_regions() || !settings.trusted_proxies.is_empty(),
        },
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
                Ok(v) => {
                    problems.extend(site_files(&sites_dir.join(&name), &v, warnings));
                    versions.push(Arc::new(v));
                }
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
        Ok(rules) => {
            problems.extend(missing_variant_files(root, &rules, &names));
            problems.extend(template_failures(root, &rules));
            if !regions {
                problems.extend(rules.rules.iter().filter(|r| r.when.has("region") || r.unless.has("region")).map(|r| {
                    r.origin.error("the rule asks for a `region`, which no visitor has: the geo database has no subdivisions (use a City database) and no trusted proxy sends CF-Region-Code")
                }));
            }
            warnings.extend(unmatched_selectors(root, &rules, &names));
        }
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

/// A site's `_redirects` and `_headers`: their problems, each at its line;
/// redirect loops written in `_redirects` are warnings.
fn site_files(dir: &Path, site: &SiteVersion, warnings: &mut Vec<Diagnostic>) -> Vec<Diagnostic> {
    let public = dir.join("public");
    let mut problems = Vec::new();
    let mut read = |name: &str| match std::fs::read_to_string(public.join(name)) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            problems.push(Diagnostic::whole_file(&public.join(name), e.to_string()));
            None
        }
    };
    let (redirects, headers) = (read(REDIRECTS_FILE), read(HEADERS_FILE));
    let mut config = site.config.clone();
    if let Err(e) = read_site_files(
        &public,
        &mut config,
        redirects.as_deref(),
        headers.as_deref(),
    ) {
        problems.extend(e);
        return problems;
    }
    let Some(text) = redirects else {
        return problems;
    };
    let compiled = crate::config::parse_redirects(&public.join(REDIRECTS_FILE), &text)
        .and_then(|lines| Ok((RedirectsFile::compile_lines(site, &lines)?, lines)));
    match compiled {
        Err(e) => problems.extend(e),
        Ok((file, lines)) => {
            let exists = |path: &str| {
                let rel = path.trim_start_matches('/');
                let dir = rel.trim_end_matches('/');
                [
                    rel.to_string(),
                    format!("{dir}/index.html"),
                    format!("{dir}.html"),
                ]
                .iter()
                .any(|f| !f.is_empty() && public.join(f).is_file())
            };
            warnings.extend(file.loops(&lines, &exists));
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
                    .join(serve.path.trim_start_matches('/'));
                if !file.is_file() {
                    problems.push(origin.error(format!(
                        "variant `{}` serves {}, which site `{site}` does not have",
                        variant.name, serve.path
                    )));
                }
            }
        }
    }
    problems
}

/// Renders every template a rule uses with a sample of the documented
/// context, so that a variable it lacks (logged on every request by serve)
/// is found now, at the line that uses it. A fragment's `data` comes from
/// its source, which check does not fetch: only the other variables count.
fn template_failures(root: &Path, rules: &Rules) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut done = HashSet::new();
    for rule in &rules.rules {
        let Some((name, extra)) = rule.action.template() else {
            continue;
        };
        // The built-in banner is outpost's own, tested with it.
        let params = rule.when.capture_names();
        if name == crate::transform::OFFER_TEMPLATE || !done.insert((name, extra, params.clone())) {
            continue;
        }
        let site = rule
            .sites
            .as_ref()
            .and_then(|s| s.first())
            .map_or("example", String::as_str);
        let mut context = crate::transform::sample_context(site, "en-GB", &params);
        match extra {
            TemplateExtra::None => {}
            TemplateExtra::Offer => context.insert("offer", &crate::rules::sample_offer()),
            TemplateExtra::Data => context.insert("data", &serde_json::json!({})),
        }
        let Err(e) = rules.templates.render(name, &context) else {
            continue;
        };
        let text = crate::error_chain(&e, ": ");
        let variable = missing_variable(&text);
        let from_source = |v: &str| v == "data" || v.starts_with("data.") || v.starts_with("data[");
        if extra == TemplateExtra::Data && variable.is_some_and(from_source) {
            continue;
        }
        let file = root.join("rules/templates").join(name);
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        let at = variable.and_then(|v| source.find(v)).unwrap_or(0);
        let message = match variable {
            Some(v) if v.starts_with("request.query.") => format!(
                "template `{name}` uses `{v}`, which a request without that parameter does not have: test it with `{{% if {v} %}}` or write `{v} | default(value=\"\")`"
            ),
            Some(v) => format!(
                "template `{name}` uses `{v}`, which templates are not given (see the template variables in docs/rules.md)"
            ),
            None => format!("template `{name}` fails to render: {text}"),
        };
        problems.push(Diagnostic::at(&file, &source, at, message));
    }
    problems
}

/// The variable Tera says is missing, from its error text.
fn missing_variable(text: &str) -> Option<&str> {
    let rest = text.split_once("Variable `")?.1;
    Some(rest.split_once('`')?.0)
}

/// Selectors that match no element on any page their rule covers: the rule
/// then does nothing, silently (a renamed class, say).
fn unmatched_selectors(root: &Path, rules: &Rules, sites: &[String]) -> Vec<Diagnostic> {
    let mut pages_of = std::collections::HashMap::new();
    let mut warnings = Vec::new();
    for rule in rules.rules.iter().filter(|r| !r.selectors.is_empty()) {
        let Ok(selectors) = rule
            .selectors
            .iter()
            .map(|s| s.text.parse::<Selector>().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let mut matched = vec![false; selectors.len()];
        let mut tried = 0;
        for site in sites.iter().filter(|s| rule.applies_to(s)) {
            let pages = pages_of
                .entry(site.as_str())
                .or_insert_with(|| html_pages(&root.join("sites").join(site).join("public")));
            for (_, file) in pages.iter().filter(|(urls, _)| covers(rule, urls)) {
                let Ok(html) = std::fs::read(file) else {
                    continue;
                };
                tried += 1;
                for (i, found) in matching(&html, &selectors).into_iter().enumerate() {
                    matched[i] |= found;
                }
            }
        }
        if tried == 0 {
            continue;
        }
        for (written, _) in rule.selectors.iter().zip(&matched).filter(|(_, m)| !**m) {
            warnings.push(written.origin.error(format!(
                "rule `{}`: selector `{}` matches no element on the {tried} page(s) it covers",
                rule.name, written.text
            )));
        }
    }
    warnings
}

/// Whether the rule's path takes any of a page's URLs.
fn covers(rule: &Rule, urls: &[String]) -> bool {
    rule.when.path.is_empty() || urls.iter().any(|u| rule.when.path.is_match(u))
}

/// The HTML files under `public`, each with the URL paths that answer it
/// (`/a/index.html` is also `/a/`). Links are not followed.
fn html_pages(public: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut pages = Vec::new();
    let mut dirs = vec![public.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let html = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
            let Some(rel) = path.strip_prefix(public).ok().and_then(Path::to_str) else {
                continue;
            };
            if !kind.is_file() || !html {
                continue;
            }
            let url = format!("/{}", rel.replace('\\', "/"));
            // Dotfiles are never served.
            if crate::context::SitePath::parse(&url).is_ok_and(|p| p.is_hidden()) {
                continue;
            }
            let mut urls = vec![url.clone()];
            if let Some(dir) = url.strip_suffix("index.html") {
                urls.push(dir.to_string());
            }
            pages.push((urls, path));
        }
    }
    pages.sort();
    pages
}

/// Which of `selectors` match an element of `html`, found as serving finds
/// them: each probes the page with an edit that inserts nothing.
fn matching(html: &[u8], selectors: &[Arc<Selector>]) -> Vec<bool> {
    let probes: Vec<Edit> = selectors
        .iter()
        .enumerate()
        .map(|(i, selector)| Edit {
            slot: (0, i),
            place: Place::Selector(selector.clone()),
            op: Op::Before("".into()),
        })
        .collect();
    // A page lol_html cannot parse matches nothing, as when serving it.
    crate::transform::apply(html, &probes)
        .map_or_else(|| vec![false; selectors.len()], |r| r.matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_banner_renders_with_the_sample_context() {
        // The sample must give every variable the banner uses, or check
        // would report user templates that serve renders fine.
        let mut context = crate::transform::sample_context("a", "en-GB", &[]);
        context.insert("offer", &crate::rules::sample_offer());
        let html = crate::transform::Templates::builtin()
            .render(crate::transform::OFFER_TEMPLATE, &context)
            .unwrap();
        assert!(html.contains("Vai al sito italiano"), "{html}");
    }

    #[test]
    fn the_missing_variable_is_read_from_teras_error() {
        let text = "Failed to render 'a.html': Variable `request.contry` not found in context while rendering 'a.html'";
        assert_eq!(missing_variable(text), Some("request.contry"));
        assert_eq!(missing_variable("Failed to render"), None);
    }

    #[test]
    fn selectors_match_elements_anywhere_in_the_page() {
        let selectors: Vec<Arc<Selector>> = ["main h1", "a.cta", "#nope"]
            .iter()
            .map(|s| Arc::new(s.parse().unwrap()))
            .collect();
        let html =
            b"<html><body><main><div><h1>x</h1></div></main><a class=\"cta b\">y</a></body></html>";
        assert_eq!(matching(html, &selectors), vec![true, true, false]);
    }
}
