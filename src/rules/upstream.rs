//! What a `proxy` rule decided about forwarding, as the decision carries
//! it to the proxy (its own file, so that the decision does not import the
//! action).

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// How a rule forwards: what the forwarding needs besides the URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Longest silence: of the upstream before its response head (counted
    /// from the request body's last piece), and between pieces of its body.
    pub timeout: Duration,
    /// How long a GET or HEAD 200 is kept; `None`: nothing is kept.
    pub cache: Option<Duration>,
    /// How long past `cache` a copy is still served while one refresh runs.
    pub stale_for: Duration,
    /// How long past `cache` a copy answers when the upstream fails.
    pub stale_if_error: Duration,
    /// Request headers added (or replaced) on the way up.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Headers about one connection, which a proxy never passes on.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];
