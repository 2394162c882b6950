//! The pipeline without a server, for `explain` and `outpost test`: the
//! root's sites ingested into a throw-away store, its rules loaded, and
//! requests built from a URL and answered by the same handler the server
//! uses.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::{Request, Response};

use crate::access_log::AccessLog;
use crate::config::{AccessLogTarget, Diagnostic, Overrides, Settings};
use crate::context::{Country, Geo, Head};
use crate::handler::{self, App, Explain};
use crate::live::Live;
use crate::respond::Body;
use crate::rules::Decision;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{}", Diagnostic::lines(.0))]
    Config(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Geo(#[from] crate::context::geo::GeoError),
    #[error(transparent)]
    Rules(#[from] crate::rules::LoadError),
    #[error("cannot make a temporary store or runtime: {0}")]
    Temp(std::io::Error),
    #[error("`{0}` is not a URL like http://site.localhost/path")]
    Url(String),
}

/// A root folder loaded for answering requests in-process.
pub struct Offline {
    pub app: App,
    runtime: tokio::runtime::Runtime,
    _store_dir: tempfile::TempDir,
}

/// One request to answer: a URL plus what the visitor brings.
#[derive(Debug, Default, Clone)]
pub struct Visit {
    pub url: String,
    pub method: Option<String>,
    pub country: Option<Country>,
    /// When the request comes, instead of now.
    pub at: Option<jiff::Timestamp>,
    pub cookies: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Offline {
    pub fn load(root: &Path) -> Result<Offline, OfflineError> {
        let settings = Settings::load(root, &Overrides::default()).map_err(OfflineError::Config)?;
        let store_dir = tempfile::tempdir().map_err(OfflineError::Temp)?;
        let store = Store::open(&store_dir.path().join("offline.redb"))?;
        let live = Arc::new(Live::from_store(store, root.to_path_buf())?.read_only());
        live.refresh_all();
        if let Some(problem) = live.problems().into_values().next() {
            return Err(OfflineError::Config(vec![Diagnostic::whole_file(
                &root.join("sites"),
                problem,
            )]));
        }
        let problems = live.rules_problems();
        if !problems.is_empty() {
            return Err(OfflineError::Rules(crate::rules::LoadError(problems)));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OfflineError::Temp)?;
        let log = AccessLog::open(&AccessLogTarget::Off).expect("an off log opens");
        let geo = Arc::new(Geo::open(settings.geoip.as_deref())?);
        // Fragments spawn their fetches on the runtime they are made in.
        let app =
            runtime.block_on(async { App::new(live, log, geo, settings.trusted_proxies, true) });
        Ok(Offline {
            app,
            runtime,
            _store_dir: store_dir,
        })
    }

    /// Answers `visit` as the server would.
    pub fn answer(
        &self,
        visit: &Visit,
    ) -> Result<(Response<Body>, Option<Decision>), OfflineError> {
        let url = url::Url::parse(&visit.url).map_err(|_| OfflineError::Url(visit.url.clone()))?;
        let host = url
            .host_str()
            .ok_or_else(|| OfflineError::Url(visit.url.clone()))?;
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = Request::builder()
            .method(visit.method.as_deref().unwrap_or("GET"))
            .uri(path_and_query)
            .header(http::header::HOST, host);
        if !visit.cookies.is_empty() {
            let cookie: Vec<String> = visit
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(http::header::COOKIE, cookie.join("; "));
        }
        for (k, v) in &visit.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(())
            .map_err(|_| OfflineError::Url(visit.url.clone()))?;
        let peer: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
        let observe = Explain {
            country: visit.country,
            at: visit.at,
        };
        Ok(self.runtime.block_on(handler::pipeline(
            &self.app,
            Head::from(&req),
            peer,
            &observe,
        )))
    }
}

/// The whole body of a response made by the handler.
pub fn body_bytes(response: &Response<Body>) -> bytes::Bytes {
    use http_body::Body as _;
    let mut body = response.body().clone();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut out = bytes::BytesMut::new();
    while let std::task::Poll::Ready(Some(Ok(frame))) =
        std::pin::Pin::new(&mut body).poll_frame(&mut cx)
    {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    out.freeze()
}
