//! `proxy` (terminal): forwards the request to an upstream URL (`to`, an
//! http(s) URL whose placeholders stand after its host) and answers with
//! what the upstream answers. The forwarding itself is `crate::proxy`'s;
//! this is what a rule says about it, checked once at load.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision, Outcome};
use super::kind::{ActionKind, Compiling, Firing};
use super::to::To;
pub use super::upstream::{Upstream, HOP_BY_HOP};

#[derive(Debug)]
pub struct Proxy {
    /// An http(s) URL: `To::parse` checked it has a host.
    to: To,
    /// Shared by every request the rule forwards.
    upstream: Arc<Upstream>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawProxy {
    pub(super) to: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) cache: Option<Spanned<String>>,
    pub(super) stale_for: Option<Spanned<String>>,
    pub(super) stale_if_error: Option<Spanned<String>>,
    pub(super) headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

impl ActionKind for Proxy {
    const NAME: &'static str = "proxy";
    type Raw = RawProxy;

    fn compile(raw: RawProxy, cx: &mut Compiling<'_>) -> Option<Proxy> {
        let timeout = cx.duration(&raw.timeout, "10s");
        if timeout.is_zero() {
            let span = raw.timeout.as_ref().map_or(0..0, Spanned::span);
            cx.error(span, "`timeout` must be longer than 0s");
        }
        let cache = raw.cache.is_some().then(|| cx.duration(&raw.cache, "0s"));
        let stale_for = cx.duration(&raw.stale_for, "0s");
        let stale_if_error = match &raw.stale_if_error {
            Some(_) => cx.duration(&raw.stale_if_error, "0s"),
            None => stale_for,
        };
        if cache.is_none() {
            for (key, raw) in [
                ("stale_for", &raw.stale_for),
                ("stale_if_error", &raw.stale_if_error),
            ] {
                if let Some(raw) = raw {
                    let message = format!("`{key}` needs `cache`: without it nothing is kept");
                    cx.error(raw.span(), message);
                }
            }
        }
        let headers = upstream_headers(raw.headers.as_ref(), cx);
        let Some(to) = &raw.to else {
            cx.missing::<Self>("`to`, the upstream URL");
            return None;
        };
        let to = match To::parse(to.get_ref(), &cx.when.capture_names()) {
            Ok(url) if url.host().is_some() => url,
            Ok(_) => {
                let message =
                    "`to` of a proxy is an http or https URL, like https://api.example.com{path}";
                cx.error(to.span(), message);
                return None;
            }
            Err(e) => {
                cx.error(to.span(), e);
                return None;
            }
        };
        let upstream = Arc::new(Upstream {
            timeout,
            cache,
            stale_for,
            stale_if_error,
            headers,
        });
        Some(Proxy { to, upstream })
    }

    /// It answers for whatever file the path names.
    fn changes_any_file(&self) -> bool {
        true
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let url = match self.to.fill(firing.request.ctx, &firing.captures()) {
            Ok(url) => url,
            Err(why) => return Applied::Skipped(why),
        };
        decision.outcome = Outcome::Proxy {
            url,
            rule: firing.rule.clone(),
            upstream: self.upstream.clone(),
        };
        Applied::Fired
    }
}

/// The rule's `headers`, checked: no header about the connection, which
/// the proxy manages itself.
fn upstream_headers(
    raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
    cx: &mut Compiling<'_>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in raw.into_iter().flatten() {
        let parsed = (
            HeaderName::try_from(name.get_ref().as_str()),
            HeaderValue::try_from(value.get_ref().as_str()),
        );
        match parsed {
            (Ok(n), _) if HOP_BY_HOP.contains(&n.as_str()) || n == http::header::CONTENT_LENGTH => {
                let message = format!("`{n}` is about one connection: the proxy sets its own");
                cx.error(name.span(), message);
            }
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(_), _) => {
                let message = format!("`{}` is not a header name", name.get_ref());
                cx.error(name.span(), message);
            }
            (_, Err(_)) => cx.error(value.span(), "not a valid header value"),
        }
    }
    headers
}
