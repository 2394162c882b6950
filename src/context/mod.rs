//! The request context: everything later stages need to know about a
//! request, parsed once from its head (address, country, languages, cookies,
//! query). Later stages read it and never parse headers again.

mod client;
mod cookies;
mod country;
pub mod crawler;
mod device;
pub mod geo;
mod host;
mod language;
mod path;
mod places;
pub mod region;
pub mod visitor;

pub use client::{client_address, is_trusted};
pub use country::Country;
pub use device::Device;
pub use geo::{Geo, Place};
pub use host::{request_host, HostError};
pub use path::{PathError, SitePath, MAX_PATH};
pub use places::{Continent, CONTINENTS};
pub use region::Region;
pub use visitor::Visitor;

use std::borrow::Cow;
use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use ipnet::IpNet;

// Named once: looking a header up by a `&str` parses the name every time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const CF_IPCOUNTRY: HeaderName = HeaderName::from_static("cf-ipcountry");
const CF_REGION_CODE: HeaderName = HeaderName::from_static("cf-region-code");

/// A request's head, as the stages read it (none reads the body).
#[derive(Debug, Clone, Copy)]
pub struct Head<'r> {
    pub method: &'r Method,
    pub uri: &'r Uri,
    pub version: Version,
    pub headers: &'r HeaderMap,
}

impl<'r, B> From<&'r Request<B>> for Head<'r> {
    fn from(req: &'r Request<B>) -> Head<'r> {
        Head {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
        }
    }
}

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
    pub continent: Option<Continent>,
    /// In a member state of the European Union.
    pub eu: bool,
    pub region: Option<Region>,
    pub languages: Vec<String>,
    pub cookies: Vec<(Cow<'r, str>, Cow<'r, str>)>,
    pub headers: &'r HeaderMap,
    /// The id `percent` reads, drawn when first asked for.
    pub visitor: Visitor,
    /// When the request came, for schedules.
    pub now: jiff::Timestamp,
}

/// What `explain` and rule tests give in place of a real visitor's
/// address and the clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    pub country: Option<Country>,
    /// With its country (which it names).
    pub region: Option<Region>,
    pub at: Option<jiff::Timestamp>,
}

impl<'r> RequestContext<'r> {
    /// The context stage: builds the context of a request for `path` (its
    /// path, parsed), sent to `host` by `peer`. `given` overrides the
    /// lookup and the clock (for `explain` and rule tests, which have no
    /// real visitor).
    pub fn build(
        head: &Head<'r>,
        path: SitePath,
        host: &'r str,
        peer: IpAddr,
        network: &Network<'_>,
        given: Given,
    ) -> RequestContext<'r> {
        let headers = head.headers;
        let raw_query = head.uri.query();
        let read = Read::from(headers);
        let trusted_peer = is_trusted(peer, network.trusted_proxies);
        // What proxies say counts only when the peer is one of them.
        let from_proxy = |value: Option<&'r HeaderValue>| {
            trusted_peer
                .then(|| value.and_then(|v| v.to_str().ok()))
                .flatten()
        };
        // Every line counts (RFC 9110 §5.3); one line, the common case, is
        // walked without looking the header up again.
        let client = match read.forwarded_for {
            Some(_) if trusted_peer && read.forwarded_fors > 1 => client_address(
                peer,
                headers
                    .get_all(X_FORWARDED_FOR)
                    .iter()
                    .map(|v| v.as_bytes()),
                network.trusted_proxies,
            ),
            line => client_address(
                peer,
                line.map(|v| v.as_bytes()).into_iter(),
                network.trusted_proxies,
            ),
        };
        // A proxy's region counts with its country, as a pair.
        let proxy_place = from_proxy(read.country)
            .and_then(Country::parse)
            .map(|c| Place {
                region: from_proxy(read.region).and_then(|r| Region::of(c, r)),
                ..Place::of(c)
            });
        let given_place = given.country.map(|c| Place {
            region: given.region,
            ..Place::of(c)
        });
        let place = given_place
            .or(proxy_place)
            .or_else(|| network.geo.locate(client))
            .unwrap_or(Place::of(Country::UNKNOWN));
        let scheme = match from_proxy(read.forwarded_proto) {
            Some("https") => "https",
            _ => "http",
        };
        let cookies = if read.cookies > 1 {
            cookies::cookies(headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()))
        } else {
            cookies::cookies(read.cookie.map(|v| v.as_bytes()).into_iter())
        };
        let kept = cookies.iter().find(|(k, _)| k == visitor::COOKIE);
        let visitor = Visitor::from_cookie(kept.map(|(_, v)| v.as_ref()));
        RequestContext {
            method: head.method,
            path,
            raw_query,
            query: cookies::query(raw_query),
            host,
            scheme,
            client,
            country: place.country,
            continent: place.continent,
            eu: place.eu,
            region: place.region,
            languages: language::languages(read.accept_language.map(|v| v.as_bytes())),
            visitor,
            now: given.at.unwrap_or_else(jiff::Timestamp::now),
            cookies,
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

    /// Whether the User-Agent is a crawler's (see [`crawler`]).
    pub fn is_bot(&self) -> bool {
        let ua = self.headers.get(header::USER_AGENT);
        ua.is_some_and(|ua| crawler::is_crawler(ua.as_bytes()))
    }

    /// The visitor's device class.
    pub fn device(&self) -> Device {
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .map(HeaderValue::as_bytes);
        let mobile = self
            .headers
            .get("sec-ch-ua-mobile")
            .map(HeaderValue::as_bytes);
        Device::of(ua, mobile)
    }

    /// The Host header's port, if any.
    pub fn port(&self) -> Option<&str> {
        let (_, port) = self.host.rsplit_once(':')?;
        (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
    }
}

/// The headers the context reads, found in one pass over the request's
/// headers: looking each up by name would hash five names per request.
/// The first of each counts, as with `HeaderMap::get`, except the one-value
/// headers a proxy sets: a proxy that adds its line after the visitor's
/// means the last.
#[derive(Default)]
struct Read<'r> {
    forwarded_for: Option<&'r HeaderValue>,
    /// How many X-Forwarded-For lines there are.
    forwarded_fors: usize,
    forwarded_proto: Option<&'r HeaderValue>,
    country: Option<&'r HeaderValue>,
    region: Option<&'r HeaderValue>,
    accept_language: Option<&'r HeaderValue>,
    cookie: Option<&'r HeaderValue>,
    /// How many Cookie headers there are.
    cookies: usize,
}

impl<'r> From<&'r HeaderMap> for Read<'r> {
    fn from(headers: &'r HeaderMap) -> Read<'r> {
        let mut read = Read::default();
        for (name, value) in headers {
            let slot = if name == header::COOKIE {
                read.cookies += 1;
                &mut read.cookie
            } else if name == header::ACCEPT_LANGUAGE {
                &mut read.accept_language
            } else if name == X_FORWARDED_FOR {
                read.forwarded_fors += 1;
                &mut read.forwarded_for
            } else if name == CF_IPCOUNTRY {
                read.country = Some(value);
                continue;
            } else if name == CF_REGION_CODE {
                read.region = Some(value);
                continue;
            } else if name == X_FORWARDED_PROTO {
                read.forwarded_proto = Some(value);
                continue;
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        read
    }
}
