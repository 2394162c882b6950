//! What can go wrong between the proxy and an upstream.

use std::time::Duration;

use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the upstream: {0}")]
    Connect(String),
    #[error("the upstream's body failed: {0}")]
    Body(String),
    #[error("the request body is over {0} bytes")]
    RequestTooLarge(u64),
}

impl ProxyError {
    /// The status the visitor gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Connect(_) | ProxyError::Body(_) => StatusCode::BAD_GATEWAY,
        }
    }
}
