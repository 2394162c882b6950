//! One request forwarded: through the cache when the rule keeps answers
//! (GET and HEAD without `Authorization`), else straight up with its
//! body streamed. The upstream's answer comes back streamed, cut off past
//! `proxy_max_response_size` or when it stalls for the rule's `timeout`;
//! redirects are passed on, not followed. An upstream that fails answers
//! 502, one that is too slow 504, each with the site's page for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::FutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::cache::{Answer, Cache, Fetch, Stored};
use super::error::ProxyError;
use super::headers::{strip_hop_by_hop, upstream_request, Via};
use super::limits::{within, Download, Progress, Upload};
use super::stats::{CacheResult, ProxyStats, RuleStats};
use crate::access_log::CACHE_HEADER;
use crate::config::ProxyLimits;
use crate::respond::{self, Body, BoxError};
use crate::rules::{self, proxy::Upstream};
use crate::transform::fragments::connector;

type UpBody = UnsyncBoxBody<Bytes, BoxError>;

pub struct Proxy {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, UpBody>,
    cache: Arc<Cache>,
    limits: ProxyLimits,
    pub stats: ProxyStats,
}

/// Where a `proxy` rule sends a request.
pub struct Target<'a> {
    pub url: &'a str,
    pub rule: &'a Arc<str>,
    pub upstream: &'a Upstream,
}

impl Proxy {
    pub fn new(limits: ProxyLimits) -> Arc<Proxy> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector());
        Arc::new(Proxy {
            client,
            cache: Cache::new(limits.cache_size),
            limits,
            stats: ProxyStats::default(),
        })
    }

    /// The upstream's answer to `request`, which sent `upload` as its body.
    pub async fn forward<B>(
        self: &Arc<Self>,
        request: &rules::Request<'_>,
        to: Target<'_>,
        via: &Via,
        upload: B,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let ctx = request.ctx;
        let stats = self.stats.rule(to.rule);
        stats.request();
        let max = self.limits.max_request;
        let declared = ctx
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return self.failed(request, &to, &stats, &ProxyError::RequestTooLarge(max));
        }
        let read = *ctx.method == Method::GET || *ctx.method == Method::HEAD;
        let ttl = to.upstream.cache.filter(|_| read);
        // What a visitor's credentials fetched is theirs alone.
        let Some(ttl) = ttl.filter(|_| !ctx.headers.contains_key(header::AUTHORIZATION)) else {
            let upload = Upload::new(upload, max);
            let over = upload.over.clone();
            let progress = upload.progress.clone();
            let headers = upstream_request(ctx, via, &to.upstream.headers);
            let up = outgoing(to.url, ctx.method.clone(), headers, UpBody::new(upload));
            let sent = async {
                let timeout = to.upstream.timeout;
                self.send(up?, Some(progress), timeout, &stats).await
            };
            let mut response = match sent.await {
                Ok(response) => response,
                Err(_) if over.load(std::sync::atomic::Ordering::Relaxed) => {
                    let error = ProxyError::RequestTooLarge(max);
                    return self.failed(request, &to, &stats, &error);
                }
                Err(e) => return self.failed(request, &to, &stats, &e),
            };
            if to.upstream.cache.is_some() {
                mark(&mut response, CacheResult::Bypass);
            }
            return response;
        };
        self.cached(request, &to, via, ttl, stats).await
    }

    /// The answer of a rule that keeps answers, kept or fetched.
    async fn cached(
        self: &Arc<Self>,
        request: &rules::Request<'_>,
        to: &Target<'_>,
        via: &Via,
        ttl: Duration,
        stats: Arc<RuleStats>,
    ) -> Response<Body> {
        let head = *request.ctx.method == Method::HEAD;
        let timeout = to.upstream.timeout;
        // A HEAD is fetched as a GET, so that its answer serves both. The
        // headers are made only for a request that goes up.
        let fetch = || -> Fetch {
            let headers = upstream_request(request.ctx, via, &to.upstream.headers);
            let (this, url, stats) = (self.clone(), to.url.to_string(), stats.clone());
            async move {
                let empty = UpBody::new(Empty::new().map_err(|never| match never {}));
                let up = outgoing(&url, Method::GET, headers, empty)?;
                this.send(up, None, timeout, &stats).await
            }
            .boxed()
        };
        let answer = self
            .cache
            .get(to.url, request.ctx.headers, to.upstream, ttl, &fetch)
            .await;
        let (mut response, result) = match answer {
            Answer::Hit(s) => (from_cache(&s), CacheResult::Hit),
            Answer::Stale(s) => (from_cache(&s), CacheResult::Stale),
            Answer::Miss(s) => (from_cache(&s), CacheResult::Miss),
            Answer::Pass(Some(response)) => (response, CacheResult::Miss),
            // Another request took the answer it waited for: ask again.
            Answer::Pass(None) => match fetch().await {
                Ok(response) => (response, CacheResult::Miss),
                Err(e) => (self.failed(request, to, &stats, &e), CacheResult::Miss),
            },
            Answer::Failed(e) => (self.failed(request, to, &stats, &e), CacheResult::Miss),
        };
        stats.cache(result);
        mark(&mut response, result);
        if head {
            *response.body_mut() = Body::default();
        }
        response
    }

    /// Sends `up` upstream; its answer's head within `timeout` of the last
    /// piece of its body that went up (`progress`, for an upload).
    async fn send(
        &self,
        up: Request<UpBody>,
        progress: Option<Progress>,
        timeout: Duration,
        stats: &RuleStats,
    ) -> Result<Response<Body>, ProxyError> {
        let started = Instant::now();
        let answered = within(self.client.request(up), timeout, progress.as_deref()).await;
        let micros = started.elapsed().as_micros() as u64;
        let response = match answered {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                stats.upstream(micros, true);
                return Err(ProxyError::Connect(crate::error_chain(&e, ": ")));
            }
            None => {
                stats.upstream(micros, true);
                return Err(ProxyError::Timeout(timeout));
            }
        };
        stats.upstream(micros, response.status().is_server_error());
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = Download::new(body, self.limits.max_response, timeout);
        Ok(Response::from_parts(parts, Body::stream(body)))
    }

    /// The site's page for `error` (502, 504, 413), the error logged once
    /// in a while per rule.
    fn failed(
        &self,
        request: &rules::Request<'_>,
        to: &Target<'_>,
        stats: &RuleStats,
        error: &ProxyError,
    ) -> Response<Body> {
        if let Some(errors) = stats.due_for_log() {
            tracing::warn!(rule = %to.rule, upstream = to.url, %error, errors, "proxy failed");
        }
        let head = *request.ctx.method == Method::HEAD;
        respond::site_error(request.site, request.ctx.headers, head, error.status())
    }
}

/// The request that goes up.
fn outgoing(
    url: &str,
    method: Method,
    headers: HeaderMap,
    body: UpBody,
) -> Result<Request<UpBody>, ProxyError> {
    let mut up = Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .map_err(|e| ProxyError::Connect(e.to_string()))?;
    *up.headers_mut() = headers;
    Ok(up)
}

/// A kept answer, with its age.
fn from_cache(stored: &Stored) -> Response<Body> {
    let mut response = Response::new(Body::from(stored.body.clone()));
    let headers = response.headers_mut();
    *headers = stored.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(stored.age().as_secs()));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(stored.body.len() as u64),
    );
    response
}

/// Says what the cache made of the request, as CDNs do.
fn mark(response: &mut Response<Body>, result: CacheResult) {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(result.as_str()));
}
