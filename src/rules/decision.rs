//! What evaluation sees of a request, and what the rules decide about it.

use std::ops::Range;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use lol_html::Selector;

use super::route::Captures;
use crate::config::Origin;
use crate::context::{RequestContext, SitePath};
use crate::site::Sites;
use crate::store::{Lookup, SiteVersion, StoredFile};
use crate::transform::{template_context, Edit, Snippet, Templates, Timing};

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
        page: Option<Arc<SitePath>>,
    },
    /// Answer exactly as for a missing page.
    Hidden,
    /// Answer with what `url` answers, forwarded as `rule` says.
    Proxy {
        url: String,
        rule: Arc<str>,
        upstream: Arc<super::upstream::Upstream>,
    },
}

/// What one rule did, for `explain` and the access log.
#[derive(Debug, Clone)]
pub struct Trace {
    pub rule: String,
    /// Where the rule was written (a rules file, or a `_redirects` line).
    pub origin: Origin,
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
    pub serve: Option<Arc<SitePath>>,
    /// Another path (of this site or another) served at the requested URL.
    pub rewrite: Option<Rewritten>,
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

impl<'a> Request<'a> {
    pub fn new(
        ctx: &'a RequestContext<'a>,
        site: &'a SiteVersion,
        sites: &'a Sites,
        page: Option<&'a StoredFile>,
        trace: bool,
    ) -> Request<'a> {
        Request {
            ctx,
            site,
            sites,
            page,
            trace,
        }
    }
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

    /// Renders `name` with the request's context, the rule's captures
    /// (`params`) and `extra`, whose content `identity` stands for: equal
    /// identities mean equal values. Output is remembered by everything it
    /// depends on, so a page seen before costs no template run.
    pub fn render(
        &mut self,
        name: &str,
        params: &Captures,
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
            params,
            extra.map(|(k, id, _)| (k, id)),
        ));
        if let Some(done) = self.templates.remembered(key) {
            return Ok(Snippet::rendered(key, done));
        }
        // Captures differ per rule; the rest is built once per request.
        let own;
        let base = if params.is_empty() {
            self.context
                .get_or_insert_with(|| template_context(request.ctx, request.site, &[]))
        } else {
            own = template_context(request.ctx, request.site, params);
            &own
        };
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

/// What to do when the source fails or is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The last good copy (within `stale_for`), else empty.
    Stale,
    Empty,
    /// Leave the placeholder as it is.
    Keep,
}

/// One fragment a page needs, for the transform stage to fetch and fill.
#[derive(Debug, Clone)]
pub struct Needed {
    pub slot: (usize, usize),
    pub rule: Arc<str>,
    pub selector: Arc<Selector>,
    pub template: Arc<str>,
    pub url: String,
    /// The captures of the rule's path, for its template.
    pub params: Captures,
    pub timing: Timing,
    pub on_error: OnError,
}

/// The variant a response was served in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub experiment: Arc<str>,
    pub variant: Arc<str>,
    /// Newly drawn for a new visitor: counted once, as an exposure or as
    /// not applied. Kept variants (returning visitors) and forced ones (QA)
    /// are not counted again, so exposures and conversions both count
    /// visitors.
    pub drawn: bool,
    /// Where the variant's transforms are in the decision's edits.
    pub edits: Range<usize>,
    /// The file the variant serves instead of the page.
    pub serve: Option<Arc<SitePath>>,
    /// Set once the response is made: the page went out showing the
    /// variant as written (see [`Assignment::applied_in`]).
    pub applied: bool,
    /// The Set-Cookie that keeps a new draw, for the response to take back
    /// when the page did not go out.
    pub keep: Option<HeaderValue>,
}

impl Assignment {
    /// A visitor's variant as a goal sees it: no page of its own.
    pub fn of(experiment: Arc<str>, variant: Arc<str>) -> Assignment {
        Assignment {
            experiment,
            variant,
            drawn: false,
            edits: 0..0,
            serve: None,
            applied: false,
            keep: None,
        }
    }

    /// Whether the page served shows the variant as written: its own file
    /// was served (when it names one) and every one of its transforms
    /// matched an element. `served_file` is the variant file served, if
    /// any; `matched` says per edit of the decision whether it matched
    /// (empty when the page was not rewritten).
    pub fn applied_in(&self, served_file: Option<&SitePath>, matched: &[bool]) -> bool {
        let file = self
            .serve
            .as_deref()
            .is_none_or(|own| served_file == Some(own));
        file && matched
            .get(self.edits.clone())
            .is_some_and(|m| m.iter().all(|&hit| hit))
    }
}

/// Where a rewritten request is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub site: Option<Arc<str>>,
    pub path: SitePath,
}

impl Rewritten {
    /// The page the rewrite serves, if its site has it: `/dir` is served
    /// as `/dir/` would be, since the URL cannot change.
    pub fn page<'s>(&self, request: &Request<'s>) -> Option<&'s Arc<StoredFile>> {
        let site = match &self.site {
            Some(name) => request.sites.get(name)?,
            None => request.site,
        };
        match site.lookup(&self.path) {
            Lookup::Found(file) => Some(file),
            Lookup::AddSlash => {
                let dir = SitePath::parse(&format!("{}/", self.path.path)).ok()?;
                match site.lookup(&dir) {
                    Lookup::Found(file) => Some(file),
                    _ => None,
                }
            }
            Lookup::Missing => None,
        }
    }
}
