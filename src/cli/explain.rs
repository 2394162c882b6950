//! `outpost explain`: which site answers a URL, what each rule made of the
//! request and why, the decision, and optionally the HTML sent.

use std::fmt::Write;

use crate::offline::{body_bytes, Offline, OfflineError, Visit};
use crate::rules::{Outcome, Verdict};

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The URL to explain, like http://casino-uk.localhost/reviews/
    url: String,
    #[command(flatten)]
    root: super::RootArg,
    /// The visitor's country (ISO code), instead of a geo lookup.
    #[arg(long)]
    country: Option<String>,
    /// The visitor's region, ISO 3166-2 like US-NJ (and so their country).
    #[arg(long)]
    region: Option<String>,
    /// When the request comes, RFC 3339 with its offset, instead of now.
    #[arg(long)]
    at: Option<jiff::Timestamp>,
    /// A cookie the visitor sends, NAME=VALUE (repeatable).
    #[arg(long = "cookie")]
    cookies: Vec<String>,
    /// A header the visitor sends, 'Name: value' (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Also print the HTML sent.
    #[arg(long)]
    body: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Country(String),
    #[error("`{item}` is not {what}")]
    NotAPair { item: String, what: &'static str },
    #[error(transparent)]
    Offline(#[from] OfflineError),
}

/// Loads the root offline and prints the report for the visit the
/// arguments describe.
pub fn run(args: ExplainArgs) -> Result<(), ExplainError> {
    let country = args.country.as_deref().map(str::to_ascii_uppercase);
    let region = args.region.as_deref().map(str::to_ascii_uppercase);
    let (country, region) = crate::offline::place(country.as_deref(), region.as_deref())
        .map_err(ExplainError::Country)?;
    let visit = Visit {
        url: args.url,
        method: None,
        country,
        region,
        at: args.at,
        cookies: pairs(&args.cookies, '=', "NAME=VALUE")?,
        headers: pairs(&args.headers, ':', "'Name: value'")?,
    };
    let offline = Offline::load(&args.root.root)?;
    print!("{}", explain(&offline, &visit, args.body)?);
    Ok(())
}

/// `items` split at their first `sep`, both sides trimmed.
fn pairs(
    items: &[String],
    sep: char,
    what: &'static str,
) -> Result<Vec<(String, String)>, ExplainError> {
    items
        .iter()
        .map(|i| {
            i.split_once(sep)
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| ExplainError::NotAPair {
                    item: i.clone(),
                    what,
                })
        })
        .collect()
}

/// The report for `visit`, as text.
fn explain(offline: &Offline, visit: &Visit, with_body: bool) -> Result<String, OfflineError> {
    let (response, decision) = offline.answer(visit)?;
    let mut out = String::new();
    let sites = offline.app.live.sites();
    let url = url::Url::parse(&visit.url).map_err(|_| OfflineError::Url(visit.url.clone()))?;
    match sites.resolve(url.host_str()) {
        Some(site) => {
            let _ = writeln!(
                out,
                "site: {} (version {}, locale {})",
                site.site, site.number, site.config.locale
            );
        }
        None => {
            let _ = writeln!(out, "site: none answers this host");
        }
    }
    let country = visit
        .country
        .map_or("from the geo database".to_string(), |c| c.to_string());
    let _ = writeln!(out, "country: {country}");
    match &decision {
        None => {
            let _ = writeln!(out, "rules: none apply to this site");
        }
        Some(decision) => {
            let _ = writeln!(out, "rules:");
            for trace in &decision.trace {
                let verdict = match &trace.verdict {
                    Verdict::Fired => "FIRED".to_string(),
                    Verdict::NoMatch(why) => format!("no match: {why}"),
                    Verdict::NotForThisSite => "not for this site".to_string(),
                    Verdict::Skipped(why) => format!("matched, did nothing: {why}"),
                    Verdict::NotReached => "not reached (a terminal rule fired before)".to_string(),
                };
                let o = &trace.origin;
                let _ = writeln!(
                    out,
                    "  {} [{}] {}:{}:{}: {verdict}",
                    trace.rule,
                    trace.action,
                    o.file.display(),
                    o.line,
                    o.col
                );
            }
            let outcome = match &decision.outcome {
                Outcome::Serve => match &decision.rewrite {
                    Some(to) => format!(
                        "serve {}{} (rewritten) with {} edit(s)",
                        to.site
                            .as_deref()
                            .map_or(String::new(), |s| format!("site {s} ")),
                        to.path.path,
                        decision.edits.len()
                    ),
                    None => format!("serve the page with {} edit(s)", decision.edits.len()),
                },
                Outcome::Redirect { status, location } => {
                    format!("redirect {} to {location}", status.as_u16())
                }
                Outcome::Block { status, .. } => format!("block with {}", status.as_u16()),
                Outcome::Hidden => "hidden: answered as a missing page".to_string(),
                Outcome::Proxy { url, rule, .. } => format!("proxy to {url} (rule {rule})"),
            };
            let _ = writeln!(out, "decision: {outcome}");
            for a in &decision.variants {
                let shown = if a.applied {
                    "applied"
                } else {
                    "NOT APPLIED: a transform matched nothing, its file is missing, or the page was not served"
                };
                let _ = writeln!(out, "variant: {} = {}, {shown}", a.experiment, a.variant);
            }
        }
    }
    let _ = writeln!(out, "response: {}", response.status());
    for (name, value) in response.headers() {
        let _ = writeln!(
            out,
            "  {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    if with_body {
        let _ = writeln!(out);
        out.push_str(&String::from_utf8_lossy(&body_bytes(&response)));
    }
    Ok(out)
}
