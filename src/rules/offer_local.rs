//! `offer-local`: a visitor whose country belongs to another site of this
//! site's group is offered that site, at the equivalent page: the page's own
//! hreflang alternate for that locale, else the same path there, else that
//! site's home. As a banner, or (`mode = "redirect"`) a redirect that
//! well-known crawlers never get.
//!
//! `?outpost_stay=1` sets a 30-day cookie that stops the offer and redirects
//! to the same URL without the parameter.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use lol_html::Selector;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{identity, Applied, Decision, Outcome, Request};
use super::kind::{ActionKind, Compiling, Firing, TemplateExtra};
use super::redirect::{exact_host, url_on, REDIRECTS};
use crate::store::{Lookup, SiteVersion};
use crate::transform::{Edit, Op, Place, OFFER_TEMPLATE};

pub const STAY_PARAM: &str = "outpost_stay";
const STAY_COOKIE: &str = "outpost_stay=1; Max-Age=2592000; Path=/; SameSite=Lax";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Banner,
    Redirect,
}

#[derive(Debug)]
pub struct OfferLocal {
    /// `None`: the built-in banner.
    pub template: Option<String>,
    /// `None`: the start of `<body>`.
    pub selector: Option<Arc<Selector>>,
    pub mode: Mode,
    pub status: StatusCode,
}

#[derive(Debug, Deserialize)]
pub struct RawOfferLocal {
    template: Option<Spanned<String>>,
    selector: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    status: Option<Spanned<u16>>,
}

impl ActionKind for OfferLocal {
    const NAME: &'static str = "offer-local";
    const READS_VISITOR: bool = true;
    type Raw = RawOfferLocal;

    fn compile(raw: RawOfferLocal, cx: &mut Compiling<'_>) -> Option<OfferLocal> {
        let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("banner", _)) => Mode::Banner,
            Some(("redirect", _)) => Mode::Redirect,
            Some((other, span)) => {
                cx.error(
                    span,
                    format!("mode `{other}` is not `banner` or `redirect`"),
                );
                Mode::Banner
            }
        };
        Some(OfferLocal {
            template: cx.template(&raw.template),
            selector: cx.selector(&raw.selector),
            mode,
            status: cx.status(&raw.status, &REDIRECTS, 302),
        })
    }

    /// A banner goes into HTML pages only; a redirect answers for any file.
    fn changes_any_file(&self) -> bool {
        self.mode == Mode::Redirect
    }

    fn template(&self) -> Option<(&str, TemplateExtra)> {
        let name = self.template.as_deref().unwrap_or(OFFER_TEMPLATE);
        Some((name, TemplateExtra::Offer))
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let params = firing.captures();
        let Firing {
            index,
            request,
            render,
            ..
        } = firing;
        let ctx = request.ctx;
        if ctx.query_values(STAY_PARAM).any(|v| v == "1") {
            let rest: Vec<(&str, &str)> = ctx
                .query
                .iter()
                .filter(|(k, _)| k != STAY_PARAM)
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .collect();
            let mut location = ctx.path.path.clone();
            if !rest.is_empty() {
                location.push('?');
                location.push_str(
                    &url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(rest)
                        .finish(),
                );
            }
            decision.cookies.push(HeaderValue::from_static(STAY_COOKIE));
            decision.outcome = Outcome::Redirect {
                status: StatusCode::FOUND,
                location,
            };
            decision.private = true;
            return Applied::Fired;
        }
        if ctx.cookie(STAY_PARAM) == Some("1") {
            return Applied::Skipped("the visitor chose to stay".into());
        }
        let Some(target) = target_site(request) else {
            return Applied::Skipped(format!("no other site of the group serves {}", ctx.country));
        };
        let Some(host) = exact_host(target) else {
            return Applied::Skipped(format!(
                "site `{}` has no exact host to link to",
                target.site
            ));
        };
        decision.private = true;
        if self.mode == Mode::Redirect {
            if is_crawler(ctx.headers.get(http::header::USER_AGENT)) {
                return Applied::Skipped("crawlers are never redirected".into());
            }
            decision.outcome = Outcome::Redirect {
                status: self.status,
                location: equivalent_url(request, target, host),
            };
            return Applied::Fired;
        }
        let offer = || {
            offer_values(
                request,
                target,
                host,
                &equivalent_url(request, target, host),
            )
        };
        let template = self.template.as_deref().unwrap_or(OFFER_TEMPLATE);
        // The offer follows from the target's version and the request's
        // scheme (the page, path and host are in the renderer's key), so a
        // remembered banner costs no URL building.
        let identity = identity((&target.site, target.number, ctx.scheme));
        let html = match render.render(template, &params, Some(("offer", identity, &offer))) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(template, error = %e, "offer template failed; no banner");
                return Applied::Skipped(format!("template {template} failed: {e}"));
            }
        };
        let place = match &self.selector {
            Some(sel) => Place::Selector(sel.clone()),
            None => Place::BodyStart,
        };
        decision.edits.push(Edit {
            slot: (index, 0),
            place,
            op: Op::Prepend(html),
        });
        Applied::Fired
    }
}

/// Another site of this site's group whose audience includes the visitor.
fn target_site<'a>(request: &Request<'a>) -> Option<&'a Arc<SiteVersion>> {
    let site = request.site;
    let group = site.config.group.as_deref()?;
    let country = request.ctx.country.as_str();
    if site.config.countries.iter().any(|c| c == country) {
        return None;
    }
    request
        .sites
        .iter()
        .filter(|s| s.site != site.site && s.config.group.as_deref() == Some(group))
        .filter(|s| s.config.countries.iter().any(|c| c == country))
        .min_by(|a, b| a.site.cmp(&b.site))
}

/// The page on `target` (at `host`) equivalent to this one.
fn equivalent_url(request: &Request<'_>, target: &SiteVersion, host: &str) -> String {
    let locale = &target.config.locale;
    if let Some(page) = request.page {
        let exact = page
            .alternates
            .iter()
            .find(|(lang, _)| lang.eq_ignore_ascii_case(locale));
        let by_language = || {
            page.alternates
                .iter()
                .find(|(lang, _)| lang.split('-').next() == Some(target.config.language.as_str()))
        };
        if let Some((_, href)) = exact.or_else(by_language) {
            return href.clone();
        }
    }
    let path = &request.ctx.path;
    let same_path_exists = matches!(target.lookup(path), Lookup::Found(_));
    let path = if same_path_exists {
        path.path.as_str()
    } else {
        "/"
    };
    url_on(request.ctx, host, path, None)
}

/// What the banner template sees as `offer`, in the target site's language.
fn offer_values(
    request: &Request<'_>,
    target: &SiteVersion,
    host: &str,
    url: &str,
) -> serde_json::Value {
    let ctx = request.ctx;
    let mut stay = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in ctx.query.iter().filter(|(k, _)| k != STAY_PARAM) {
        stay.append_pair(k, v);
    }
    stay.append_pair(STAY_PARAM, "1");
    let words = &target.config.offer;
    let country = ctx.country.as_str();
    serde_json::json!({
        "url": url,
        "site": target.site,
        "locale": target.config.locale,
        "country": country,
        "stay_url": format!("{}?{}", ctx.path.path, stay.finish()),
        "message": words.message.fill(country, host),
        "go": words.go.fill(country, host),
        "stay": words.stay.fill(country, host),
        "label": words.label.fill(country, host),
        "lang": words.lang,
        "dir": if words.right_to_left { "rtl" } else { "ltr" },
    })
}

/// `offer` with a sample value for every key [`offer_values`] gives, for
/// `check` to render banner templates as a request would.
pub fn sample_offer() -> serde_json::Value {
    serde_json::json!({
        "url": "https://example.it/",
        "site": "example-it",
        "locale": "it-IT",
        "country": "IT",
        "stay_url": "/?outpost_stay=1",
        "message": "Questa pagina è disponibile anche sul nostro sito per il tuo paese.",
        "go": "Vai al sito italiano",
        "stay": "Resta qui",
        "label": "Sito locale",
        "lang": "it-IT",
        "dir": "ltr",
    })
}

/// Crawlers (see [`crawler`](crate::context::crawler)) must see every
/// site as it is.
fn is_crawler(user_agent: Option<&HeaderValue>) -> bool {
    user_agent.is_some_and(|ua| crate::context::crawler::is_crawler(ua.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawlers() {
        let ua = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_crawler(Some(&ua(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        ))));
        assert!(is_crawler(Some(&ua(
            "Mozilla/5.0 (compatible; bingbot/2.0)"
        ))));
        assert!(!is_crawler(Some(&ua(
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"
        ))));
        assert!(!is_crawler(None));
    }
}
