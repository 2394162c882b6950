//! Evaluation: the rules for a request's site, in order, into one decision.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};

use super::fragment::Needed;
use super::variant::Assignment;
use super::Rules;
use crate::context::RequestContext;
use crate::site::Sites;
use crate::store::{SiteVersion, StoredFile};
use crate::transform::{template_context, Edit, Snippet, Templates};

/// How the request is answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Serve the page (with the decision's edits and headers).
    #[default]
    Serve,
    Redirect {
        status: StatusCode,
        location: String,
    },
    /// `page` is a path in the site whose content goes with `status`.
    Block {
        status: StatusCode,
        page: Option<String>,
    },
    /// Answer exactly as for a missing page.
    Hidden,
}

/// What one rule did, for `explain` and the access log.
#[derive(Debug, Clone)]
pub struct Trace {
    pub rule: String,
    pub action: &'static str,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fired,
    /// A condition failed; says which.
    NoMatch(String),
    NotForThisSite,
    /// Matched, but the action had nothing to do; says why.
    Skipped(String),
    /// A terminal action ended evaluation before this rule.
    NotReached,
}

/// Everything the rules decided about one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// Names of the rules that fired, in order.
    pub fired: Vec<Arc<str>>,
    pub outcome: Outcome,
    pub edits: Vec<Edit>,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    /// Set-Cookie values.
    pub cookies: Vec<HeaderValue>,
    /// The response depends on the visitor: `Cache-Control: private`.
    pub private: bool,
    /// A variant's file to serve instead of the page.
    pub serve: Option<Arc<str>>,
    /// The experiments' variants this response is in.
    pub variants: Vec<Assignment>,
    /// Conversions counted by goals.
    pub conversions: Vec<Assignment>,
    /// Fragments to fetch and fill before the page leaves.
    pub fragments: Vec<Needed>,
    pub trace: Vec<Trace>,
}

/// What evaluation can see of the request and its site.
pub struct Request<'a> {
    pub ctx: &'a RequestContext<'a>,
    pub site: &'a SiteVersion,
    pub sites: &'a Sites,
    /// The page the path found, if any.
    pub page: Option<&'a StoredFile>,
    /// Record what each rule made of the request (for `explain`).
    pub trace: bool,
}

/// Lazily built template context, shared by the rules of one request.
pub struct Render<'a> {
    request: &'a Request<'a>,
    templates: &'a Templates,
    context: Option<tera::Context>,
}

impl<'a> Render<'a> {
    pub fn new(request: &'a Request<'a>, templates: &'a Templates) -> Render<'a> {
        Render {
            request,
            templates,
            context: None,
        }
    }

    /// Renders `name` with the request's context plus `extra`, whose content
    /// `identity` stands for: equal identities mean equal values. Output is
    /// remembered by everything it depends on, so a page seen before costs
    /// no template run.
    pub fn render(
        &mut self,
        name: &str,
        extra: Option<(&str, u64, &dyn Fn() -> serde_json::Value)>,
    ) -> Result<Snippet, String> {
        let request = self.request;
        let ctx = request.ctx;
        let key = identity((
            name,
            &request.site.site,
            request.site.number,
            &ctx.path.path,
            ctx.raw_query,
            ctx.host,
            ctx.country.as_str(),
            ctx.languages.first(),
            extra.map(|(k, id, _)| (k, id)),
        ));
        if let Some(done) = self.templates.remembered(key) {
            return Ok(Snippet::rendered(key, done));
        }
        let base = self
            .context
            .get_or_insert_with(|| template_context(request.ctx, request.site));
        let result = match extra {
            Some((key, _, value)) => {
                let mut c = base.clone();
                c.insert(key, &value());
                self.templates.render(name, &c)
            }
            None => self.templates.render(name, base),
        };
        let result = result.map(|html| {
            let html: Arc<str> = html.into();
            self.templates.remember(key, html.clone());
            Snippet::rendered(key, html)
        });
        result.map_err(|e| crate::error_chain(&e, ": "))
    }
}

/// A 64-bit digest of `value`, standing for it in memo keys.
pub fn identity(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    value.hash(&mut h);
    h.finish()
}

/// What an action did with a matching request.
pub enum Applied {
    Fired,
    Skipped(String),
}

pub fn evaluate(rules: &Rules, request: &Request<'_>) -> Decision {
    let mut decision = Decision::default();
    let mut render = Render::new(request, &rules.templates);
    let site = &request.site.site;
    // Edits only change an HTML page; an asset only rules that change any
    // file can touch. A missing page counts as HTML (its URL may name one).
    let html = request.page.is_none_or(StoredFile::is_html);
    // A hidden file must answer exactly as a missing one, private or not.
    let mut private_if_missing = false;
    for (index, rule) in rules.rules.iter().enumerate() {
        let can_change = html || rule.action.changes_any_file();
        let verdict = if decision.outcome != Outcome::Serve {
            Verdict::NotReached
        } else if !rule.applies_to(site) {
            Verdict::NotForThisSite
        } else {
            match rule.when.check(request.ctx) {
                Err(miss) => {
                    // Another visitor could have matched, and so changed
                    // this response.
                    decision.private |= can_change && miss.about_the_visitor();
                    private_if_missing |= miss.about_the_visitor();
                    if !request.trace {
                        continue;
                    }
                    Verdict::NoMatch(miss.describe(request.ctx))
                }
                Ok(()) => {
                    // These actions read the visitor whatever they do.
                    let reads_visitor =
                        rule.when.about_the_visitor() || rule.action.reads_visitor();
                    private_if_missing |= reads_visitor;
                    if !can_change {
                        if !request.trace {
                            continue;
                        }
                        Verdict::Skipped("it changes HTML pages only, and this is not one".into())
                    } else {
                        decision.private |= reads_visitor;
                        let applied = rule.action.apply(
                            index,
                            &rule.name,
                            request,
                            &mut render,
                            &mut decision,
                        );
                        match applied {
                            Applied::Fired => {
                                decision.fired.push(rule.name.clone());
                                Verdict::Fired
                            }
                            Applied::Skipped(why) => Verdict::Skipped(why),
                        }
                    }
                }
            }
        };
        if !request.trace {
            continue;
        }
        decision.trace.push(Trace {
            rule: rule.name.to_string(),
            action: rule.action.name(),
            verdict,
        });
    }
    if decision.outcome == Outcome::Hidden {
        decision.private = private_if_missing;
    }
    decision
}
