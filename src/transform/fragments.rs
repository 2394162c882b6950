//! Fragments: JSON fetched from upstream APIs, cached, and rendered into
//! pages.
//!
//! Per source URL: a fresh copy (younger than `ttl`) is used as is; a stale
//! one (younger than `ttl + stale_for`) is used while one refresh runs in
//! the background; with neither, the page waits for the fetch at most
//! `timeout`. Concurrent misses share one upstream request. A fetch goes on
//! after a page stops waiting (up to [`FETCH_LIMIT`]), so its result serves
//! the next page. After a failure the source is left alone for a while
//! (from [`BACKOFF_FIRST`], doubling up to [`BACKOFF_MAX`]): pages meanwhile
//! take the stale copy or fail at once, rather than each waiting on a
//! source that is down. At most [`MAX_SOURCES`] sources are remembered.
//! Redirects are not followed, bodies over [`MAX_BODY`] are refused, and
//! errors are logged once per burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long fragments live and how long a page waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: Duration,
    pub timeout: Duration,
    pub stale_for: Duration,
}

/// Largest upstream body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest a fetch may run, whoever is waiting for it.
pub const FETCH_LIMIT: Duration = Duration::from_secs(10);
/// Errors for one source are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Sources remembered at most, the least recently used forgotten first: a
/// source URL may carry request values, so visitors can make new ones.
pub const MAX_SOURCES: usize = 10_000;
/// How long a source is left alone after its first failure in a row...
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// ...doubling with each further one, up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long an upstream is left alone after `failures` failures in a row
/// before this one.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX)
}

/// What upstream clients connect with: http, or https checked against the
/// web's roots.
pub fn connector() -> hyper_rustls::HttpsConnector<HttpConnector> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build()
}

/// A good copy of a source's data.
#[derive(Debug)]
pub struct Fetched {
    pub data: serde_json::Value,
    pub fetched_at: SystemTime,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach upstream: {0}")]
    Connect(String),
    #[error("upstream answered {0}")]
    Status(u16),
    #[error("upstream redirects to {0}; redirects are not followed")]
    Redirect(String),
    #[error("upstream body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error("upstream body is not JSON: {0}")]
    Json(String),
}

/// What a page gets for one fragment.
#[derive(Debug)]
pub enum Got {
    Fresh(Arc<Fetched>),
    /// Older than its ttl; a refresh is running, or the source is failing
    /// and left alone for now.
    Stale(Arc<Fetched>),
    /// No usable copy in time. `stale` is the last good copy if still
    /// within `stale_for`.
    Failed {
        error: FetchError,
        stale: Option<Arc<Fetched>>,
    },
}

type Pending = Shared<BoxFuture<'static, Result<Arc<Fetched>, FetchError>>>;

#[derive(Default)]
struct Entry {
    good: Option<Arc<Fetched>>,
    pending: Option<Pending>,
    /// Failures in a row, the last one, and when the source may be tried
    /// again.
    failures: u32,
    last_error: Option<FetchError>,
    retry_at: Option<Instant>,
    last_logged: Option<Instant>,
    unlogged_errors: u64,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct FragmentStats {
    pub fresh: AtomicU64,
    pub stale: AtomicU64,
    pub failed: AtomicU64,
    pub upstream_requests: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub template_errors: AtomicU64,
}

/// Called with each good copy, to keep it across restarts.
pub type Keep = Box<dyn Fn(&str, &Fetched) + Send + Sync>;

pub struct Fragments {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    entries: quick_cache::sync::Cache<String, Arc<Mutex<Entry>>>,
    keep: Keep,
    template_logged: Mutex<HashMap<String, Instant>>,
    pub stats: FragmentStats,
}

impl Fragments {
    /// `saved` are copies kept from an earlier run.
    pub fn new(saved: Vec<(String, Fetched)>, keep: Keep) -> Arc<Fragments> {
        Fragments::remembering(MAX_SOURCES, saved, keep)
    }

    /// [`Fragments::new`], remembering at most `sources` sources.
    fn remembering(sources: usize, saved: Vec<(String, Fetched)>, keep: Keep) -> Arc<Fragments> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector());
        let entries = quick_cache::sync::Cache::new(sources);
        for (url, f) in saved {
            let entry = Entry {
                good: Some(Arc::new(f)),
                ..Entry::default()
            };
            entries.insert(url, Arc::new(Mutex::new(entry)));
        }
        Arc::new(Fragments {
            client,
            entries,
            keep,
            template_logged: Mutex::new(HashMap::new()),
            stats: FragmentStats::default(),
        })
    }

    /// The data for `url`, as fresh as `timing` allows, never waiting longer
    /// than its timeout.
    pub async fn get(self: &Arc<Self>, url: &str, timing: &Timing) -> Got {
        // The URL is copied only the first time it is seen.
        let entry = match self.entries.get(url) {
            Some(e) => e,
            None => {
                let fresh = || Ok::<_, std::convert::Infallible>(Arc::default());
                let Ok(e) = self.entries.get_or_insert_with(url, fresh);
                e
            }
        };
        let now = SystemTime::now();
        let age = |f: &Fetched| now.duration_since(f.fetched_at).unwrap_or_default();
        let (good, pending) = {
            let mut e = entry.lock().unwrap();
            if let Some(good) = e.good.as_ref().filter(|g| age(g) < timing.ttl) {
                self.stats.fresh.fetch_add(1, Ordering::Relaxed);
                return Got::Fresh(good.clone());
            }
            let stale = e
                .good
                .clone()
                .filter(|g| age(g) < timing.ttl + timing.stale_for);
            let pending = match &e.pending {
                Some(p) => p.clone(),
                None if e.retry_at.is_some_and(|at| Instant::now() < at) => {
                    if let Some(stale) = stale {
                        self.stats.stale.fetch_add(1, Ordering::Relaxed);
                        return Got::Stale(stale);
                    }
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let error = e.last_error.clone().expect("a back-off follows an error");
                    return Got::Failed { error, stale: None };
                }
                None => {
                    let p = self.clone().start(url.to_string(), entry.clone());
                    e.pending = Some(p.clone());
                    p
                }
            };
            (stale, pending)
        };
        if let Some(stale) = good.clone() {
            self.stats.stale.fetch_add(1, Ordering::Relaxed);
            return Got::Stale(stale);
        }
        let result = match tokio::time::timeout(timing.timeout, pending).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timing.timeout)),
        };
        match result {
            Ok(f) => {
                self.stats.fresh.fetch_add(1, Ordering::Relaxed);
                Got::Fresh(f)
            }
            Err(error) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                Got::Failed { error, stale: good }
            }
        }
    }

    /// Starts the one fetch for `url`; it records its own result.
    fn start(self: Arc<Self>, url: String, entry: Arc<Mutex<Entry>>) -> Pending {
        let task = tokio::spawn(async move {
            self.stats.upstream_requests.fetch_add(1, Ordering::Relaxed);
            let result = match tokio::time::timeout(FETCH_LIMIT, self.fetch(&url)).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Timeout(FETCH_LIMIT)),
            };
            let mut e = entry.lock().unwrap();
            e.pending = None;
            match result {
                Ok(data) => {
                    let fetched = Arc::new(Fetched {
                        data,
                        fetched_at: SystemTime::now(),
                    });
                    e.good = Some(fetched.clone());
                    e.failures = 0;
                    e.last_error = None;
                    e.retry_at = None;
                    drop(e);
                    (self.keep)(&url, &fetched);
                    Ok(fetched)
                }
                Err(err) => {
                    self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    let backoff = backoff(e.failures);
                    e.failures += 1;
                    e.retry_at = Some(Instant::now() + backoff);
                    e.last_error = Some(err.clone());
                    e.unlogged_errors += 1;
                    if e.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        tracing::warn!(source = %url, error = %err, errors = e.unlogged_errors, "fragment source failed");
                        e.last_logged = Some(Instant::now());
                        e.unlogged_errors = 0;
                    }
                    Err(err)
                }
            }
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(FetchError::Connect(e.to_string())))
        }
        .boxed()
        .shared()
    }

    /// Notes a template that failed on a source's data, logged once per burst.
    pub fn template_failed(&self, rule: &str, error: &str) {
        self.stats.template_errors.fetch_add(1, Ordering::Relaxed);
        let mut last = self.template_logged.lock().unwrap();
        let due = last
            .get(rule)
            .is_none_or(|t: &Instant| t.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(rule, error, "fragment template failed on the source's data");
            last.insert(rule.to_string(), Instant::now());
        }
    }

    async fn fetch(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("outpost/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Connect(crate::error_chain(&e, ": ")))?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(http::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(FetchError::Redirect(to));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY)
        {
            return Err(FetchError::TooLarge);
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Connect(e.to_string())
                }
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| FetchError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Visitors who make a new source URL with each request (a query value
    /// in it) cannot grow the sources past the limit.
    #[test]
    fn sources_past_the_limit_are_forgotten() {
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let fragments = Fragments::remembering(50, Vec::new(), Box::new(|_, _| {}));
        let timing = Timing {
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            stale_for: Duration::ZERO,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..1000 {
                let url = format!("http://{refused}/s.json?q={i}");
                let got = fragments.get(&url, &timing).await;
                assert!(matches!(got, Got::Failed { .. }));
            }
        });
        let remembered = fragments.entries.len();
        assert!((1..=50).contains(&remembered), "{remembered} sources");
    }
}
