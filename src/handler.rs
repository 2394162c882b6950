//! The request pipeline, the only caller of the stages, in order:
//! resolve the site, build the request context, look the path up in the
//! site's version, evaluate the rules into a decision, transform the page,
//! respond, log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use ipnet::IpNet;

use crate::access_log::{self, AccessLog, Entry};
use crate::compress;
use crate::context::{request_host, Country, Geo, Network, PathError, RequestContext, SitePath};
use crate::experiments::Experiments;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::respond::{self, Body};
use crate::rules::fragment::{Needed, OnError};
use crate::rules::{self, Decision, Outcome, Rules};
use crate::site::Sites;
use crate::store::{Damaged, Encoding, Lookup, SiteVersion, StoredFile};
use crate::transform::{self, Edit, Fragments, Got, Op, Place, RenderKey, Rendered, Rewritten};

/// What the pipeline needs, shared by every connection.
pub struct App {
    pub live: Arc<Live>,
    pub log: AccessLog,
    pub geo: Arc<Geo>,
    pub trusted_proxies: Vec<IpNet>,
    /// Name the rules that fired in an `X-Outpost-Rules` response header.
    pub rules_header: bool,
    pub experiments: Arc<Experiments>,
    pub fragments: Arc<Fragments>,
    /// Request counts for /metrics; `None` when turned off.
    pub metrics: Option<Metrics>,
}

impl App {
    /// Wires the pipeline to `live`: experiment counts and fragment copies
    /// start from what the store kept.
    pub fn new(
        live: Arc<Live>,
        log: AccessLog,
        geo: Arc<Geo>,
        trusted_proxies: Vec<IpNet>,
        rules_header: bool,
    ) -> App {
        let experiments = live.store().experiments().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "experiment counts unreadable; starting from zero");
            Vec::new()
        });
        let saved = live
            .store()
            .fragments()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| {
                let data = serde_json::from_slice(&row.json).ok()?;
                let fetched_at =
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(row.fetched_unix_ms);
                Some((row.url, transform::Fetched { data, fetched_at }))
            })
            .collect();
        let keeper = live.clone();
        let keep = Box::new(move |url: &str, f: &transform::Fetched| {
            let at = crate::store::unix_ms(f.fetched_at);
            let json = serde_json::to_vec(&f.data).unwrap_or_default();
            if let Err(e) =
                keeper
                    .store()
                    .save_fragment(url, at, &json, transform::fragments::MAX_SOURCES)
            {
                tracing::warn!(error = %e, "cannot keep fragment copy");
            }
        });
        App {
            live,
            log,
            geo,
            trusted_proxies,
            rules_header,
            experiments: Arc::new(Experiments::from_saved(experiments)),
            fragments: Fragments::new(saved, keep),
            metrics: Some(Metrics::default()),
        }
    }

    /// Saves experiment counts that changed since the last save.
    pub fn save_counts(&self) {
        if let Some(rows) = self.experiments.take_changes() {
            if let Err(e) = self.live.store().save_experiments(&rows) {
                tracing::warn!(error = %e, "cannot save experiment counts");
            }
        }
    }
}

/// What one request did, for the access log.
#[derive(Default)]
struct Seen {
    /// The visitor's address, once the context found it behind proxies.
    client: Option<std::net::IpAddr>,
    country: Option<Country>,
    fired: Vec<String>,
    variant: Option<String>,
}

/// Answers one request.
pub async fn handle<B>(app: &App, req: &Request<B>, client: SocketAddr) -> Response<Body> {
    handle_as(app, req, client, None, false).await.0
}

/// [`handle`], also returning the decision the rules made, if they ran.
/// `country` overrides the visitor's country, and `trace` records what each
/// rule made of the request (for `explain` and rule tests).
pub async fn handle_as<B>(
    app: &App,
    req: &Request<B>,
    client: SocketAddr,
    country: Option<Country>,
    trace: bool,
) -> (Response<Body>, Option<Decision>) {
    let started = Instant::now();
    let sites = app.live.sites();
    let rules = app.live.rules();
    let host = request_host(req.uri(), req.headers());

    let mut seen = Seen::default();
    let mut decision = None;
    let (mut response, site) = match host {
        Err(e) => (respond::plain(StatusCode::BAD_REQUEST, e.answer()), None),
        // RFC 9112 §3.2: a 1.1 request without Host is malformed.
        Ok(None) if req.version() == Version::HTTP_11 => (
            respond::plain(StatusCode::BAD_REQUEST, "400 Bad Request: no Host header\n"),
            None,
        ),
        Ok(host) => match sites.resolve(host) {
            // Until the first scan ends, a host no loaded site claims may be
            // a site not loaded yet: neither the default site nor a 404.
            _ if !app.live.ready() && sites.claimant(host).is_none() => (respond::starting(), None),
            None => (
                respond::plain(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no site for this host\n",
                ),
                None,
            ),
            Some(site) => {
                let input = Input {
                    app,
                    rules: &rules,
                    sites: &sites,
                    site,
                    req,
                    host: host.unwrap_or(""),
                    client,
                    country,
                    trace,
                };
                let (res, d) = serve(&input, &mut seen).await;
                decision = d;
                (res, Some(site))
            }
        },
    };

    if response.status() == StatusCode::NOT_FOUND && !app.live.ready() {
        // The page may be new on disk and not scanned yet.
        response = respond::starting();
    }
    if let Some(damaged) = response.extensions_mut().remove::<Damaged>() {
        app.live.repair(damaged);
    }
    let bytes = || {
        http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0)
    };
    if let Some(metrics) = &app.metrics {
        let name = site.map_or("", |s| s.site.as_str());
        metrics.observe(
            name,
            response.status().as_u16(),
            bytes(),
            started.elapsed().as_micros() as u64,
        );
    }
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
            country: seen.country.map(|c| c.to_string()),
            rules: seen.fired,
            variant: seen.variant,
            version: site.map(|s| s.number),
            client: seen.client.unwrap_or(client.ip()),
        });
    }
    (response, decision)
}

struct Input<'a, B> {
    app: &'a App,
    rules: &'a Rules,
    sites: &'a Sites,
    site: &'a SiteVersion,
    req: &'a Request<B>,
    host: &'a str,
    client: SocketAddr,
    country: Option<Country>,
    trace: bool,
}

/// Serves a request from one version of its site and one generation of rules.
async fn serve<B>(input: &Input<'_, B>, seen: &mut Seen) -> (Response<Body>, Option<Decision>) {
    let Input {
        app,
        rules,
        site,
        req,
        ..
    } = *input;
    let path = match SitePath::parse(req.uri().path()) {
        Ok(p) => p,
        Err(PathError::TooLong) => {
            return (
                respond::plain(StatusCode::URI_TOO_LONG, "414 URI Too Long\n"),
                None,
            )
        }
        Err(PathError::Invalid) => {
            return (
                respond::plain(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
                None,
            )
        }
    };
    if !rules.any_for(&site.site, &path.path) {
        return (serve_static(site, req, &path), None);
    }

    // Context, then rules.
    let network = Network {
        trusted_proxies: &app.trusted_proxies,
        geo: &app.geo,
    };
    let ctx = RequestContext::build(
        req.method(),
        path,
        req.uri().query(),
        input.host,
        req.headers(),
        input.client.ip(),
        &network,
        input.country,
    );
    seen.country = Some(ctx.country);
    seen.client = Some(ctx.client);
    let path = &ctx.path;
    let lookup = site.lookup(path);
    let page = match &lookup {
        Lookup::Found(f) => Some(f.as_ref()),
        _ => None,
    };
    let request = rules::Request {
        ctx: &ctx,
        site,
        sites: input.sites,
        page,
        trace: input.trace,
    };
    let mut decision = rules::evaluate(rules, &request);
    // Only the access log reads these.
    if app.log.enabled() {
        seen.fired = decision.fired.iter().map(|n| n.to_string()).collect();
        if !decision.variants.is_empty() {
            let names: Vec<String> = decision
                .variants
                .iter()
                .map(|a| format!("{}={}", a.experiment, a.variant))
                .collect();
            seen.variant = Some(names.join(","));
        }
    }
    // A variant served as another file; the control when that file is gone.
    let variant_file = match (&decision.serve, &lookup) {
        (Some(serve), Lookup::Found(_)) => match SitePath::parse(serve).map(|p| site.lookup(&p)) {
            Ok(Lookup::Found(f)) => Some(f.clone()),
            _ => {
                tracing::error!(site = %site.site, file = %serve, "variant file missing; serving the control");
                None
            }
        },
        _ => None,
    };
    for a in &decision.conversions {
        app.experiments.convert(a);
    }
    if !decision.fragments.is_empty() && matches!(decision.outcome, Outcome::Serve) {
        let mut render = rules::Render::new(&request, &rules.templates);
        let filled = fill_fragments(&app.fragments, &decision.fragments, &mut render).await;
        decision.edits.extend(filled);
    }

    let head = req.method() == Method::HEAD;
    // Whether the page went out, and its render: what a draw was shown.
    let mut page_served = false;
    let mut rendered = None;
    let mut response = match &decision.outcome {
        Outcome::Redirect { status, location } => respond::redirect(*status, location),
        Outcome::Block { status, page } => {
            let file = page
                .as_deref()
                .and_then(|p| SitePath::parse(p).ok())
                .and_then(|p| match site.lookup(&p) {
                    Lookup::Found(f) => Some(f.clone()),
                    _ => None,
                });
            match file {
                Some(f) => respond::file(req.headers(), head, &f, *status, &[]),
                None => respond::plain(*status, "Unavailable\n"),
            }
        }
        Outcome::Hidden => {
            // Exactly as a missing page: same page, same headers, and the
            // rule that hid it is not named.
            let mut response = not_found(site, req);
            settle_variants(app, req.method(), &mut decision, None);
            let shown = &decision.fired[..decision.fired.len().saturating_sub(1)];
            finish(&mut response, &decision, app.rules_header.then_some(shown));
            return (response, Some(decision));
        }
        Outcome::Serve => match (req.method(), &lookup) {
            (&Method::GET | &Method::HEAD, Lookup::Found(file)) => {
                let file = variant_file.as_ref().unwrap_or(file);
                let extra = site_headers(site, path);
                page_served = true;
                let page = if file.is_html() && !decision.edits.is_empty() {
                    let key = RenderKey::new(
                        &site.site,
                        site.number,
                        rules.generation,
                        file,
                        &decision.edits,
                    );
                    let done = app
                        .live
                        .rendered()
                        .get_or_render(key, || render(file, &decision.edits));
                    let page = done.page.clone();
                    rendered = Some(done);
                    page
                } else {
                    (*file).clone()
                };
                respond::file(req.headers(), head, &page, StatusCode::OK, &extra)
            }
            _ => serve_static(site, req, path),
        },
    };
    let matched = rendered.as_ref().map_or(&[][..], |r| &r.matched[..]);
    let shown = page_served.then_some((variant_file.is_some(), matched));
    settle_variants(app, req.method(), &mut decision, shown);
    finish(
        &mut response,
        &decision,
        app.rules_header.then_some(&decision.fired[..]),
    );
    (response, Some(decision))
}

/// Marks each variant of the response applied or not, and counts the
/// visitors a GET or HEAD drew into one: an exposure when the page went out
/// showing the variant as written, else not applied. `shown`, when the page
/// went out: whether the variant file was served, and which edits matched.
/// When it did not (a redirect, a block, a gate, a missing page), the draw
/// is not kept: the visitor saw nothing of the experiment, and is drawn and
/// counted on the page.
fn settle_variants(
    app: &App,
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
            app.experiments.expose(a, a.applied);
        }
    }
}

/// The static path: no rule applies to the site.
fn serve_static<B>(site: &SiteVersion, req: &Request<B>, path: &SitePath) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return respond::method_not_allowed(),
    };
    match site.lookup(path) {
        Lookup::Found(file) => respond::file(
            req.headers(),
            head,
            file,
            StatusCode::OK,
            &site_headers(site, path),
        ),
        Lookup::AddSlash => {
            let location = match req.uri().query() {
                Some(q) => format!("{}/?{q}", path.path),
                None => format!("{}/", path.path),
            };
            respond::redirect(StatusCode::PERMANENT_REDIRECT, &location)
        }
        Lookup::Missing => not_found(site, req),
    }
}

fn not_found<B>(site: &SiteVersion, req: &Request<B>) -> Response<Body> {
    match site.not_found_page() {
        Some(page) => respond::file(
            req.headers(),
            req.method() == Method::HEAD,
            page,
            StatusCode::NOT_FOUND,
            &[],
        ),
        None => respond::plain(StatusCode::NOT_FOUND, "404 Not Found\n"),
    }
}

/// The site's configured headers for a path.
fn site_headers(site: &SiteVersion, path: &SitePath) -> Vec<(header::HeaderName, HeaderValue)> {
    site.config
        .headers
        .iter()
        .filter(|rule| rule.glob.is_match(&path.path))
        .flat_map(|rule| rule.headers.iter().cloned())
        .collect()
}

/// Fetches every fragment at once (each within its own timeout) and turns
/// them into edits.
async fn fill_fragments(
    fragments: &Arc<Fragments>,
    needed: &[Needed],
    render: &mut rules::Render<'_>,
) -> Vec<Edit> {
    let got =
        futures_util::future::join_all(needed.iter().map(|n| fragments.get(&n.url, &n.timing)))
            .await;
    let mut edits = Vec::new();
    for (n, got) in needed.iter().zip(got) {
        let data = match got {
            Got::Fresh(f) | Got::Stale(f) => Some(f),
            Got::Failed { stale, .. } if n.on_error == OnError::Stale => stale,
            Got::Failed { .. } => None,
        };
        // The same copy of the data (same allocation, same fetch time) is the
        // same data.
        let rendered = data.map(|f| {
            let fetched = f
                .fetched_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let identity = (Arc::as_ptr(&f) as u64).rotate_left(17) ^ fetched;
            render.render(&n.template, Some(("data", identity, &|| f.data.clone())))
        });
        let html = match rendered {
            Some(Ok(html)) => Some(html),
            Some(Err(e)) => {
                fragments.template_failed(&n.rule, &e);
                None
            }
            None => None,
        };
        let op = match (html, n.on_error) {
            (Some(html), _) => Op::SetHtml(html),
            (None, OnError::Keep) => continue,
            (None, OnError::Stale | OnError::Empty) => Op::SetHtml("".into()),
        };
        edits.push(Edit {
            slot: n.slot,
            place: Place::Selector(n.selector.clone()),
            op,
        });
    }
    edits
}

/// Applies the decision's edits to a page, compressing the result once.
fn render(file: &Arc<StoredFile>, edits: &[transform::Edit]) -> Rendered {
    // A damaged page is left as it is, for `respond` to refuse.
    let source = file.checked_body(Encoding::Identity).ok();
    let Some(Rewritten { html, matched }) = source.and_then(|s| transform::apply(s, edits)) else {
        return Rendered {
            page: file.clone(),
            matched: Box::default(),
        };
    };
    let hash = crate::store::content_hash(&html);
    // Only HTML is rendered: named so, for its content type and compression.
    let name = "page.html";
    let (gzip, br) = compress::for_storage(name, &html);
    Rendered {
        page: Arc::new(StoredFile::new(
            name,
            hash,
            crate::store::unix_ms(file.last_modified),
            html.into(),
            gzip,
            br,
        )),
        matched: matched.into(),
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
