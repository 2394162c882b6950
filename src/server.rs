//! Listeners: accepts connections, speaks HTTP/1.1 and HTTP/2 (hyper), hands
//! each request to the pipeline, and drains in-flight requests on SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::handler::{self, App};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
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
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handler::handle(&app, &req, client).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
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
}

/// Starts outpost on a root folder: serves what the store has at once, then
/// scans sites/ and follows its changes until SIGTERM.
pub async fn serve(settings: crate::config::Settings) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let geo = Arc::new(crate::context::Geo::open(settings.geoip.as_deref())?);
    let store = crate::store::Store::open(&settings.store)?;
    let live = Arc::new(crate::live::Live::from_store(store, settings.root.clone())?);
    let log =
        crate::access_log::AccessLog::open(&settings.access_log).map_err(ServeError::AccessLog)?;
    let app = Arc::new(App::new(
        live.clone(),
        log,
        geo.clone(),
        settings.trusted_proxies.clone(),
        settings.rules_header,
    ));
    let saver = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let app = saver.clone();
            let _ = tokio::task::spawn_blocking(move || app.save_counts()).await;
        }
    });
    let _geo_watcher = match &settings.geoip {
        Some(path) => Some(crate::context::geo::watch(geo, path.clone())?),
        None => None,
    };

    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = bound(&listener);
    // Tests and scripts wait for this line.
    println!("listening on {addr}");
    tracing::info!(%addr, ms = started.elapsed().as_millis() as u64, sites = live.sites().iter().count(), "serving");

    if let Some(addr) = settings.demo_upstream {
        tokio::spawn(async move {
            if let Err(e) = crate::demo_upstream::serve(addr).await {
                tracing::error!(%addr, error = %e, "demo scores upstream failed");
            }
        });
    }
    let _watcher = crate::watch::watch_root(live.clone(), &settings.root)?;
    let scan = live.clone();
    tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        scan.refresh_all();
        tracing::info!(ms = t.elapsed().as_millis() as u64, "sites scanned");
    });

    run(listener, app.clone(), shutdown_signal()).await;
    app.save_counts();
    tracing::info!("stopped");
    Ok(())
}
