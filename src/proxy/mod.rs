//! Forwarding requests that a `proxy` rule matched to their upstream:
//! bodies streamed both ways within limits, headers about the connection
//! dropped, `X-Forwarded-*` set, GET/HEAD 200s kept when the rule says
//! `cache`, and 502/504 (the site's page for them) when the upstream fails.

mod cache;
mod error;
mod forward;
mod headers;
mod limits;
mod stats;

pub use cache::keepable;
pub use error::ProxyError;
pub use forward::{Proxy, Target};
pub use headers::Via;
pub use stats::ProxyStats;
