//! outpost: one binary that serves many static sites from an embedded store
//! and personalizes them at request time.
//!
//! A request flows through the modules in this order (see `handler`):
//!
//! 1. [`site`]: the Host header picks a site and its current version.
//! 2. [`context`]: the path is decoded and normalized once.
//! 3. [`store`]: the path is looked up in the site's in-memory version.
//! 4. [`respond`]: conditional requests, ranges and encodings make the response.
//! 5. [`access_log`]: one JSON line records it.
//!
//! Around the request path: [`config`] turns the user's files into checked
//! values, [`live`] holds what is served and swaps it atomically, [`watch`]
//! turns file changes into new versions, and [`server`] runs the listeners.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod check;
pub mod compress;
pub mod config;
pub mod context;
pub mod demo_upstream;
pub mod experiments;
pub mod explain;
pub mod fleet;
pub mod handler;
pub mod live;
pub mod metrics;
pub mod offline;
mod parallel;
pub mod respond;
pub mod rule_tests;
pub mod rules;
pub mod server;
pub mod site;
pub mod store;
pub mod tls;
pub mod transform;
pub mod watch;
