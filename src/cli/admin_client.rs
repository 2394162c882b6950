//! Asks a running server's admin listener (`admin_listen`) for a JSON
//! document, read into a typed value: hyper's client, the admin token when
//! the settings have one, a time limit, and errors that say what to do.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// The admin listener is local or near: a server that takes longer to
/// accept is not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// For the whole exchange, the answer's body included.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("nothing answers ({0}): is the server running, on this outpost.toml's admin_listen?")]
    Connect(String),
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("the exchange failed: {0}")]
    Exchange(String),
    #[error(
        "it asks for the admin token (401): set admin_token in outpost.toml as the server has it"
    )]
    NoToken,
    #[error(
        "it refused the admin_token of outpost.toml (401): is it the one the server runs with?"
    )]
    WrongToken,
    #[error("GET {path} answered {status}: {text}")]
    Status {
        path: String,
        status: StatusCode,
        text: String,
    },
    #[error("GET {path} did not answer the JSON expected")]
    NotJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

pub struct AdminClient {
    addr: SocketAddr,
    token: Option<String>,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl AdminClient {
    /// A client for the listener at `addr`, sending `token` as a bearer
    /// token when there is one. Call it inside a Tokio runtime.
    pub fn new(addr: SocketAddr, token: Option<String>) -> AdminClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        AdminClient {
            addr,
            token,
            timeout: TIMEOUT,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The JSON document at `path` (like `/status`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let (status, body) = tokio::time::timeout(self.timeout, self.fetch(path))
            .await
            .map_err(|_| AdminError::Timeout(self.timeout))??;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED if self.token.is_some() => return Err(AdminError::WrongToken),
            StatusCode::UNAUTHORIZED => return Err(AdminError::NoToken),
            status => {
                let text = String::from_utf8_lossy(&body);
                return Err(AdminError::Status {
                    path: path.to_string(),
                    status,
                    text: text.lines().next().unwrap_or_default().to_string(),
                });
            }
        }
        serde_json::from_slice(&body).map_err(|source| AdminError::NotJson {
            path: path.to_string(),
            source,
        })
    }

    async fn fetch(&self, path: &str) -> Result<(StatusCode, Bytes), AdminError> {
        let mut request = Request::get(format!("http://{}{path}", self.addr));
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| AdminError::Exchange(e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| {
            // The innermost cause says it: "Connection refused (os error 111)".
            let reason = innermost(&e);
            if e.is_connect() {
                AdminError::Connect(reason)
            } else {
                AdminError::Exchange(reason)
            }
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AdminError::Exchange(innermost(&e)))?;
        Ok((status, body.to_bytes()))
    }
}

fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Status {
        ready: bool,
    }

    /// An admin-like listener on a free port: `/status` answers JSON,
    /// `/locked` wants a token, `/text` is not JSON, `/gone` is missing.
    async fn listener() -> SocketAddr {
        let app = axum::Router::new()
            .route("/status", get(|| async { r#"{"ready": true, "more": 1}"# }))
            .route(
                "/locked",
                get(|| async { (StatusCode::UNAUTHORIZED, "wrong or missing admin token\n") }),
            )
            .route("/text", get(|| async { "ok\n" }))
            .route(
                "/gone",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "starting\nmore\n") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn reads_a_typed_answer_and_says_why_not() {
        let addr = listener().await;
        let client = AdminClient::new(addr, None);
        assert_eq!(
            client.get::<Status>("/status").await.unwrap(),
            Status { ready: true }
        );
        let err = client.get::<Status>("/locked").await.unwrap_err();
        assert!(matches!(err, AdminError::NoToken), "{err}");
        let with_token = AdminClient::new(addr, Some("t".into()));
        let err = with_token.get::<Status>("/locked").await.unwrap_err();
        assert!(matches!(err, AdminError::WrongToken), "{err}");
        let err = client.get::<Status>("/text").await.unwrap_err();
        assert!(matches!(err, AdminError::NotJson { .. }), "{err}");
        let err = client.get::<Status>("/gone").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET /gone answered 503 Service Unavailable: starting"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_server_not_running() {
        let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let err = AdminClient::new(addr, None)
            .get::<Status>("/status")
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::Connect(_)), "{err}");
        assert!(err.to_string().contains("is the server running"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = AdminClient::new(silent.local_addr().unwrap(), None);
        client.timeout = Duration::from_millis(50);
        let err = client.get::<Status>("/status").await.unwrap_err();
        assert!(matches!(err, AdminError::Timeout(_)), "{err}");
        drop(silent);
    }
}
