//! The fleet: publishing site versions to NATS JetStream, following them
//! on every edge box, and each box's report of what it serves, counts and
//! logs.
//!
//! A publish ([`publish`]) uploads one pack of the files new since the
//! site's previous version, with their compressed copies (see [`pack`]), to
//! the object store `outpost-files`, then writes the site's manifest to the
//! key-value bucket `outpost-sites` (rules travel under the key `_rules`).
//! The manifest names, for every file, its hash and the pack that holds it
//! (this version's, or the one an earlier version brought it in), so a box
//! at any version, or one rolled back, finds every file. A box following
//! the bucket ([`follow`]) fetches the packs holding what it lacks, checks
//! each pack whole and each file against its hash, writes the version into
//! its own sites/ folder in one rename, ingests it (compressing nothing)
//! and switches atomically. Every second it puts its report (versions
//! served, experiment counts, traffic) in `outpost-boxes` under its box id
//! ([`report`]), and its access-log lines go to the stream `outpost-logs`
//! ([`logs`]). Without NATS a box keeps serving what it has and catches up
//! when NATS returns.

mod follow;
mod hub;
pub mod logs;
mod pack;
mod publish;
pub mod report;

pub use follow::follow;
pub use hub::{FleetError, Hub, Published, PublishedFile};
pub use publish::{publish, rollback, Publication};
pub use report::{BoxReport, BoxState};
