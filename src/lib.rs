//! outpost: one binary that serves many static sites from an embedded store
//! and personalizes them at request time.
//!
//! A request flows through the stages in this order, one line each in
//! [`handler::pipeline`], sharing one [`ctx::Ctx`] (docs/architecture.md):
//!
//! 1. [`site`]: the Host header picks a site and its current version.
//! 2. [`context`]: the path is decoded and normalized once. When no rule
//!    applies to the site and path, the request goes straight to the stored
//!    file and the response (the static path). Otherwise the visitor's
//!    address, country, languages and cookies are read.
//! 3. [`rules`]: the path is looked up in the site's version ([`store`]:
//!    an index in memory, bodies are slices of mapped pack files) and the
//!    rules evaluate, seeing the page found, into a decision (redirect,
//!    block, edits, variants, fragments).
//! 4. [`body`]: what goes out: the page, a variant's file or a block page,
//!    with the fragments fetched.
//! 5. [`transform`]: the page is rewritten (once per distinct result,
//!    then cached).
//! 6. [`respond`]: conditional requests, ranges and encodings make the response;
//!    [`zero_copy`] sends large bodies to the socket with sendfile.
//! 7. [`access_log`] and [`metrics`]: the request is recorded.
//!
//! Around the request path: [`config`] turns the user's files into checked
//! values, [`live`] holds what is served and swaps it atomically, [`watch`]
//! turns file changes into new versions ([`file_watch`] watches single
//! files such as a certificate), [`fleet`] moves versions between
//! boxes, and [`server`] runs the listeners, with [`connections`] keeping
//! any one client from holding them all.
//!
//! Above everything, [`cli`] holds the binary's commands, one file each;
//! no other module imports it.

#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod check;
pub mod cli;
pub mod compress;
pub mod config;
pub mod connections;
pub mod context;
pub mod ctx;
pub mod demo_upstream;
pub mod experiments;
pub mod file_watch;
pub mod fleet;
pub mod handler;
pub mod live;
pub mod metrics;
pub mod offline;
mod parallel;
pub mod proxy;
pub mod respond;
pub mod rule_tests;
pub mod rules;
pub mod server;
pub mod site;
pub mod store;
pub mod tls;
pub mod transform;
pub mod watch;
pub mod zero_copy;

/// An error and its causes joined by `sep`: libraries put the useful part
/// (a template's line, why a connection failed) in the causes.
pub(crate) fn error_chain(err: &dyn std::error::Error, sep: &str) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(sep);
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
