//! A `to` value (of redirect, rewrite and proxy): a path or an http(s)
//! URL with placeholders, split once at load. `{path}` and `{query}` are
//! the request's; `{name}` is what the rule's `when.path` captured.
//!
//! Placeholders may only stand after the host, and a filled value is
//! checked again, so a request can never make a `to` name another host.

use std::sync::Arc;

use crate::context::RequestContext;
use crate::rules::route::Captures;

/// Bytes a path must not carry as they are in a URL.
const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
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

/// A piece of a `to`.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `{path}`, percent-encoded.
    Path,
    /// `{query}`, as the request sent it.
    Query,
    /// `{name}`: a capture of `when.path`, percent-encoded.
    Capture(Arc<str>),
}

/// A checked `to`.
#[derive(Debug)]
pub struct To {
    parts: Vec<Part>,
    /// The URL's host; `None` for a path on the site.
    host: Option<String>,
}

impl To {
    /// Checks a `to`, whose braces may name `{path}`, `{query}` or one of
    /// `captures`; the error says what is wrong.
    pub fn parse(to: &str, captures: &[&str]) -> Result<To, String> {
        let parts = split(to, captures)?;
        let starts_with_path = matches!(parts.first(), Some(Part::Path));
        if to.starts_with('/') || starts_with_path {
            if to.starts_with("//") || to.starts_with("/\\") {
                return Err("a path must not start with `//`: that names another host".into());
            }
            return Ok(To { parts, host: None });
        }
        let Some((scheme, rest)) = to.split_once("://") else {
            return Err("`to` must be a path starting with `/` or an http(s) URL".into());
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        let authority = rest.split(['/', '?', '#', '{']).next().unwrap_or("");
        // `{path}` always starts with `/`, so it may follow the host.
        let after = &rest[authority.len()..];
        if authority.is_empty() || (after.starts_with('{') && !after.starts_with("{path}")) {
            return Err(
                "placeholders may only appear in the path or query, never in the host".into(),
            );
        }
        let sample = format!("{scheme}://{authority}/");
        let url = url::Url::parse(&sample).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        Ok(To {
            parts,
            host: Some(host),
        })
    }

    /// The host of a URL; `None` for a path on the site.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The value for this request; an error when filling it would leave
    /// its host (or, for a path, name a host).
    pub fn fill(&self, ctx: &RequestContext<'_>, captures: &Captures) -> Result<String, String> {
        let mut filled = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => filled.push_str(t),
                // The path is decoded: encode it again.
                Part::Path => {
                    filled.extend(percent_encoding::utf8_percent_encode(&ctx.path.path, PATH))
                }
                Part::Query => filled.push_str(ctx.raw_query.unwrap_or("")),
                Part::Capture(name) => {
                    let value = captures.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                    filled.extend(percent_encoding::utf8_percent_encode(
                        value.map_or("", String::as_str),
                        PATH,
                    ))
                }
            }
        }
        // An empty placeholder leaves `?&` or a trailing `?`/`&`: tidied in
        // place, with no copy of the value.
        while let Some(at) = filled.find("?&") {
            filled.remove(at + 1);
        }
        while self.host.is_none() && filled.starts_with("//") {
            filled.remove(0);
        }
        filled.truncate(filled.trim_end_matches(['?', '&']).len());
        match &self.host {
            None if filled.starts_with("/\\") || !filled.starts_with('/') => {
                Err("the filled path would name another host".into())
            }
            None => Ok(filled),
            Some(host) => match url::Url::parse(&filled) {
                Ok(u) if u.host_str() == Some(host) => Ok(filled),
                _ => Err("the filled URL would leave its host".into()),
            },
        }
    }
}

/// Splits `to` into text and placeholders.
fn split(to: &str, captures: &[&str]) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = to;
    while let Some(c) = rest.chars().next() {
        if c == '}' {
            return Err("`}` without `{` (write a literal brace as %7B or %7D)".into());
        }
        if c != '{' {
            text.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let Some(end) = rest.find('}') else {
            return Err(format!(
                "`{rest}` is not a placeholder (write a literal brace as %7B or %7D)"
            ));
        };
        let name = &rest[1..end];
        let part = match name {
            "path" => Part::Path,
            "query" => Part::Query,
            _ if captures.contains(&name) => Part::Capture(name.into()),
            _ => return Err(unknown(name, captures)),
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
        rest = &rest[end + 1..];
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// Why `{name}` is not a placeholder, with the closest one.
fn unknown(name: &str, captures: &[&str]) -> String {
    let mut known = vec!["path", "query"];
    known.extend_from_slice(captures);
    let hint = crate::config::closest(name, &known)
        .map(|c| format!(", did you mean `{{{c}}}`?"))
        .unwrap_or_default();
    let listed: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
    let captures_note = if captures.is_empty() {
        "; captures come from `:name` or a final `/**` in `when.path`"
    } else {
        ""
    };
    format!(
        "`{{{name}}}` is not a placeholder{hint} (`to` knows {}{captures_note}; write a literal brace as %7B or %7D)",
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert!(To::parse("/it{path}", &[]).unwrap().host().is_none());
        let url = To::parse("https://example.it{path}?{query}", &[]).unwrap();
        assert_eq!(url.host(), Some("example.it"));
        assert!(To::parse("//evil.com{path}", &[]).is_err());
        assert!(To::parse("https://{path}", &[]).is_err());
        assert!(To::parse("https://{slug}.example.com/", &["slug"]).is_err());
        assert!(To::parse("https://a{slug}.example.com/", &["slug"]).is_err());
        assert!(To::parse("javascript:alert(1)", &[]).is_err());
        assert!(To::parse("example.com/x", &[]).is_err());
        assert!(To::parse("/it?q={lang}", &[]).is_err());
        assert!(To::parse("/it}", &[]).is_err());
        assert!(To::parse("/it{", &[]).is_err());
        assert!(To::parse("https://api.example.com/odds/{splat}", &["splat"]).is_ok());
    }

    #[test]
    fn unknown_placeholders_are_named_with_a_hint() {
        let typo = To::parse("/it{pth}", &[]).unwrap_err();
        assert!(
            typo.starts_with("`{pth}` is not a placeholder, did you mean `{path}`?"),
            "{typo}"
        );
        let capture = To::parse("/teams/{slg}", &["slug"]).unwrap_err();
        assert!(
            capture.starts_with("`{slg}` is not a placeholder, did you mean `{slug}`?"),
            "{capture}"
        );
        assert!(capture.contains("{path}, {query}, {slug}"), "{capture}");
    }

    #[test]
    fn parts_split_once() {
        assert_eq!(
            split("/new{path}?{query}&a=b", &[]).unwrap(),
            vec![
                Part::Text("/new".into()),
                Part::Path,
                Part::Text("?".into()),
                Part::Query,
                Part::Text("&a=b".into()),
            ]
        );
        assert_eq!(
            split("/t/{slug}.html", &["slug"]).unwrap(),
            vec![
                Part::Text("/t/".into()),
                Part::Capture("slug".into()),
                Part::Text(".html".into()),
            ]
        );
    }
}
