//! A site's `public/_headers`, in Netlify's format: a path pattern on a
//! line of its own, then its headers indented below it as `Name: value`;
//! `#` comments. It becomes the site's header rules, after site.toml's, so
//! the static path sends them as it sends those.

use std::path::Path;

use http::{HeaderName, HeaderValue};

use super::diagnostic::{Diagnostic, Origin};
use super::site::{path_glob, HeaderRule, PathGlobs};

/// A header of a block, with every value written for its name.
type Written = (HeaderName, Vec<String>);

/// Parses the text of a `_headers` found at `file` into header rules, one
/// per path block; or every problem, each at its `file:line:col`.
pub fn parse_headers(file: &Path, source: &str) -> Result<Vec<HeaderRule>, Vec<Diagnostic>> {
    let file = file.strip_prefix(".").unwrap_or(file);
    let at = |line: usize, text: &str, offset: usize, message: String| {
        Origin {
            file: file.to_path_buf(),
            line,
            col: text[..offset].chars().count() + 1,
        }
        .error(message)
    };
    let mut errors = Vec::new();
    // Per block: its globs and its headers, a repeated name's values joined.
    let mut blocks: Vec<(PathGlobs, Vec<Written>)> = Vec::new();
    for (index, text) in source.split('\n').enumerate() {
        let line = index + 1;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let offset = text.len() - text.trim_start().len();
        if offset == 0 {
            match pattern(trimmed) {
                Ok(globs) => blocks.push((globs, Vec::new())),
                Err(e) => errors.push(at(line, text, 0, e)),
            }
            continue;
        }
        let Some((_, headers)) = blocks.last_mut() else {
            errors.push(at(
                line,
                text,
                offset,
                "a header before any path: start a block with a path like /* on a line of its own"
                    .into(),
            ));
            continue;
        };
        let Some((name, value)) = trimmed.split_once(':') else {
            errors.push(at(
                line,
                text,
                offset,
                format!("`{trimmed}` is not a header like `Name: value`"),
            ));
            continue;
        };
        let Ok(name) = HeaderName::try_from(name.trim()) else {
            errors.push(at(
                line,
                text,
                offset,
                format!("`{}` is not a valid header name", name.trim()),
            ));
            continue;
        };
        if name.as_str() == "basic-auth" {
            errors.push(at(
                line,
                text,
                offset,
                "`Basic-Auth` is not supported: outpost does not ask for passwords".into(),
            ));
            continue;
        }
        let value = value.trim();
        if HeaderValue::try_from(value).is_err() {
            let col = offset + trimmed.find(':').unwrap_or(0) + 1;
            errors.push(at(line, text, col, "not a valid header value".into()));
            continue;
        }
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_string()),
            None => headers.push((name, vec![value.to_string()])),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(blocks
        .into_iter()
        .map(|(glob, headers)| HeaderRule {
            glob,
            headers: headers
                .into_iter()
                .map(|(name, values)| {
                    let value = HeaderValue::try_from(values.join(", "))
                        .expect("valid values joined by `, ` stay valid");
                    (name, value)
                })
                .collect(),
        })
        .collect())
}

/// A block's path: `*` matches anything (slashes too), `:name` one
/// segment; the rest is literal.
fn pattern(text: &str) -> Result<PathGlobs, String> {
    if text.contains("://") {
        return Err(format!(
            "`{text}`: a path with a host is not supported: a site's hosts are in its site.toml; write the path"
        ));
    }
    if !text.starts_with('/') {
        return Err(format!(
            "`{text}` is not a path starting with `/` (headers are indented below their path)"
        ));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!(
            "`{text}`: a path has no spaces (write them as %20)"
        ));
    }
    let mut glob = String::with_capacity(text.len() + 8);
    let segments: Vec<&str> = text.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            glob.push('/');
        }
        if *segment == "*" && i + 1 == segments.len() {
            glob.push_str("**");
        } else if segment.starts_with(':') && segment.len() > 1 {
            glob.push('*');
        } else {
            for c in segment.chars() {
                match c {
                    '*' => glob.push('*'),
                    '?' | '[' | ']' | '{' | '}' | '\\' | '!' => {
                        glob.push('\\');
                        glob.push(c);
                    }
                    c => glob.push(c),
                }
            }
        }
    }
    path_glob(&glob)
        .and_then(|g| PathGlobs::new(vec![g]))
        .map_err(|e| format!("`{text}` is not a path pattern: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<HeaderRule>, Vec<Diagnostic>> {
        parse_headers(Path::new("sites/x/public/_headers"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect()
    }

    #[test]
    fn blocks_of_headers_by_path() {
        let rules = parse(
            "# security\n/*\n  X-Frame-Options: DENY\n  Link: </a.css>; rel=preload\n  Link: </b.js>; rel=preload\n\n\
             /team/:slug\n\tCache-Control: max-age=60\n/assets/*.css\n  Cache-Control: immutable\n/exact.html\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].glob.is_match("/") && rules[0].glob.is_match("/a/b/c.html"));
        let link = rules[0].headers.iter().find(|(n, _)| n == "link").unwrap();
        assert_eq!(link.1, "</a.css>; rel=preload, </b.js>; rel=preload");
        assert!(rules[1].glob.is_match("/team/ana") && !rules[1].glob.is_match("/team/ana/x"));
        assert!(
            rules[2].glob.is_match("/assets/site.css")
                && !rules[2].glob.is_match("/assets/a/site.css")
        );
        assert!(rules[3].glob.is_match("/exact.html") && rules[3].headers.is_empty());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn every_error_names_its_place() {
        assert_eq!(
            errors("  X-A: b\nteam\n/a b\nhttps://x.example/*\n/ok\n  no colon\n  Bad Name: x\n  X-A: \u{7f}\n  Basic-Auth: u:p\n"),
            [
                "1:3: a header before any path: start a block with a path like /* on a line of its own",
                "2:1: `team` is not a path starting with `/` (headers are indented below their path)",
                "3:1: `/a b`: a path has no spaces (write them as %20)",
                "4:1: `https://x.example/*`: a path with a host is not supported: a site's hosts are in its site.toml; write the path",
                "6:3: `no colon` is not a header like `Name: value`",
                "7:3: `Bad Name` is not a valid header name",
                "8:7: not a valid header value",
                "9:3: `Basic-Auth` is not supported: outpost does not ask for passwords",
            ]
        );
    }
}
