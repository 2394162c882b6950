//! The request pipeline, the only caller of the stages, in order:
//! resolve the site, build the request context, look the path up in the
//! site's version, respond, log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, Method, Request, Response, StatusCode, Version};

use crate::access_log::{self, AccessLog, Entry};
use crate::context::{PathError, SitePath};
use crate::live::Live;
use crate::respond::{self, Body};
use crate::store::{Lookup, SiteVersion};

/// What the pipeline needs, shared by every connection.
pub struct App {
    pub live: Arc<Live>,
    pub log: AccessLog,
}

/// Answers one request.
pub fn handle<B>(app: &App, req: &Request<B>, client: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let sites = app.live.sites();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());

    let (response, site) = if host.is_none() && req.version() == Version::HTTP_11 {
        // RFC 9112 §3.2: a 1.1 request without Host is malformed.
        (
            respond::plain(StatusCode::BAD_REQUEST, "400 Bad Request: no Host header\n"),
            None,
        )
    } else {
        match sites.resolve(host) {
            None => (
                respond::plain(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no site for this host\n",
                ),
                None,
            ),
            Some(site) => (serve(site, req), Some(site)),
        }
    };

    if app.log.enabled() {
        app.log.record(Entry {
            time: access_log::now(),
            site: site.map(|s| s.site.clone()),
            method: req.method().to_string(),
            path: req.uri().path().chars().take(1024).collect(),
            status: response.status().as_u16(),
            bytes: http_body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0),
            micros: started.elapsed().as_micros() as u64,
            country: None,
            rules: Vec::new(),
            variant: None,
            version: site.map(|s| s.number),
            client: client.ip(),
        });
    }
    response
}

/// Serves a request from one version of its site.
fn serve<B>(site: &SiteVersion, req: &Request<B>) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return respond::method_not_allowed(),
    };
    let path = match SitePath::parse(req.uri().path()) {
        Ok(p) => p,
        Err(PathError::TooLong) => {
            return respond::plain(StatusCode::URI_TOO_LONG, "414 URI Too Long\n")
        }
        Err(PathError::Invalid) => {
            return respond::plain(StatusCode::BAD_REQUEST, "400 Bad Request\n")
        }
    };
    let extra: Vec<_> = site
        .config
        .headers
        .iter()
        .filter(|rule| rule.glob.is_match(&path.path))
        .flat_map(|rule| rule.headers.iter().cloned())
        .collect();
    match site.lookup(&path) {
        Lookup::Found(file) => respond::file(req.headers(), head, file, StatusCode::OK, &extra),
        Lookup::AddSlash => {
            let location = match req.uri().query() {
                Some(q) => format!("{}/?{q}", path.path),
                None => format!("{}/", path.path),
            };
            respond::redirect(StatusCode::PERMANENT_REDIRECT, &location)
        }
        Lookup::Missing => match site.not_found_page() {
            Some(page) => respond::file(req.headers(), head, page, StatusCode::NOT_FOUND, &[]),
            None => respond::plain(StatusCode::NOT_FOUND, "404 Not Found\n"),
        },
    }
}
