//! The request pipeline, the only caller of the stages, in order: resolve
//! the site, build the request context, evaluate the rules into a
//! decision, choose the body, transform the page, respond, log. Each
//! stage's work lives in its own module; [`Ctx`] carries what they found.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use ipnet::IpNet;

use crate::access_log::{self, AccessLog};
use crate::body;
use crate::context::{Geo, Given, Head, Network, RequestContext, SitePath};
use crate::ctx::Ctx;
use crate::experiments::Experiments;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy, Via};
use crate::respond::{self, Body, BoxError};
use crate::rules::{self, Decision, Outcome};
use crate::site;
use crate::transform::{self, Fragments};

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
    /// What forwards for `proxy` rules; `None` offline, where nothing is
    /// forwarded.
    pub proxy: Option<Arc<Proxy>>,
}

/// What `explain` and `outpost test` ask of the pipeline that the server
/// does not: a visitor's country given rather than looked up, and a trace
/// of what each rule made of the request. The server's [`Serve`] is
/// zero-sized and answers with constants, so it pays nothing for them.
pub trait Observe {
    /// The visitor's place and the time, in place of the lookup and the
    /// clock.
    fn given(&self) -> Given;
    /// Whether the rules record what each made of the request.
    fn trace(&self) -> bool;
}

/// How the server runs the pipeline: nothing given, nothing traced.
pub struct Serve;

impl Observe for Serve {
    fn given(&self) -> Given {
        Given::default()
    }
    fn trace(&self) -> bool {
        false
    }
}

/// How `explain` and rule tests run it: a place and a time given, every
/// rule traced.
pub struct Explain(pub Given);

impl Observe for Explain {
    fn given(&self) -> Given {
        self.0
    }
    fn trace(&self) -> bool {
        true
    }
}

/// A request's body as the pipeline takes it, for a proxy to pass on.
pub trait Upload:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> Upload for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

/// Answers one request; its body goes on only to a proxy's upstream.
pub async fn handle<U: Upload>(app: &App, req: Request<U>, peer: SocketAddr) -> Response<Body> {
    let (parts, upload) = req.into_parts();
    let head = Head {
        method: &parts.method,
        uri: &parts.uri,
        version: parts.version,
        headers: &parts.headers,
    };
    pipeline(app, head, peer, &Serve, upload).await.0
}

/// Answers one request through every stage, in order, also returning the
/// decision the rules made, if they ran. `upload` is the request's body.
pub async fn pipeline<O: Observe, U: Upload>(
    app: &App,
    head: Head<'_>,
    peer: SocketAddr,
    observe: &O,
    upload: U,
) -> (Response<Body>, Option<Decision>) {
    let mut ctx = Ctx::new(head, peer);
    // Sites and rules are one snapshot: a request never sees a new site
    // with old rules.
    let served = app.live.served();
    let (sites, rules) = (&served.sites, &served.rules);
    let (network, experiments) = (app.network(), &app.experiments);
    // An early answer (a bad host or path, the static path) skips the rest.
    let answered: Result<_, Response<Body>> = async {
        // site
        let (site, host) =
            site::resolve(sites, &head, app.live.ready()).map_err(respond::no_site)?;
        ctx.site = Some(site);
        // context: the path first; the rest only when a rule may apply
        let path = SitePath::parse(head.uri.path()).map_err(respond::bad_path)?;
        if !served.any_for(site, &path.path) {
            return Err(respond::static_file(site, &head, &path));
        }
        let given = observe.given();
        let context = RequestContext::build(&head, path, host, peer.ip(), &network, given);
        let context = &*ctx.context.insert(context);
        // rules, which see the page the path finds
        let lookup = &*ctx.lookup.insert(site.lookup(&context.path));
        let (page, trace) = (body::page(lookup), observe.trace());
        let request = rules::Request::new(context, site, sites, page, trace);
        let decision = rules::evaluate(rules, served.redirects_for(site), &request);
        let decision = ctx.decision.insert(decision);
        for a in &decision.conversions {
            experiments.convert(a);
        }
        // body: a proxy's from its upstream (not offline), else the site's
        if let Some(answer) = proxied(app, &request, decision, peer, upload).await {
            return Ok(answer);
        }
        let choose = body::choose(&app.fragments, &request, rules, lookup, decision);
        let content = Box::pin(choose).await;
        // transform
        let (page, edits) = (content.page(), &decision.edits);
        ctx.rendered = transform::page(app.live.rendered(), site, rules.generation, page, edits);
        // respond
        let (rendered, named) = (ctx.rendered.as_deref(), app.rules_header);
        let response = respond::decided(&request, decision, &content, rendered, experiments, named);
        Ok(response)
    }
    .await;
    let response = respond::checked(&app.live, answered.unwrap_or_else(|early| early));
    // log
    access_log::log(&app.log, app.metrics.as_ref(), &ctx, &response);
    (response, ctx.decision)
}

/// The answer of a proxy that fired, when the app forwards (offline it
/// does not): the upstream's, with the decision's headers on top.
async fn proxied<U: Upload>(
    app: &App,
    request: &rules::Request<'_>,
    decision: &mut Decision,
    peer: SocketAddr,
    upload: U,
) -> Option<Response<Body>> {
    let (
        Outcome::Proxy {
            url,
            rule,
            upstream,
        },
        Some(proxy),
    ) = (&decision.outcome, &app.proxy)
    else {
        return None;
    };
    let to = proxy::Target {
        url,
        rule,
        upstream,
    };
    let via = Via {
        peer: peer.ip(),
        trusted: crate::context::is_trusted(peer.ip(), &app.trusted_proxies),
    };
    // Boxed: its state is large, and the pipeline of every other request
    // would carry (and move) it too.
    let answer = Box::pin(proxy.forward(request, to, &via, upload)).await;
    let (method, named) = (request.ctx.method, app.rules_header);
    Some(respond::proxied(
        decision,
        answer,
        &app.experiments,
        method,
        named,
    ))
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
            proxy: Some(Proxy::new(Default::default())),
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

    /// What the context stage needs of the settings.
    fn network(&self) -> Network<'_> {
        Network {
            trusted_proxies: &self.trusted_proxies,
            geo: &self.geo,
        }
    }
}
