//! Listeners: accepts connections, speaks HTTP/1.1 and HTTP/2 (hyper), hands
//! each request to the pipeline, and drains in-flight requests on SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connections::{Admit, Connections};
use crate::fleet::logs::FleetLog;
use crate::fleet::report::{Figures, FragmentHealth, Member, ReadFigures, RulesHealth};
use crate::fleet::{BoxState, Hub};
use crate::handler::{self, App};
use crate::live::Live;
use crate::respond::{self, Body};
use crate::zero_copy;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 64 * 1024;

/// What a listener does with its requests.
#[derive(Clone, Copy)]
pub enum Role {
    Serve,
    /// Redirect every request to HTTPS on this port.
    RedirectToHttps(u16),
}

/// Connection limits, shared by every listener.
#[derive(Clone)]
pub struct Limits {
    /// Closes a connection that has not sent a whole request head in this
    /// time, including connections idle that long.
    pub header_timeout: Duration,
    pub connections: Arc<Connections>,
}

/// Serves `listener` until `shutdown` flips, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    role: Role,
    app: Arc<App>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Behind a trusted proxy one address carries many clients.
        let capped = !crate::context::is_trusted(client.ip(), &app.trusted_proxies);
        // At the connection limit, the connection idle longest makes room;
        // until it has, new connections wait.
        let conn = tokio::select! {
            admitted = limits.connections.admit(client.ip(), capped) => match admitted {
                Admit::Serve(conn) => conn,
                Admit::Refuse => continue,
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let header_timeout = limits.header_timeout;
        let shutdown = shutdown.clone();
        let requests = conn.requests();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            let busy = requests.start();
            async move {
                let _busy = busy;
                Ok::<_, Infallible>(match role {
                    Role::Serve => handler::handle(&app, req, client).await,
                    Role::RedirectToHttps(port) => to_https(&req, port),
                })
            }
        });
        match &tls {
            None => {
                let builder = builder.clone();
                tokio::spawn(async move {
                    let stream = TokioIo::new(conn.watch(zero_copy::Stream::new(stream)));
                    let http = builder.serve_connection_with_upgrades(stream, service);
                    conn.serve(http, header_timeout, shutdown).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    // The handshake gets the same time as a request head.
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                    let Some(Ok(Ok(stream))) = conn.unless_shed(handshake).await else {
                        return;
                    };
                    let stream = TokioIo::new(conn.watch(stream));
                    let http = builder.serve_connection_with_upgrades(stream, service);
                    conn.serve(http, header_timeout, shutdown).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, limits.connections.drained())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
}

/// `308` to the same URL over HTTPS.
fn to_https<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = match crate::context::request_host(req.uri(), req.headers()) {
        Ok(host) => host.unwrap_or(""),
        Err(e) => return respond::plain(StatusCode::BAD_REQUEST, e.answer()),
    };
    // The port, checked valid, is the plain one: drop it.
    let name = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(n, _)| n);
    if name.is_empty() {
        return respond::plain(StatusCode::BAD_REQUEST, "400 Bad Request\n");
    }
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    respond::redirect(
        StatusCode::PERMANENT_REDIRECT,
        &format!("https://{name}{port}{path}"),
    )
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The address a listener really bound (port 0 becomes a real port).
/// Connections the kernel may hold ready before they are accepted. Linux
/// caps it at `net.core.somaxconn` (4096 by default): a burst of new
/// connections waits in the queue instead of having its SYNs dropped and
/// retried a second later (tokio's default is 1024).
const BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            // As std and tokio do: a restart can bind while old
            // connections linger in TIME_WAIT.
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(BACKLOG)
        })
        .map_err(|source| ServeError::Bind { addr, source })
}

pub fn bound(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch for file changes: {0}")]
    Watch(#[from] notify::Error),
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error(transparent)]
    Geo(#[from] crate::context::geo::GeoError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

/// Starts outpost on a root folder: serves what the store has at once, then
/// scans sites/ and follows its changes (and the fleet's) until SIGTERM.
pub async fn serve(settings: crate::config::Settings) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let geo = Arc::new(crate::context::Geo::open(settings.geoip.as_deref())?);
    let live = open_live(&settings, started)?;
    let fleet_log = crate::fleet::logs::FleetLog::new(&settings.fleet);
    let app = start_app(&settings, &live, geo.clone(), fleet_log.as_ref())?;
    let _geo_watcher = match &settings.geoip {
        Some(path) => Some(crate::context::geo::watch(geo, path.clone())?),
        None => None,
    };
    let fleet = join_fleet(&settings, &app, fleet_log.clone()).await?;
    let (stop, stopped) = watch::channel(false);
    let joined = Joined {
        member: fleet.clone(),
        log: fleet_log,
    };
    let (mut servers, addr, _cert_watcher) = listen(&settings, &app, joined, stopped).await?;
    tracing::info!(%addr, ms = started.elapsed().as_millis() as u64, sites = live.sites().iter().count(), "serving");

    if let Some(addr) = settings.demo_upstream {
        tokio::spawn(async move {
            if let Err(e) = crate::demo_upstream::serve(addr).await {
                tracing::error!(%addr, error = %e, "demo scores upstream failed");
            }
        });
    }
    let _watcher = crate::watch::watch_root(live.clone(), &settings.root)?;
    if let Some(member) = &fleet {
        tokio::spawn(crate::fleet::follow(
            member.hub.clone(),
            settings.root.clone(),
            live.clone(),
            member.state.clone(),
        ));
    }
    let scan = live.clone();
    tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        scan.refresh_all();
        tracing::info!(ms = t.elapsed().as_millis() as u64, "sites scanned");
    });

    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop.send(true);
    while servers.join_next().await.is_some() {}
    app.save_counts();
    let log = app.log.clone();
    let _ = tokio::task::spawn_blocking(move || log.flush()).await;
    live.store().close();
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store and serves its current versions at once, with the rules
/// loaded: a warm store serves from the first request, and gated pages are
/// gated from the first answer.
fn open_live(
    settings: &crate::config::Settings,
    started: std::time::Instant,
) -> Result<Arc<Live>, ServeError> {
    let store =
        crate::store::Store::open(&settings.store)?.with_compress_max(settings.compress_max_size);
    let opened = started.elapsed().as_millis() as u64;
    let live = Arc::new(
        Live::from_store(store, settings.root.clone())?
            .with_render_cache_size(settings.render_cache_size),
    );
    tracing::info!(
        store_ms = opened,
        loaded_ms = started.elapsed().as_millis() as u64,
        "store opened and current versions loaded"
    );
    let _ = live.reload_rules();
    Ok(live)
}

/// The pipeline's shared state, with its counts saved every second; the
/// access log's lines also go to `fleet_log`, when the box ships them.
fn start_app(
    settings: &crate::config::Settings,
    live: &Arc<Live>,
    geo: Arc<crate::context::Geo>,
    fleet_log: Option<&Arc<FleetLog>>,
) -> Result<Arc<App>, ServeError> {
    let log = crate::access_log::AccessLog::open_with(
        &settings.access_log,
        fleet_log.map(FleetLog::sink),
    )
    .map_err(ServeError::AccessLog)?;
    let mut app = App::new(
        live.clone(),
        log,
        geo,
        settings.trusted_proxies.clone(),
        settings.rules_header,
    );
    if !settings.metrics {
        app.metrics = None;
    }
    app.proxy = Some(crate::proxy::Proxy::new(settings.proxy));
    let app = Arc::new(app);
    let saver = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let app = saver.clone();
            let _ = tokio::task::spawn_blocking(move || {
                app.live.keep_store();
                app.save_counts()
            })
            .await;
        }
    });
    Ok(app)
}

/// Joins the fleet when `[fleet] url` is set: connects in the background
/// (the box serves with the hub down), reports every second and ships its
/// log lines.
async fn join_fleet(
    settings: &crate::config::Settings,
    app: &Arc<App>,
    logs: Option<Arc<FleetLog>>,
) -> Result<Option<Member>, ServeError> {
    let f = &settings.fleet;
    let Some(url) = &f.url else { return Ok(None) };
    let hub = Hub::join(url).await?;
    let instance = app.live.store().instance()?;
    let state = Arc::new(BoxState::new(f.box_id.clone(), instance));
    tracing::info!(box_id = %state.id, store = %state.instance, url, "joining the fleet");
    tokio::spawn(crate::fleet::report::report(
        hub.clone(),
        state.clone(),
        figures(app.clone(), logs.clone()),
        f.stale_after,
    ));
    if let Some(logs) = &logs {
        tokio::spawn(crate::fleet::logs::ship(
            hub.clone(),
            logs.clone(),
            f.clone(),
            state.instance.clone(),
        ));
    }
    Ok(Some(Member {
        hub,
        state,
        stale_after: f.stale_after,
    }))
}

/// What a box reports of itself, read from its parts.
fn figures(app: Arc<App>, logs: Option<Arc<FleetLog>>) -> ReadFigures {
    Box::new(move || {
        let rules = app.live.rules();
        let f = &app.fragments.stats;
        let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        Figures {
            rules: RulesHealth {
                generation: rules.generation,
                errors: app
                    .live
                    .rules_problems()
                    .iter()
                    .map(|d| d.to_string())
                    .collect(),
            },
            traffic: app
                .metrics
                .as_ref()
                .map(|m| m.traffic(std::time::Instant::now())),
            fragments: FragmentHealth {
                fresh: read(&f.fresh),
                stale: read(&f.stale),
                failed: read(&f.failed),
                upstream_errors: read(&f.upstream_errors),
            },
            experiments: app.experiments.rows(),
            designs: crate::experiments::designs(&rules),
            log_lines_dropped: logs.as_ref().map_or(0, |l| l.dropped()),
        }
    })
}

/// The running servers, the HTTP address, and the certificate's watcher.
type Listening = (
    tokio::task::JoinSet<()>,
    SocketAddr,
    Option<notify::RecommendedWatcher>,
);

/// The box's part in a fleet, as the admin listener shows it.
struct Joined {
    member: Option<Member>,
    log: Option<Arc<FleetLog>>,
}

/// Binds every listener (HTTPS when configured, HTTP, admin) and serves
/// them until `stopped`; the certificate's watcher must live as long as
/// the servers do.
async fn listen(
    settings: &crate::config::Settings,
    app: &Arc<App>,
    fleet: Joined,
    stopped: watch::Receiver<bool>,
) -> Result<Listening, ServeError> {
    let listener = bind(settings.listen).await?;
    let addr = bound(&listener);
    let tls = match &settings.tls {
        None => None,
        Some(t) => {
            let certificate = crate::tls::Certificate::open(&t.cert, &t.key)?;
            let tcp = bind(t.listen).await?;
            Some((tcp, certificate, t.redirect_http))
        }
    };
    let admin_listener = bind(settings.admin_listen).await?;
    let admin_addr = bound(&admin_listener);
    let admin = crate::admin::router(Arc::new(crate::admin::Admin {
        app: app.clone(),
        token: settings.admin_token.clone(),
        fleet: fleet.member,
        fleet_log: fleet.log,
    }));
    let mut admin_stopped = stopped.clone();
    tokio::spawn(async move {
        let _ = axum::serve(admin_listener, admin)
            .with_graceful_shutdown(async move {
                let _ = admin_stopped.changed().await;
            })
            .await;
    });
    let limits = Limits {
        header_timeout: settings.header_timeout,
        connections: Connections::new(
            settings.max_connections,
            settings.max_connections_per_client,
        ),
    };
    let mut servers = tokio::task::JoinSet::new();
    let mut cert_watcher = None;
    let plain_role = match tls {
        None => Role::Serve,
        Some((tcp, certificate, redirect)) => {
            let https_addr = bound(&tcp);
            println!("https on {https_addr}");
            cert_watcher = Some(crate::tls::watch(certificate.clone())?);
            let acceptor = tokio_rustls::TlsAcceptor::from(certificate.server_config());
            servers.spawn(run(
                tcp,
                Some(acceptor),
                Role::Serve,
                app.clone(),
                limits.clone(),
                stopped.clone(),
            ));
            if redirect {
                Role::RedirectToHttps(https_addr.port())
            } else {
                Role::Serve
            }
        }
    };
    servers.spawn(run(
        listener,
        None,
        plain_role,
        app.clone(),
        limits,
        stopped,
    ));
    // Tests and scripts wait for these lines.
    println!("admin on {admin_addr}");
    println!("listening on {addr}");
    Ok((servers, addr, cert_watcher))
}
