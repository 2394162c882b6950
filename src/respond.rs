//! Responding: the response a request's outcome asks for, with the
//! decision's headers and cookies on top and its variants settled. A stored
//! file becomes a response honouring conditional requests (ETag,
//! Last-Modified), single byte ranges and the client's Accept-Encoding.
//! Bodies are shared `Bytes`; nothing is copied.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use crate::body::Content;
use crate::context::{Head, PathError, SitePath};
use crate::experiments::Experiments;
use crate::live::Live;
use crate::rules::{self, Decision, Outcome};
use crate::site::NoSite;
use crate::store::{Damaged, Encoding, Lookup, SiteVersion, StoredFile};
use crate::transform::Rendered;

pub type Body = Full<Bytes>;

/// The respond stage of a request the rules decided: the response its
/// outcome asks for, its variants settled and their exposures counted, and
/// the decision's headers and cookies on top. `content` is what the body
/// stage chose, `rendered` the page with the decision's edits, if any.
pub fn decided(
    request: &rules::Request<'_>,
    decision: &mut Decision,
    content: &Content<'_>,
    rendered: Option<&Rendered>,
    experiments: &Experiments,
    rules_header: bool,
) -> Response<Body> {
    let (context, site) = (request.ctx, request.site);
    let head = context.method == Method::HEAD;
    // When the page went out: whether it was a variant's file, and which
    // edits matched.
    let mut shown = None;
    let mut response = match (&decision.outcome, content) {
        (Outcome::Redirect { status, location }, _) => redirect(*status, location),
        (Outcome::Block { status, .. }, Content::Blocked(Some(page))) => {
            file(context.headers, head, page, *status, &[])
        }
        (Outcome::Block { status, .. }, _) => plain(*status, "Unavailable\n"),
        // Exactly as a missing page: same page, same headers.
        (Outcome::Hidden, _) | (Outcome::Serve, Content::Missing) => {
            not_found(site, context.headers, head)
        }
        (
            Outcome::Serve,
            Content::Page {
                file: page,
                variant,
            },
        ) => {
            shown = Some((*variant, rendered.map_or(&[][..], |r| &r.matched[..])));
            let page = rendered.map_or(*page, |r| &r.page);
            let extra = site_headers(site, &context.path);
            file(context.headers, head, page, StatusCode::OK, &extra)
        }
        (Outcome::Serve, _) => lookup(
            site,
            context.method,
            context.headers,
            context.raw_query,
            &context.path,
        ),
    };
    settle_variants(experiments, context.method, decision, shown);
    // The rule that hid a page is not named: it was the last to fire.
    let named = match decision.outcome {
        Outcome::Hidden => decision.fired.len().saturating_sub(1),
        _ => decision.fired.len(),
    };
    let named = rules_header.then_some(&decision.fired[..named]);
    finish(&mut response, decision, named);
    response
}

/// The static path: the file the path finds, as it is stored.
pub fn static_file(site: &SiteVersion, head: &Head<'_>, path: &SitePath) -> Response<Body> {
    lookup(site, head.method, head.headers, head.uri.query(), path)
}

/// The file `path` finds, as it is stored (no rule applies, or none
/// changed the answer).
fn lookup(
    site: &SiteVersion,
    method: &Method,
    request: &HeaderMap,
    query: Option<&str>,
    path: &SitePath,
) -> Response<Body> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return method_not_allowed(),
    };
    match site.lookup(path) {
        Lookup::Found(found) => file(
            request,
            head,
            found,
            StatusCode::OK,
            &site_headers(site, path),
        ),
        Lookup::AddSlash => {
            let location = match query {
                Some(q) => format!("{}/?{q}", path.path),
                None => format!("{}/", path.path),
            };
            redirect(StatusCode::PERMANENT_REDIRECT, &location)
        }
        Lookup::Missing => not_found(site, request, head),
    }
}

/// The answer when no site can serve the request.
pub fn no_site(why: NoSite) -> Response<Body> {
    match why {
        NoSite::BadHost(e) => plain(StatusCode::BAD_REQUEST, e.answer()),
        NoSite::NoHost => plain(StatusCode::BAD_REQUEST, "400 Bad Request: no Host header\n"),
        NoSite::Starting => starting(),
        NoSite::Unknown => plain(
            StatusCode::NOT_FOUND,
            "404 Not Found: no site for this host\n",
        ),
    }
}

/// The answer to a path that cannot name a file.
pub fn bad_path(why: PathError) -> Response<Body> {
    match why {
        PathError::TooLong => plain(StatusCode::URI_TOO_LONG, "414 URI Too Long\n"),
        PathError::Invalid => plain(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
}

/// What every answer goes through last: a 404 while the first scan runs
/// becomes a 503 (the page may be new on disk and not scanned yet), and a
/// damaged body found on the way starts its repair.
pub fn checked(live: &Arc<Live>, mut response: Response<Body>) -> Response<Body> {
    if response.status() == StatusCode::NOT_FOUND && !live.ready() {
        response = starting();
    }
    if let Some(damaged) = response.extensions_mut().remove::<Damaged>() {
        live.repair(damaged);
    }
    response
}

/// Marks each variant of the response applied or not, and counts the
/// visitors a GET or HEAD drew into one: an exposure when the page went out
/// showing the variant as written, else not applied. `shown`, when the page
/// went out: whether the variant file was served, and which edits matched.
/// When it did not (a redirect, a block, a gate, a missing page), the draw
/// is not kept: the visitor saw nothing of the experiment, and is drawn and
/// counted on the page.
fn settle_variants(
    experiments: &Experiments,
    method: &Method,
    decision: &mut Decision,
    shown: Option<(bool, &[bool])>,
) {
    let Some((served, matched)) = shown else {
        for a in &decision.variants {
            if let Some(keep) = &a.keep {
                decision.cookies.retain(|c| c != keep);
            }
        }
        return;
    };
    let file = served.then(|| decision.serve.clone()).flatten();
    let count = method == Method::GET || method == Method::HEAD;
    for a in &mut decision.variants {
        a.applied = a.applied_in(file.as_deref(), matched);
        if count && a.drawn {
            experiments.expose(a, a.applied);
        }
    }
}

/// The decision's headers and cookies, on top of the response; `named`
/// are the rules to list in `X-Outpost-Rules`, when that header is on.
fn finish(response: &mut Response<Body>, decision: &Decision, named: Option<&[Arc<str>]>) {
    let headers = response.headers_mut();
    if decision.private {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    for name in &decision.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &decision.set_headers {
        headers.insert(name.clone(), value.clone());
    }
    for cookie in &decision.cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    if let Some(named) = named.filter(|n| !n.is_empty()) {
        if let Ok(v) = HeaderValue::try_from(named.join(", ")) {
            headers.insert("x-outpost-rules", v);
        }
    }
}

/// The site's own not-found page, or a plain 404.
fn not_found(site: &SiteVersion, request: &HeaderMap, head: bool) -> Response<Body> {
    match site.not_found_page() {
        Some(page) => file(request, head, page, StatusCode::NOT_FOUND, &[]),
        None => plain(StatusCode::NOT_FOUND, "404 Not Found\n"),
    }
}

/// The site's configured headers for a path.
fn site_headers(site: &SiteVersion, path: &SitePath) -> Vec<(HeaderName, HeaderValue)> {
    site.config
        .headers
        .iter()
        .filter(|rule| rule.glob.is_match(&path.path))
        .flat_map(|rule| rule.headers.iter().cloned())
        .collect()
}

/// A response with a short plain-text body.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// 503 while the first scan of sites/ runs: the page may be in a site not
/// loaded yet, so the client is asked to come back rather than told 404.
pub fn starting() -> Response<Body> {
    come_back_soon("503 Service Unavailable: starting, sites are still being loaded\n")
}

/// 503 for a page whose stored body is damaged: it is being read again
/// from sites/, and the handler, finding `damaged` in the response, starts
/// that. Never the damaged bytes with a 200.
pub fn damaged(damaged: Damaged) -> Response<Body> {
    let mut res = come_back_soon("503 Service Unavailable: this file is being restored\n");
    res.extensions_mut().insert(damaged);
    res
}

/// 503 that asks the client to try again in a second, kept by no cache.
fn come_back_soon(text: &'static str) -> Response<Body> {
    let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    let headers = res.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// 405 for methods a static site cannot answer.
pub fn method_not_allowed() -> Response<Body> {
    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    res
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut res = Response::new(Full::default());
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::try_from(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Serves `file` with `status` (200, or 404 for a not-found page).
/// `extra` are the site's configured headers for the path.
pub fn file(
    request: &HeaderMap,
    head: bool,
    file: &StoredFile,
    status: StatusCode,
    extra: &[(HeaderName, HeaderValue)],
) -> Response<Body> {
    let success = status == StatusCode::OK;
    let encoding = if request.contains_key(header::RANGE) && success {
        // Ranges address the identity bytes.
        Encoding::Identity
    } else {
        choose_encoding(request.get(header::ACCEPT_ENCODING), file)
    };

    let mut res = Response::new(Full::default());
    // Room for every header a file response gets, so the map never regrows.
    *res.headers_mut() = HeaderMap::with_capacity(16);
    let headers = res.headers_mut();
    headers.insert(header::ETAG, file.etag(encoding).clone());
    headers.insert(header::LAST_MODIFIED, file.last_modified_header.clone());
    if file.compressed() {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    for (name, value) in extra {
        headers.insert(name.clone(), value.clone());
    }

    if success && not_modified(request, file) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return res;
    }

    headers.insert(header::CONTENT_TYPE, file.content_type.clone());
    if let Some(ce) = encoding.content_encoding() {
        headers.insert(header::CONTENT_ENCODING, ce);
    }
    let mut body = match file.checked_body(encoding) {
        Ok(body) => body.clone(),
        Err(e) => return damaged(e),
    };
    *res.status_mut() = status;

    if success {
        res.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(range) = requested_range(request, file) {
            let len = body.len() as u64;
            match range.resolve(len) {
                Some((start, end)) => {
                    *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                    res.headers_mut().insert(
                        header::CONTENT_RANGE,
                        header_value(format!("bytes {start}-{end}/{len}")),
                    );
                    body = body.slice(start as usize..=end as usize);
                }
                None => {
                    *res.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    res.headers_mut().insert(
                        header::CONTENT_RANGE,
                        header_value(format!("bytes */{len}")),
                    );
                    res.headers_mut().remove(header::CONTENT_ENCODING);
                    body = Bytes::new();
                }
            }
        }
    }
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    if !head {
        *res.body_mut() = Full::new(body);
    }
    res
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("ASCII digits are a valid header")
}

/// RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since.
fn not_modified(request: &HeaderMap, file: &StoredFile) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else { return false };
        // The whole value first: it is usually one tag, and then no split.
        return file.etag_matches(inm)
            || inm.trim() == "*"
            || inm.split(',').any(|tag| file.etag_matches(tag));
    }
    request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since: SystemTime| file.last_modified <= since)
}

/// The client's preference among what is stored: br, then gzip.
fn choose_encoding(accept: Option<&HeaderValue>, file: &StoredFile) -> Encoding {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return Encoding::Identity;
    };
    let (mut br, mut gzip, mut any) = (false, false, false);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let accepted = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .all(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
        if name.eq_ignore_ascii_case("br") {
            br = accepted;
        } else if name.eq_ignore_ascii_case("gzip") {
            gzip = accepted;
        } else if name == "*" {
            any = accepted;
        }
    }
    let has = |enc| file.body(enc).is_some();
    if (br || any) && has(Encoding::Brotli) {
        Encoding::Brotli
    } else if (gzip || any) && has(Encoding::Gzip) {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// A single `bytes=` range.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    From(u64, Option<u64>),
    Suffix(u64),
}

impl ByteRange {
    /// Inclusive bounds within a body of `len` bytes, or `None` when
    /// unsatisfiable.
    fn resolve(&self, len: u64) -> Option<(u64, u64)> {
        match *self {
            ByteRange::From(start, _) if start >= len => None,
            ByteRange::From(start, end) => Some((start, end.map_or(len - 1, |e| e.min(len - 1)))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(_) if len == 0 => None,
            ByteRange::Suffix(n) => Some((len.saturating_sub(n), len - 1)),
        }
    }
}

/// The Range to honour: one well-formed range whose If-Range (if any)
/// still holds. Several ranges are answered with the whole file, which
/// RFC 9110 allows.
fn requested_range(request: &HeaderMap, file: &StoredFile) -> Option<ByteRange> {
    let range = request.get(header::RANGE)?.to_str().ok()?;
    if let Some(if_range) = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let holds = if if_range.starts_with('"') {
            file.etag(Encoding::Identity).as_bytes() == if_range.as_bytes()
        } else {
            httpdate::parse_http_date(if_range).is_ok_and(|d| d == file.last_modified)
        };
        if !holds {
            return None;
        }
    }
    parse_range(range)
}

fn parse_range(range: &str) -> Option<ByteRange> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.trim().split_once('-')?;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => Some(ByteRange::Suffix(num(end)?)),
        (false, true) => Some(ByteRange::From(num(start)?, None)),
        (false, false) => {
            let (s, e) = (num(start)?, num(end)?);
            (s <= e).then_some(ByteRange::From(s, Some(e)))
        }
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(ByteRange::From(0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Some(ByteRange::From(5, None)));
        assert_eq!(parse_range("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("bytes=9-1"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(ByteRange::From(0, Some(99)).resolve(10), Some((0, 9)));
        assert_eq!(ByteRange::From(10, None).resolve(10), None);
        assert_eq!(ByteRange::Suffix(20).resolve(10), Some((0, 9)));
    }
}
