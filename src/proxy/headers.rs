//! Which headers cross the proxy: never those about one connection
//! (hop-by-hop, RFC 9110 §7.6.1) in either direction, and on the way up
//! the `X-Forwarded-*` that tell the upstream who asked and how.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::context::RequestContext;
use crate::rules::proxy::HOP_BY_HOP;

/// The header names a comma-separated list header (`Connection`, `Vary`)
/// gives, over all its lines.
pub fn named_in(headers: &HeaderMap, list: HeaderName) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(list)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
}

/// Drops the headers about this connection: those `Connection` names, then
/// the fixed ones.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = named_in(headers, header::CONNECTION).collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Who sent the request to outpost.
pub struct Via {
    pub peer: IpAddr,
    /// The peer is a trusted proxy: its `X-Forwarded-For` is kept.
    pub trusted: bool,
}

/// The headers the upstream gets: the visitor's, less those about the
/// connection and its framing (the client frames the body it sends), with
/// `X-Forwarded-*` and the rule's own on top. `Host` is the upstream's.
pub fn upstream_request(
    ctx: &RequestContext<'_>,
    via: &Via,
    rule: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let mut headers = ctx.headers.clone();
    strip_hop_by_hop(&mut headers);
    for name in [header::HOST, header::CONTENT_LENGTH, header::EXPECT] {
        headers.remove(name);
    }
    let forwarded_for = match headers.remove("x-forwarded-for") {
        Some(earlier) if via.trusted => {
            let earlier = String::from_utf8_lossy(earlier.as_bytes()).into_owned();
            format!("{earlier}, {}", via.peer)
        }
        _ => via.peer.to_string(),
    };
    if let Ok(v) = HeaderValue::try_from(forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(ctx.scheme));
    if let Ok(v) = HeaderValue::try_from(ctx.host) {
        headers.insert("x-forwarded-host", v);
    }
    for (name, value) in rule {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_what_it_names_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("set-cookie", HeaderValue::from_static("a=1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["set-cookie"]);
    }
}
