//! The rule cases of `outpost test` (`cli::test` prints them) and `outpost
//! check`: rule cases from rules/tests/*.toml, each a request and what must
//! come of it, run through the same pipeline as the server so a rules
//! change can be checked in CI before it is published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{parse_toml, Diagnostic, Origin};
use crate::context::Country;
use crate::offline::{body_bytes, Offline, OfflineError, Visit};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Spanned<Case>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    url: String,
    method: Option<String>,
    country: Option<String>,
    /// When the request comes (RFC 3339, with its offset).
    at: Option<jiff::Timestamp>,
    #[serde(default)]
    cookies: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    status: Option<u16>,
    location: Option<String>,
    /// Exactly the rules that must fire, in order.
    rules: Option<Vec<String>>,
    variant: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    #[serde(default)]
    body_lacks: Vec<String>,
}

/// The outcome of running every case.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// One diagnostic per failed case (or unreadable case file).
    pub failures: Vec<Diagnostic>,
}

/// Runs the cases under `root/rules/tests`.
pub fn run(root: &Path) -> Result<Report, OfflineError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("rules/tests"))
        .map(|e| {
            e.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut report = Report::default();
    if files.is_empty() {
        return Ok(report);
    }
    let offline = Offline::load(root)?;
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                report
                    .failures
                    .push(Diagnostic::whole_file(&file, e.to_string()));
                continue;
            }
        };
        let cases: CaseFile = match parse_toml(&file, &source) {
            Ok(c) => c,
            Err(d) => {
                report.failures.push(d);
                continue;
            }
        };
        for case in cases.case {
            let origin = Origin::new(&file, &source, case.span().start);
            match run_case(&offline, case.get_ref()) {
                Ok(()) => report.passed += 1,
                Err(why) => report
                    .failures
                    .push(origin.error(format!("{}: {why}", case.get_ref().name))),
            }
        }
    }
    Ok(report)
}

fn run_case(offline: &Offline, case: &Case) -> Result<(), String> {
    let country = match &case.country {
        Some(c) => Some(Country::parse_written(c)?),
        None => None,
    };
    let visit = Visit {
        url: case.url.clone(),
        method: case.method.clone(),
        country,
        at: case.at,
        cookies: case
            .cookies
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        headers: case
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let (response, decision) = offline.answer(&visit).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if let Some(status) = case.status {
        if response.status().as_u16() != status {
            problems.push(format!(
                "status {} (expected {status})",
                response.status().as_u16()
            ));
        }
    }
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if case.location.is_some() && location != case.location {
        problems.push(format!(
            "location {location:?} (expected {:?})",
            case.location.as_deref().unwrap_or_default()
        ));
    }
    let fired = decision
        .as_ref()
        .map(|d| d.fired.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(rules) = &case.rules {
        if &fired != rules {
            problems.push(format!("rules fired {fired:?} (expected {rules:?})"));
        }
    }
    if let Some(variant) = &case.variant {
        let assigned: Vec<_> = decision.iter().flat_map(|d| d.variants.iter()).collect();
        match assigned.iter().find(|a| *a.variant == **variant) {
            None => {
                let got: Vec<&str> = assigned.iter().map(|a| a.variant.as_ref()).collect();
                problems.push(format!("variants {got:?} (expected {variant})"));
            }
            // Serve would count this visitor as not applied.
            Some(a) if !a.applied => problems.push(format!(
                "variant {variant} was not applied: a transform matched nothing, \
                 its file is missing, or the page was not served"
            )),
            Some(_) => {}
        }
    }
    let body = body_bytes(&response);
    let body = String::from_utf8_lossy(&body);
    for text in &case.body_contains {
        if !body.contains(text.as_str()) {
            problems.push(format!("body lacks {text:?}"));
        }
    }
    for text in &case.body_lacks {
        if body.contains(text.as_str()) {
            problems.push(format!("body contains {text:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
