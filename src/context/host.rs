//! Which host a request is for: the request target's authority when it has
//! one (absolute form, HTTP/2's `:authority`), else the one Host header
//! (RFC 9112 §3.2, §3.2.2). A host that is not a name or address with an
//! optional valid port is refused, so it is never copied into a URL.

use http::{header, HeaderMap, Uri};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("more than one Host header")]
    Repeated,
    #[error("the host is not a host name or address with a valid port")]
    Invalid,
}

impl HostError {
    /// The body of the `400` that answers it.
    pub fn answer(self) -> &'static str {
        match self {
            HostError::Repeated => "400 Bad Request: more than one Host header\n",
            HostError::Invalid => "400 Bad Request: invalid host\n",
        }
    }
}

/// The host a request names, with any port; `None` when it names none.
pub fn request_host<'r>(
    uri: &'r Uri,
    headers: &'r HeaderMap,
) -> Result<Option<&'r str>, HostError> {
    let mut lines = headers.get_all(header::HOST).iter();
    let line = lines.next();
    if lines.next().is_some() {
        return Err(HostError::Repeated);
    }
    let host = match (uri.authority(), line) {
        (Some(target), _) => target.as_str(),
        (None, Some(line)) => line.to_str().map_err(|_| HostError::Invalid)?,
        (None, None) => return Ok(None),
    };
    if valid(host) {
        Ok(Some(host))
    } else {
        Err(HostError::Invalid)
    }
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, or empty. The port may be
/// empty (RFC 3986), else it is 1 to 65535.
fn valid(host: &str) -> bool {
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let Some((literal, after)) = rest.split_once(']') else {
                return false;
            };
            let literal_ok = !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            let port = match after {
                "" => None,
                after => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (literal_ok, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (!name.is_empty() && name.bytes().all(name_byte), Some(port)),
            None => (host.bytes().all(name_byte), None),
        },
    };
    name_ok && port.is_none_or(|p| p.is_empty() || valid_port(p))
}

/// RFC 3986's reg-name: unreserved, percent-encoded and sub-delims. A
/// table, since every request's host goes through it byte by byte.
fn name_byte(b: u8) -> bool {
    const NAME: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric();
            b += 1;
        }
        let extra = b"-._~%!$&'()*+,;=";
        let mut i = 0;
        while i < extra.len() {
            table[extra[i] as usize] = true;
            i += 1;
        }
        table
    };
    NAME[b as usize]
}

fn valid_port(port: &str) -> bool {
    port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && matches!(port.parse::<u16>(), Ok(1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(target: &str, lines: &[&str]) -> Result<Option<String>, HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::HOST, line.parse().unwrap());
        }
        request_host(&uri, &headers).map(|h| h.map(str::to_string))
    }

    #[test]
    fn the_target_decides_over_the_host_header() {
        assert_eq!(host("/x", &["a.example"]), Ok(Some("a.example".into())));
        assert_eq!(host("/x", &[]), Ok(None));
        assert_eq!(
            host("http://b.example:8080/x", &["a.example"]),
            Ok(Some("b.example:8080".into()))
        );
        assert_eq!(
            host("http://b.example/x", &[]),
            Ok(Some("b.example".into()))
        );
        assert_eq!(
            host("http://user@b.example/x", &["a.example"]),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn two_host_lines_are_refused() {
        assert_eq!(
            host("/", &["a.example", "b.example"]),
            Err(HostError::Repeated)
        );
        assert_eq!(
            host("/", &["a.example", "a.example"]),
            Err(HostError::Repeated)
        );
        assert_eq!(
            host("http://a.example/", &["a.example", "a.example"]),
            Err(HostError::Repeated)
        );
    }

    #[test]
    fn only_names_with_valid_ports_pass() {
        for good in [
            "a.example",
            "a.example:8080",
            "a.example:65535",
            "a.example:",
            "A-b_c.example.",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::1]:443",
            "",
        ] {
            assert!(valid(good), "{good}");
        }
        for bad in [
            "x:99999",
            "x:65536",
            "x:0",
            "x:abc",
            "x:80:80",
            "x:-1",
            "x:123456",
            ":80",
            "a b",
            "a/b",
            "a@b",
            "a\\b",
            "[::1",
            "[::1]x",
            "[::1]:99999",
            "[]",
            "[x::1]",
            "::1",
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
