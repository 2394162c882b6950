//! `redirect` (terminal): to a URL or path with `{path}` and `{query}`
//! placeholders, or to the same path on another site.
//!
//! Placeholders may only stand after the host, and the result is checked
//! again, so a request can never turn a redirect into one to another host.

use http::StatusCode;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision, Outcome};
use super::kind::{ActionKind, Compiling, Firing};
use crate::context::RequestContext;
use crate::store::SiteVersion;

/// The statuses a redirect may answer with.
pub const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// Bytes a path in a Location header must not carry as they are.
pub const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

#[derive(Debug)]
pub enum Target {
    /// A path (`/it/{path}`) or absolute URL whose host is `host`.
    Url {
        template: Vec<Part>,
        host: Option<String>,
    },
    /// The same path and query on this site.
    Site(String),
}

/// A piece of a `to` template, split once at load.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `{path}`, percent-encoded.
    Path,
    /// `{query}`, as the request sent it.
    Query,
}

fn split(to: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = to;
    while let Some(c) = rest.chars().next() {
        let placeholder = [("{path}", Part::Path), ("{query}", Part::Query)]
            .into_iter()
            .find(|(name, _)| rest.starts_with(name));
        match placeholder {
            Some((name, part)) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(part);
                rest = &rest[name.len()..];
            }
            None => {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

#[derive(Debug)]
pub struct Redirect {
    pub target: Target,
    pub status: StatusCode,
}

#[derive(Debug, Deserialize)]
pub struct RawRedirect {
    to: Option<Spanned<String>>,
    to_site: Option<Spanned<String>>,
    status: Option<Spanned<u16>>,
}

impl Target {
    /// Checks a `to` value; the error says what is wrong with it.
    pub fn parse_to(to: &str) -> Result<Target, String> {
        // Anything in braces that is not a placeholder would be sent as it
        // is: a typo like `{pth}` must not reach visitors.
        let template = split(to);
        if let Some(text) = template.iter().find_map(|p| match p {
            Part::Text(t) if t.contains(['{', '}']) => Some(t),
            _ => None,
        }) {
            let at = text.find(['{', '}']).unwrap_or(0);
            let word = text[at..]
                .split_inclusive('}')
                .next()
                .unwrap_or(&text[at..]);
            let hint = crate::config::closest(word.trim_matches(['{', '}']), &["path", "query"])
                .map(|c| format!(", did you mean `{{{c}}}`?"))
                .unwrap_or_default();
            return Err(format!(
                "`{word}` is not a placeholder{hint} (`to` knows {{path}} and {{query}}; write a literal brace as %7B or %7D)"
            ));
        }
        // `{path}` always starts with `/`.
        if to.starts_with('/') || to.starts_with("{path}") {
            if to.starts_with("//") || to.starts_with("/\\") {
                return Err("a path must not start with `//`: that names another host".into());
            }
            return Ok(Target::Url {
                template,
                host: None,
            });
        }
        let Some((scheme, rest)) = to.split_once("://") else {
            return Err("`to` must be a path starting with `/` or an http(s) URL".into());
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        // `{path}` always starts with `/`, so it may follow the host directly.
        let authority = rest.split("{path}").next().unwrap_or("");
        let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() || authority.contains('{') {
            return Err(
                "placeholders may only appear in the path or query, never in the host".into(),
            );
        }
        let sample = to.replace("{path}", "/").replace("{query}", "");
        let url = url::Url::parse(&sample).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        Ok(Target::Url {
            template,
            host: Some(host),
        })
    }
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
    const NAME: &'static str = "redirect";
    type Raw = RawRedirect;

    fn compile(raw: RawRedirect, cx: &mut Compiling<'_>) -> Option<Redirect> {
        let status = cx.status(&raw.status, &REDIRECTS, 302);
        let target = match (&raw.to, &raw.to_site) {
            (Some(to), None) => match Target::parse_to(to.get_ref()) {
                Ok(t) => t,
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
        let Firing { request, .. } = firing;
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
            Target::Url { template, host } => {
                // The path is decoded: encode it again for the Location.
                let mut filled = String::new();
                for part in template {
                    match part {
                        Part::Text(t) => filled.push_str(t),
                        Part::Path => filled
                            .extend(percent_encoding::utf8_percent_encode(&ctx.path.path, PATH)),
                        Part::Query => filled.push_str(ctx.raw_query.unwrap_or("")),
                    }
                }
                let mut filled = filled.replace("?&", "?");
                while host.is_none() && filled.starts_with("//") {
                    filled.remove(0);
                }
                let filled = filled.trim_end_matches(['?', '&']).to_string();
                match host {
                    None if filled.starts_with("//") || filled.starts_with("/\\") => {
                        return Applied::Skipped("the filled path would name another host".into())
                    }
                    None => filled,
                    Some(host) => match url::Url::parse(&filled) {
                        Ok(u) if u.host_str() == Some(host) => filled,
                        _ => return Applied::Skipped("the filled URL would leave its host".into()),
                    },
                }
            }
        };
        decision.outcome = Outcome::Redirect {
            status: self.status,
            location,
        };
        Applied::Fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            Target::parse_to("/it{path}"),
            Ok(Target::Url { host: None, .. })
        ));
        assert!(matches!(
            Target::parse_to("https://example.it{path}?{query}"),
            Ok(Target::Url { host: Some(h), .. }) if h == "example.it"
        ));
        assert!(Target::parse_to("//evil.com{path}").is_err());
        assert!(Target::parse_to("https://{path}").is_err());
        assert!(Target::parse_to("javascript:alert(1)").is_err());
        assert!(Target::parse_to("example.com/x").is_err());
        let typo = Target::parse_to("/it{pth}").unwrap_err();
        assert!(
            typo.starts_with("`{pth}` is not a placeholder, did you mean `{path}`?"),
            "{typo}"
        );
        assert!(Target::parse_to("/it?q={lang}").is_err());
        assert!(Target::parse_to("/it}").is_err());
    }

    #[test]
    fn templates_split_once() {
        assert_eq!(
            split("/new{path}?{query}&a=b"),
            vec![
                Part::Text("/new".into()),
                Part::Path,
                Part::Text("?".into()),
                Part::Query,
                Part::Text("&a=b".into()),
            ]
        );
        assert_eq!(split("{path}"), vec![Part::Path]);
    }
}
