//! The proxy's cache, for rules with `cache`: GET/HEAD 200s kept by URL
//! and the request headers their `Vary` names, for the rule's `cache` or
//! the upstream's shorter `max-age`/`s-maxage`; never what the upstream
//! marks `no-store`, `private` or `no-cache`, nor what sets a cookie.
//!
//! As fragments are: concurrent misses for one key share one upstream
//! request (which goes on when the request that started it is gone); a
//! copy up to `stale_for` past its time is served at once while one
//! refresh runs; a copy up to `stale_if_error` past it answers when the
//! upstream fails, and for a while after (the upstream is left alone, as
//! fragment sources are). Bounded in bytes; a body over a sixteenth of
//! the bound is passed on, not kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::header::{self, HeaderMap, HeaderName};
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::error::ProxyError;
use super::headers::named_in;
use super::limits::Prefixed;
use crate::respond::Body;
use crate::rules::proxy::Upstream;
use crate::transform::fragments::backoff;

/// URLs whose `Vary` and in-flight requests are remembered at most: a URL
/// may carry request values, so visitors can make new ones.
const MAX_URLS: usize = 10_000;

/// An upstream answer kept.
pub struct Stored {
    key: String,
    vary: Arc<[HeaderName]>,
    pub headers: HeaderMap,
    pub body: Bytes,
    stored_at: Instant,
    ttl: Duration,
}

impl Stored {
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    /// Whether it is still good `past` its time.
    fn within(&self, past: Duration) -> bool {
        self.age() < self.ttl + past
    }
}

/// The upstream's answer to a request the cache made.
pub type Fetch = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

/// What one upstream request gave everyone waiting on it.
#[derive(Clone)]
enum Flown {
    Kept(Arc<Stored>),
    /// Not one to keep: the first waiter takes it to pass on.
    Pass(Arc<Mutex<Option<Response<Body>>>>),
    Failed(ProxyError),
}

type Pending = Shared<BoxFuture<'static, Flown>>;

#[derive(Default)]
struct Flight {
    pending: Option<Pending>,
    /// Failures in a row, and until when the upstream is left alone.
    failures: u32,
    retry_at: Option<Instant>,
}

/// What the cache made of a request.
pub enum Answer {
    Hit(Arc<Stored>),
    Stale(Arc<Stored>),
    /// Fetched for this request, and kept.
    Miss(Arc<Stored>),
    /// The upstream's answer, not one to keep; `None` when another request
    /// waiting on the same upstream request took it.
    Pass(Option<Response<Body>>),
    Failed(ProxyError),
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Arc<Stored>> for ByBytes {
    fn weight(&self, key: &String, stored: &Arc<Stored>) -> u64 {
        // A header costs about this much besides its bytes.
        let headers: usize = stored
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 64)
            .sum();
        (key.len() + headers + stored.body.len()) as u64
    }
}

pub struct Cache {
    stored: quick_cache::sync::Cache<String, Arc<Stored>, ByBytes>,
    /// The request headers each URL's answers vary by.
    vary: quick_cache::sync::Cache<String, Arc<[HeaderName]>>,
    flights: quick_cache::sync::Cache<String, Arc<Mutex<Flight>>>,
    /// Largest body kept.
    max_body: usize,
}

impl Cache {
    /// A cache of at most `bytes`.
    pub fn new(bytes: u64) -> Arc<Cache> {
        Arc::new(Cache {
            stored: quick_cache::sync::Cache::with_weighter(MAX_URLS, bytes, ByBytes),
            vary: quick_cache::sync::Cache::new(MAX_URLS),
            flights: quick_cache::sync::Cache::new(MAX_URLS),
            max_body: (bytes / 16) as usize,
        })
    }

    /// The answer for `url` to a request with `headers`: kept, or fetched
    /// (by `fetch`, once for all who ask at the same time).
    pub async fn get(
        self: &Arc<Self>,
        url: &str,
        headers: &HeaderMap,
        rule: &Upstream,
        ttl: Duration,
        fetch: &(dyn Fn() -> Fetch + Sync),
    ) -> Answer {
        // Twice at most: the second time the URL's Vary is known.
        for _ in 0..2 {
            let vary = self.vary.get(url).unwrap_or_default();
            // Most answers vary by nothing: their key is the URL as it is.
            let varied;
            let key = match vary.is_empty() {
                true => url,
                false => {
                    varied = key(url, &vary, headers);
                    varied.as_str()
                }
            };
            let stored = self.stored.get(key);
            if let Some(s) = stored.as_ref().filter(|s| s.within(Duration::ZERO)) {
                return Answer::Hit(s.clone());
            }
            let while_refreshing = stored.clone().filter(|s| s.within(rule.stale_for));
            let if_error = stored.filter(|s| s.within(rule.stale_if_error));
            let flight = self.flight(key);
            let pending = {
                let mut f = flight.lock().unwrap();
                let resting = f.retry_at.is_some_and(|at| Instant::now() < at);
                // While the upstream is left alone after failing, a copy
                // within stale_if_error answers without asking it.
                let resting_copy = if_error.as_ref().filter(|_| resting);
                if let Some(stale) = while_refreshing.as_ref().or(resting_copy) {
                    if f.pending.is_none() && !resting {
                        f.pending =
                            Some(self.start(url, headers, (ttl, rule.timeout), fetch(), &flight));
                    }
                    return Answer::Stale(stale.clone());
                }
                match &f.pending {
                    Some(p) => p.clone(),
                    None => {
                        let p = self.start(url, headers, (ttl, rule.timeout), fetch(), &flight);
                        f.pending = Some(p.clone());
                        p
                    }
                }
            };
            match pending.await {
                Flown::Kept(s) if s.key == self::key(url, &s.vary, headers) => {
                    return Answer::Miss(s)
                }
                // Its Vary says this request asks for another answer.
                Flown::Kept(_) => continue,
                Flown::Pass(slot) => {
                    let taken = slot.lock().unwrap().take();
                    let failed = taken.as_ref().is_some_and(|r| r.status().is_server_error());
                    return match if_error {
                        Some(stale) if failed => Answer::Stale(stale),
                        _ => Answer::Pass(taken),
                    };
                }
                Flown::Failed(error) => {
                    return match if_error {
                        Some(stale) => Answer::Stale(stale),
                        None => Answer::Failed(error),
                    }
                }
            }
        }
        Answer::Pass(None)
    }

    fn flight(&self, key: &str) -> Arc<Mutex<Flight>> {
        if let Some(f) = self.flights.get(key) {
            return f;
        }
        let fresh = || Ok::<_, std::convert::Infallible>(Arc::default());
        let Ok(f) = self.flights.get_or_insert_with(key, fresh);
        f
    }

    /// Starts the one upstream request for `key`; it keeps its answer when
    /// it may, and records how the upstream did.
    fn start(
        self: &Arc<Self>,
        url: &str,
        headers: &HeaderMap,
        (ttl, timeout): (Duration, Duration),
        fetch: Fetch,
        flight: &Arc<Mutex<Flight>>,
    ) -> Pending {
        let (cache, flight) = (self.clone(), flight.clone());
        let (url, headers) = (url.to_string(), headers.clone());
        let task = tokio::spawn(async move {
            // The upstream's whole answer, when kept, within the timeout.
            let fetched = async {
                match fetch.await {
                    Ok(response) => cache.keep(&url, &headers, response, ttl).await,
                    Err(e) => Flown::Failed(e),
                }
            };
            let flown = tokio::time::timeout(timeout, fetched)
                .await
                .unwrap_or(Flown::Failed(ProxyError::Timeout(timeout)));
            let failed = match &flown {
                Flown::Failed(_) => true,
                Flown::Pass(slot) => slot
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|r| r.status().is_server_error()),
                Flown::Kept(_) => false,
            };
            let mut f = flight.lock().unwrap();
            f.pending = None;
            if failed {
                f.retry_at = Some(Instant::now() + backoff(f.failures));
                f.failures += 1;
            } else {
                f.retry_at = None;
                f.failures = 0;
            }
            flown
        });
        async move {
            task.await
                .unwrap_or_else(|e| Flown::Failed(ProxyError::Connect(e.to_string())))
        }
        .boxed()
        .shared()
    }

    /// Keeps `response` when it may be kept, reading its body whole.
    async fn keep(
        &self,
        url: &str,
        headers: &HeaderMap,
        response: Response<Body>,
        ttl: Duration,
    ) -> Flown {
        let pass = |r| Flown::Pass(Arc::new(Mutex::new(Some(r))));
        let Some(ttl) = keepable(response.status(), response.headers(), ttl) else {
            return pass(response);
        };
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if length.is_some_and(|n| n > self.max_body) {
            return pass(response);
        }
        let (parts, mut body) = response.into_parts();
        let mut read = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let data = match frame.map(|f| f.into_data()) {
                Ok(Ok(data)) => data,
                Ok(Err(_trailers)) => continue,
                Err(e) => return Flown::Failed(ProxyError::Body(crate::error_chain(&*e, ": "))),
            };
            read.extend_from_slice(&data);
            if read.len() > self.max_body {
                let rest = Prefixed::new(read.freeze(), body);
                return pass(Response::from_parts(parts, Body::stream(rest)));
            }
        }
        let vary = vary_names(&parts.headers);
        self.vary.insert(url.to_string(), vary.clone());
        let key = key(url, &vary, headers);
        let stored = Arc::new(Stored {
            key: key.clone(),
            vary,
            headers: parts.headers,
            body: read.freeze(),
            stored_at: Instant::now(),
            ttl,
        });
        self.stored.insert(key, stored.clone());
        Flown::Kept(stored)
    }
}

/// The key of the answers to `url` for a request with `headers`, whose
/// answers vary by `vary`.
fn key(url: &str, vary: &[HeaderName], headers: &HeaderMap) -> String {
    let mut key = url.to_string();
    for name in vary {
        key.push('\n');
        key.push_str(name.as_str());
        key.push(':');
        for value in headers.get_all(name) {
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
            key.push(',');
        }
    }
    key
}

/// The request headers named by `Vary`, lowercase, each once.
fn vary_names(headers: &HeaderMap) -> Arc<[HeaderName]> {
    let mut names: Vec<HeaderName> = named_in(headers, header::VARY).collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names.into()
}

/// How long an answer with `status` and `headers` may be kept, at most
/// `ttl` (the rule's `cache`); `None`: not at all.
pub fn keepable(status: StatusCode, headers: &HeaderMap, ttl: Duration) -> Option<Duration> {
    if status != StatusCode::OK || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let values = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    if values(header::VARY).any(|v| v == "*") {
        return None;
    }
    let (mut max_age, mut s_maxage) = (None, None);
    for directive in values(header::CACHE_CONTROL) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        let seconds = || value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let is = |d: &str| name.eq_ignore_ascii_case(d);
        if is("no-store") || is("private") || is("no-cache") {
            return None;
        } else if is("s-maxage") {
            s_maxage = Some(seconds());
        } else if is("max-age") {
            max_age = Some(seconds());
        }
    }
    // A shared cache takes s-maxage over max-age (RFC 9111 §5.2.2.10).
    let ttl = match s_maxage.or(max_age) {
        Some(s) => ttl.min(Duration::from_secs(s)),
        None => ttl,
    };
    (!ttl.is_zero()).then_some(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    const RULE: Duration = Duration::from_secs(30);

    #[test]
    fn only_200s_without_cookies_are_kept() {
        assert_eq!(keepable(StatusCode::OK, &headers(&[]), RULE), Some(RULE));
        assert_eq!(keepable(StatusCode::NOT_FOUND, &headers(&[]), RULE), None);
        assert_eq!(keepable(StatusCode::FOUND, &headers(&[]), RULE), None);
        let cookie = headers(&[("set-cookie", "a=1")]);
        assert_eq!(keepable(StatusCode::OK, &cookie, RULE), None);
    }

    #[test]
    fn cache_control_is_honoured() {
        let keep =
            |cc: &'static str| keepable(StatusCode::OK, &headers(&[("cache-control", cc)]), RULE);
        assert_eq!(keep("no-store"), None);
        assert_eq!(keep("public, No-Store"), None);
        assert_eq!(keep("private, max-age=60"), None);
        assert_eq!(keep("no-cache"), None);
        assert_eq!(keep("max-age=5"), Some(Duration::from_secs(5)));
        // The rule's is the longest an answer is kept.
        assert_eq!(keep("max-age=600"), Some(RULE));
        assert_eq!(
            keep("max-age=600, s-maxage=7"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(keep("max-age=0"), None);
        assert_eq!(keep("max-age=\"9\""), Some(Duration::from_secs(9)));
        assert_eq!(keep("public"), Some(RULE));
    }

    /// A copy past its time but within `stale_for` answers at once while
    /// one refresh runs, even when `stale_if_error` is shorter.
    #[test]
    fn a_stale_copy_answers_while_one_refresh_runs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = Cache::new(1 << 20);
            let url = "http://up/a";
            let old = Stored {
                key: url.into(),
                vary: Arc::default(),
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"old"),
                stored_at: Instant::now() - Duration::from_secs(10),
                ttl: Duration::from_secs(1),
            };
            cache.stored.insert(url.into(), Arc::new(old));
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = calls.clone();
            let fetch = move || -> Fetch {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(Response::new(Body::from(Bytes::from_static(b"new")))) }.boxed()
            };
            let rule = Upstream {
                timeout: Duration::from_secs(5),
                cache: Some(RULE),
                stale_for: Duration::from_secs(3600),
                stale_if_error: Duration::ZERO,
                headers: Vec::new(),
            };
            let h = HeaderMap::new();
            for _ in 0..3 {
                let got = cache.get(url, &h, &rule, RULE, &fetch).await;
                assert!(matches!(got, Answer::Stale(s) if s.body == "old"));
            }
            // One refresh for the three; once it lands, its copy answers.
            loop {
                match cache.get(url, &h, &rule, RULE, &fetch).await {
                    Answer::Hit(s) => break assert_eq!(s.body, "new"),
                    Answer::Stale(_) => tokio::task::yield_now().await,
                    _ => panic!("neither the old copy nor the new one"),
                }
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn vary_splits_the_key() {
        assert_eq!(
            keepable(StatusCode::OK, &headers(&[("vary", "*")]), RULE),
            None
        );
        let vary = vary_names(&headers(&[
            ("vary", "Accept-Encoding, accept-language"),
            ("vary", "accept-encoding"),
        ]));
        assert_eq!(vary.len(), 2);
        let gzip = headers(&[("accept-encoding", "gzip")]);
        let br = headers(&[("accept-encoding", "br")]);
        assert_ne!(
            key("http://u/a", &vary, &gzip),
            key("http://u/a", &vary, &br)
        );
        assert_eq!(
            key("http://u/a", &vary, &gzip),
            key("http://u/a", &vary, &gzip.clone())
        );
        assert_eq!(key("http://u/a", &[], &gzip), "http://u/a");
    }
}
