//! `fragment`: fill a selector with a template rendered from JSON fetched at
//! `source`. The source's scheme, host and path are fixed in the rule;
//! request values may appear in its query string only, URL-encoded.
//! Fetching, caching and timing are the transform stage's (`fragments.rs`);
//! the rule only says what to fetch and how patient to be.

use std::sync::Arc;

use lol_html::Selector;
use serde::Deserialize;
use toml::Spanned;

use super::decision::{Applied, Decision};
pub use super::decision::{Needed, OnError};
use super::kind::{ActionKind, Compiling, Firing, TemplateExtra};
use crate::context::RequestContext;
use crate::transform::Timing;

/// A value of the request placed in the source's query string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Country,
    Language,
    Path,
    Host,
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Value),
}

/// A source URL with placeholders in its query string.
#[derive(Debug, Clone)]
pub struct Source {
    parts: Vec<Part>,
}

impl Source {
    /// Checks a `source`: http(s), and placeholders only after `?`.
    pub fn parse(text: &str) -> Result<Source, String> {
        let (before_query, _) = text.split_once('?').unwrap_or((text, ""));
        if before_query.contains('{') {
            return Err(
                "request values may appear in the query string only, never in the host or path"
                    .into(),
            );
        }
        let url = url::Url::parse(before_query).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("the source must be an http:// or https:// URL with a host".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            parts.push(Part::Literal(rest[..open].to_string()));
            let close = rest[open..].find('}').ok_or("unclosed `{` in source")? + open;
            let name = &rest[open + 1..close];
            let value = match name {
                "country" => Value::Country,
                "language" => Value::Language,
                "path" => Value::Path,
                "host" => Value::Host,
                n => match n.strip_prefix("query.") {
                    Some(q) if !q.is_empty() => Value::Query(q.to_string()),
                    _ => return Err(format!("unknown placeholder `{{{name}}}` (use country, language, path, host or query.NAME)")),
                },
            };
            parts.push(Part::Value(value));
            rest = &rest[close + 1..];
        }
        parts.push(Part::Literal(rest.to_string()));
        Ok(Source { parts })
    }

    /// The URL for this request, values URL-encoded.
    pub fn url(&self, ctx: &RequestContext<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Value(v) => {
                    let value = match v {
                        Value::Country => ctx.country.as_str(),
                        Value::Language => ctx.languages.first().map_or("", String::as_str),
                        Value::Path => &ctx.path.path,
                        Value::Host => ctx.host,
                        Value::Query(name) => ctx.query_values(name).next().unwrap_or(""),
                    };
                    out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
                }
            }
        }
        out
    }
}

#[derive(Debug)]
pub struct Fragment {
    pub selector: Arc<Selector>,
    pub template: Arc<str>,
    pub source: Source,
    pub timing: Timing,
    pub on_error: OnError,
}

#[derive(Debug, Deserialize)]
pub struct RawFragment {
    selector: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    stale_for: Option<Spanned<String>>,
    on_error: Option<Spanned<String>>,
}

impl ActionKind for Fragment {
    const NAME: &'static str = "fragment";
    const READS_VISITOR: bool = true;
    type Raw = RawFragment;

    fn compile(raw: RawFragment, cx: &mut Compiling<'_>) -> Option<Fragment> {
        let (Some(source), Some(_), Some(_)) = (&raw.source, &raw.selector, &raw.template) else {
            cx.missing::<Self>("`source`, `selector` and `template`");
            return None;
        };
        let parsed = Source::parse(source.get_ref())
            .map_err(|e| cx.error(source.span(), e))
            .ok();
        let selector = cx.selector(&raw.selector);
        let template = cx.template(&raw.template);
        let timing = Timing {
            ttl: cx.duration(&raw.ttl, "10s"),
            timeout: cx.duration(&raw.timeout, "300ms"),
            stale_for: cx.duration(&raw.stale_for, "1h"),
        };
        let on_error = match raw
            .on_error
            .as_ref()
            .map(|o| (o.get_ref().as_str(), o.span()))
        {
            None | Some(("stale", _)) => OnError::Stale,
            Some(("empty", _)) => OnError::Empty,
            Some(("keep", _)) => OnError::Keep,
            Some((other, span)) => {
                cx.error(
                    span,
                    format!("on_error `{other}` is not one of stale, empty, keep"),
                );
                OnError::Stale
            }
        };
        Some(Fragment {
            selector: selector?,
            template: template?.into(),
            source: parsed?,
            timing,
            on_error,
        })
    }

    /// Fragments fill HTML pages only.
    fn changes_any_file(&self) -> bool {
        false
    }

    fn template(&self) -> Option<(&str, TemplateExtra)> {
        Some((&self.template, TemplateExtra::Data))
    }

    fn apply(&self, firing: Firing<'_, '_>, decision: &mut Decision) -> Applied {
        let params = firing.captures();
        let Firing {
            index,
            rule,
            request,
            ..
        } = firing;
        decision.fragments.push(Needed {
            slot: (index, 0),
            rule: rule.clone(),
            selector: self.selector.clone(),
            template: self.template.clone(),
            url: self.source.url(request.ctx),
            params,
            timing: self.timing,
            on_error: self.on_error,
        });
        decision.private = true;
        Applied::Fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert!(Source::parse(
            "https://api.example.com/scores.json?league={query.league}&c={country}"
        )
        .is_ok());
        assert!(Source::parse("http://127.0.0.1:9181/s.json").is_ok());
        assert!(Source::parse("https://{host}/x").is_err());
        assert!(Source::parse("https://api.example.com/{path}").is_err());
        assert!(Source::parse("ftp://x/y").is_err());
        assert!(Source::parse("https://a.com/x?q={nope}").is_err());
        assert!(Source::parse("https://a.com/x?q={country").is_err());
    }
}
