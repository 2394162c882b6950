//! The request context: everything later stages need to know about a
//! request, parsed once from its head (address, country, languages, cookies,
//! query). Later stages read it and never parse headers again.

mod client;
mod cookies;
pub mod geo;
mod language;
mod path;

pub use client::{client_address, is_trusted};
pub use geo::{Country, Geo};
pub use path::{PathError, SitePath, MAX_PATH};

use std::borrow::Cow;
use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, Method};
use ipnet::IpNet;

// Named once: looking a header up by a `&str` parses the name every time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const CF_IPCOUNTRY: HeaderName = HeaderName::from_static("cf-ipcountry");

/// What the context builder needs from the server's settings.
pub struct Network<'a> {
    pub trusted_proxies: &'a [IpNet],
    pub geo: &'a Geo,
}

/// One request, as the rules see it.
#[derive(Debug)]
pub struct RequestContext<'r> {
    pub method: &'r Method,
    pub path: SitePath,
    pub raw_query: Option<&'r str>,
    pub query: Vec<(Cow<'r, str>, Cow<'r, str>)>,
    /// The Host header as sent (with any port), for building URLs back.
    pub host: &'r str,
    /// `https` when the connection or a trusted proxy says so.
    pub scheme: &'static str,
    pub client: IpAddr,
    pub country: Country,
    pub languages: Vec<String>,
    pub cookies: Vec<(Cow<'r, str>, Cow<'r, str>)>,
    pub headers: &'r HeaderMap,
}

impl<'r> RequestContext<'r> {
    /// Builds the context. `country` overrides the lookup (for `explain`
    /// and rule tests, which have no real visitor).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        method: &'r Method,
        path: SitePath,
        raw_query: Option<&'r str>,
        host: &'r str,
        headers: &'r HeaderMap,
        peer: IpAddr,
        network: &Network<'_>,
        country: Option<Country>,
    ) -> RequestContext<'r> {
        let trusted_peer = is_trusted(peer, network.trusted_proxies);
        // What proxies say counts only when the peer is one of them.
        let from_proxy = |name: &HeaderName| {
            trusted_peer
                .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
                .flatten()
        };
        let client = client_address(peer, from_proxy(&X_FORWARDED_FOR), network.trusted_proxies);
        let country = country
            .or_else(|| from_proxy(&CF_IPCOUNTRY).and_then(Country::parse))
            .or_else(|| network.geo.country(client))
            .unwrap_or(Country::UNKNOWN);
        let scheme = match from_proxy(&X_FORWARDED_PROTO) {
            Some("https") => "https",
            _ => "http",
        };
        RequestContext {
            method,
            path,
            raw_query,
            query: cookies::query(raw_query),
            host,
            scheme,
            client,
            country,
            languages: language::languages(
                headers.get(header::ACCEPT_LANGUAGE).map(|v| v.as_bytes()),
            ),
            cookies: cookies::cookies(headers.get(header::COOKIE).map(|v| v.as_bytes())),
            headers,
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Every value of a query parameter.
    pub fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The Host header's port, if any.
    pub fn port(&self) -> Option<&str> {
        let (_, port) = self.host.rsplit_once(':')?;
        (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
    }
}
