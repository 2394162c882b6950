//! The request path, decoded and normalized once.
//!
//! Percent-decoding happens before `.`/`..` are resolved, so `%2e%2e/` is a
//! `..` like any other. Anything that could be read as a different path by
//! another layer is refused: NUL, backslashes, encoded slashes, invalid UTF-8
//! (overlong forms included), and `..` above the root.

/// Longest path accepted; longer ones get 414, as nginx does for huge URIs.
pub const MAX_PATH: usize = 8 * 1024;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path too long")]
    TooLong,
    #[error("bad path")]
    Invalid,
}

/// A normalized request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePath {
    /// Always starts with `/`; ends with `/` when the request's did.
    pub path: String,
}

impl SitePath {
    pub fn parse(raw: &str) -> Result<SitePath, PathError> {
        if raw.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        // Most paths need no decoding and no resolving: take them as they are.
        if is_plain(raw.as_bytes()) {
            return Ok(SitePath {
                path: raw.to_string(),
            });
        }
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(PathError::Invalid);
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        if decoded.contains(&0) || decoded.contains(&b'\\') {
            return Err(PathError::Invalid);
        }
        let decoded = String::from_utf8(decoded).map_err(|_| PathError::Invalid)?;
        if !decoded.starts_with('/') {
            return Err(PathError::Invalid);
        }
        let mut segments: Vec<&str> = Vec::new();
        for seg in decoded.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(PathError::Invalid)?;
                }
                s => segments.push(s),
            }
        }
        let dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
        let mut path = String::with_capacity(decoded.len());
        for s in &segments {
            path.push('/');
            path.push_str(s);
        }
        if dir || segments.is_empty() {
            path.push('/');
        }
        Ok(SitePath { path })
    }

    /// Whether a segment is hidden (dotfiles), except `/.well-known/`.
    pub fn is_hidden(&self) -> bool {
        self.path.as_bytes().windows(2).any(|w| w == b"/.")
            && self
                .path
                .split('/')
                .any(|s| s.starts_with('.') && s != ".well-known")
    }

    /// The path relative to public/.
    pub fn relative(&self) -> &str {
        &self.path[1..]
    }
}

/// A path already in normal form: rooted, no empty, `.` or `..` segment
/// (but a trailing `/`), nothing to decode, no backslash or NUL.
fn is_plain(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last)
            || seg == b"."
            || seg == b".."
            || seg.iter().any(|&b| matches!(b, b'%' | b'\\' | 0))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        SitePath::parse(raw).map(|p| p.path)
    }

    #[test]
    fn normalizes() {
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a//b/./c").unwrap(), "/a/b/c");
        assert_eq!(norm("/a/b/../c/").unwrap(), "/a/c/");
        assert_eq!(norm("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(norm("/caf%C3%A9.html").unwrap(), "/café.html");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn refuses_what_could_escape() {
        for raw in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a%2f..%2f..%2fetc",
            "/..%5c..%5cetc",
            "/a%00.html",
            "/%c0%ae%c0%ae/etc/passwd",
            "/a\\b",
            "relative",
        ] {
            assert_eq!(norm(raw), Err(PathError::Invalid), "{raw}");
        }
        assert_eq!(
            norm(&format!("/{}", "a".repeat(MAX_PATH))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn dotfiles_are_hidden() {
        assert!(SitePath::parse("/.git/config").unwrap().is_hidden());
        assert!(SitePath::parse("/a/.env").unwrap().is_hidden());
        assert!(!SitePath::parse("/.well-known/security.txt")
            .unwrap()
            .is_hidden());
    }
}
