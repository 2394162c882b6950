//! `redirect` (terminal): to a URL or path with placeholders (see
//! [`To`]), or to the same path on another site.

use http::StatusCode;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision, Outcome};
use super::kind::{ActionKind, Compiling, Firing};
use super::to::To;
use crate::context::RequestContext;
use crate::store::SiteVersion;

/// The statuses a redirect may answer with.
pub const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

#[derive(Debug)]
pub enum Target {
    /// A path or absolute URL, with placeholders.
    Url(To),
    /// The same path and query on this site.
    Site(String),
}

#[derive(Debug)]
pub struct Redirect {
    pub target: Target,
    pub status: StatusCode,
}

#[derive(Debug, Deserialize)]
pub struct RawRedirect {
    pub(super) to: Option<Spanned<String>>,
    pub(super) to_site: Option<Spanned<String>>,
    pub(super) status: Option<Spanned<u16>>,
}

/// The first host a site claims exactly (not by `*.domain`): the one links
/// to it name.
pub fn exact_host(site: &SiteVersion) -> Option<&str> {
    site.config.hosts.iter().find_map(|(h, _)| match h {
        crate::config::HostPattern::Exact(h) => Some(h.as_str()),
        crate::config::HostPattern::Wildcard(_) => None,
    })
}

/// A URL on `host` for `path` and `query`, with the request's scheme and
/// the port the visitor used.
pub fn url_on(ctx: &RequestContext<'_>, host: &str, path: &str, query: Option<&str>) -> String {
    let mut url = String::with_capacity(host.len() + path.len() + 32);
    url.push_str(ctx.scheme);
    url.push_str("://");
    url.push_str(host);
    if let Some(port) = ctx.port() {
        url.push(':');
        url.push_str(port);
    }
    url.push_str(path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl ActionKind for Redirect {
    const TERMINAL: bool = true;
    const NAME: &'static str = "redirect";
    type Raw = RawRedirect;

    fn compile(raw: RawRedirect, cx: &mut Compiling<'_>) -> Option<Redirect> {
        let status = cx.status(&raw.status, &REDIRECTS, 302);
        let target = match (&raw.to, &raw.to_site) {
            (Some(to), None) => match To::parse(to.get_ref(), &cx.when.capture_names()) {
                Ok(t) => Target::Url(t),
                Err(e) => {
                    cx.error(to.span(), e);
                    return None;
                }
            },
            (None, Some(site)) => {
                if !cx.sites.contains(site.get_ref()) {
                    cx.error(site.span(), format!("no site named `{}`", site.get_ref()));
                }
                Target::Site(site.get_ref().clone())
            }
            _ => {
                cx.missing::<Self>("exactly one of `to` and `to_site`");
                return None;
            }
        };
        Some(Redirect { target, status })
    }

    /// A redirect answers for whatever file the path names.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let request = firing.request;
        let ctx = request.ctx;
        let location = match &self.target {
            Target::Site(site) => match request
                .sites
                .get(site)
                .and_then(|target| exact_host(target))
                .map(|host| url_on(ctx, host, &ctx.path.path, ctx.raw_query))
            {
                Some(url) => url,
                None => {
                    return Applied::Skipped(format!(
                        "site `{site}` is not served or has no exact host"
                    ))
                }
            },
            Target::Url(to) => match to.fill(ctx, &firing.captures()) {
                Ok(url) => url,
                Err(why) => return Applied::Skipped(why),
            },
        };
        decision.outcome = Outcome::Redirect {
            status: self.status,
            location,
        };
        Applied::Fired
    }
}
