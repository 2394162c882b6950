//! A box's report to the fleet: every second it puts, under its box id in
//! the bucket `outpost-boxes`, the versions it serves, its rules' health,
//! its traffic over the last minute and its experiment counts as totals.
//!
//! Totals rather than increments make the counts exact and idempotent: a
//! put replayed, repeated after a restart or after a hub outage says the
//! same thing again, and the fleet's figures are the sum of the boxes'
//! latest reports. The counts come from the box's store, so a restart
//! reports what it reported before.
//!
//! Each put names the box's store (`instance`) and expects the revision of
//! the box's own last put. When the key holds anything else, the box looks:
//! its own report changed by hand is put again at once; another box's
//! report, fresh, means two boxes claim the id, and this one refuses to
//! report over it (logged, and noted under `<id>.<instance>` for `outpost
//! fleet status`) rather than mix their counts. A report stale for longer
//! than `stale_after` is taken over, with a warning.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::hub::{nats, FleetError, Hub};
use crate::experiments::{self, Design, ExperimentReport};
use crate::metrics::Traffic;
use crate::store::{unix_ms, ExperimentRow};

/// What the fleet knows of a box, under its id in `outpost-boxes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BoxReport {
    /// The box's store: two boxes that claim one id differ here.
    pub instance: String,
    /// The version taken per site (and `_rules`); under `<key>!error`, why
    /// the last version published under the key was refused.
    pub served: BTreeMap<String, String>,
    pub started_unix_ms: u64,
    pub updated_unix_ms: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// What a box measures of itself, read afresh for each report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Figures {
    pub rules: RulesHealth,
    /// The last minute's requests; `None` when the box's metrics are off.
    pub traffic: Option<Traffic>,
    pub fragments: FragmentHealth,
    /// Experiment counts: the box's totals since its store began.
    pub experiments: Vec<ExperimentRow>,
    /// The experiments its rules run, with their weights.
    pub designs: Vec<Design>,
    /// Access-log lines dropped rather than sent to the fleet.
    pub log_lines_dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RulesHealth {
    pub generation: u64,
    /// Problems of the rules on disk, served or not (the last good rules
    /// serve while there are any).
    pub errors: Vec<String>,
}

/// Fragment fetches since the box started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FragmentHealth {
    pub fresh: u64,
    pub stale: u64,
    pub failed: u64,
    pub upstream_errors: u64,
}

/// Reads a box's figures; the server builds it from its parts.
pub type ReadFigures = Box<dyn Fn() -> Figures + Send + Sync>;

/// Another box's claim on this box's id, noted under `<id>.<instance>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Claim {
    pub instance: String,
    /// The instance whose report holds the id.
    pub held_by: String,
    pub updated_unix_ms: u64,
}

/// A box that follows a fleet: its connection, its state, and when its
/// peers count as stale.
#[derive(Clone)]
pub struct Member {
    pub hub: Hub,
    pub state: Arc<BoxState>,
    pub stale_after: Duration,
}

/// This box in the fleet: its names, and what its follower took.
pub struct BoxState {
    pub id: String,
    pub instance: String,
    started_unix_ms: u64,
    served: Mutex<BTreeMap<String, String>>,
    /// Why this box does not report: another box holds its id.
    refused: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

impl BoxState {
    pub fn new(id: String, instance: String) -> BoxState {
        BoxState {
            id,
            instance,
            started_unix_ms: unix_ms(SystemTime::now()),
            served: Mutex::default(),
            refused: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Whether the box serves `version` under `key` already.
    pub fn serves(&self, key: &str, version: &str) -> bool {
        self.served.lock().unwrap().get(key).map(String::as_str) == Some(version)
    }

    pub fn took(&self, key: &str, version: &str) {
        let mut served = self.served.lock().unwrap();
        served.insert(key.to_string(), version.to_string());
        served.remove(&format!("{key}!error"));
        drop(served);
        self.changed.notify_one();
    }

    pub fn refused(&self, key: &str, why: &str) {
        let mut served = self.served.lock().unwrap();
        served.insert(format!("{key}!error"), why.to_string());
        drop(served);
        self.changed.notify_one();
    }

    /// Why the box does not report, if it does not.
    pub fn conflict(&self) -> Option<String> {
        self.refused.lock().unwrap().clone()
    }

    fn report(&self, figures: Figures) -> BoxReport {
        BoxReport {
            instance: self.instance.clone(),
            served: self.served.lock().unwrap().clone(),
            started_unix_ms: self.started_unix_ms,
            updated_unix_ms: unix_ms(SystemTime::now()),
            figures,
        }
    }
}

/// Puts the box's report every second and at once when it takes a version,
/// until the process ends; reconnects as needed.
pub async fn report(hub: Hub, state: Arc<BoxState>, figures: ReadFigures, stale_after: Duration) {
    let mut own: Option<u64> = None;
    loop {
        match hub.boxes().await {
            Ok(boxes) => loop {
                let report = state.report(figures());
                match put_own(&boxes, &state, &report, &mut own, stale_after).await {
                    Ok(()) => note_conflict(&state, None),
                    Err(Put::Held(claim)) => {
                        note_conflict(&state, Some(&claim));
                        let _ = put_claim(&boxes, &state, &claim).await;
                    }
                    Err(Put::Failed(e)) => {
                        tracing::debug!(error = %e, "cannot report to the fleet; retrying");
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = state.changed.notified() => {}
                }
            },
            Err(e) => tracing::debug!(error = %e, "cannot report to the fleet; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Logs a conflict when it starts and when it ends.
fn note_conflict(state: &BoxState, held_by: Option<&Claim>) {
    let why = held_by.map(|c| {
        format!(
            "box id `{}` is held by another box (store {}) that reported {} ago; this box (store {}) does not report until that one stops: give each box its own id",
            state.id,
            c.held_by,
            ago(c.updated_unix_ms),
            state.instance,
        )
    });
    let mut refused = state.refused.lock().unwrap();
    match (&*refused, &why) {
        (None, Some(why)) => tracing::error!("{why}"),
        (Some(_), None) => tracing::info!(box_id = %state.id, "box id free again; reporting"),
        _ => {}
    }
    *refused = why;
}

fn ago(unix_ms_then: u64) -> String {
    let ms = unix_ms(SystemTime::now()).saturating_sub(unix_ms_then);
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

enum Put {
    /// Another box's fresh report holds the id.
    Held(Claim),
    Failed(FleetError),
}

/// Puts `report` under the box's id when the key holds the box's own last
/// put, its own report changed by hand, nothing, or a stale report.
async fn put_own(
    boxes: &kv::Store,
    state: &BoxState,
    report: &BoxReport,
    own: &mut Option<u64>,
    stale_after: Duration,
) -> Result<(), Put> {
    let value = Bytes::from(serde_json::to_vec(report).expect("serializes"));
    if let Some(revision) = *own {
        match boxes.update(&state.id, value.clone(), revision).await {
            Ok(r) => {
                *own = Some(r);
                return Ok(());
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
            Err(e) => return Err(Put::Failed(nats(e))),
        }
    }
    let there = boxes
        .entry(&state.id)
        .await
        .map_err(|e| Put::Failed(nats(e)))?;
    let revision = match there {
        Some(entry) if entry.operation == kv::Operation::Put => {
            let theirs: BoxReport = serde_json::from_slice(&entry.value).unwrap_or_default();
            let age = unix_ms(SystemTime::now()).saturating_sub(theirs.updated_unix_ms);
            let someone_else = !theirs.instance.is_empty() && theirs.instance != state.instance;
            if someone_else && age < stale_after.as_millis() as u64 {
                return Err(Put::Held(Claim {
                    instance: state.instance.clone(),
                    held_by: theirs.instance,
                    updated_unix_ms: theirs.updated_unix_ms,
                }));
            }
            if someone_else {
                tracing::warn!(box_id = %state.id, other = %theirs.instance, last_seen = %ago(theirs.updated_unix_ms), "taking over a box id another store reported under; its counts leave the fleet's totals");
            } else if own.is_some() {
                tracing::warn!(box_id = %state.id, "this box's report was changed by another hand; putting its own totals back");
            }
            Some(entry.revision)
        }
        _ => None,
    };
    let put = match revision {
        Some(r) => boxes.update(&state.id, value, r).await.map_err(nats),
        None => boxes.create(&state.id, value).await.map_err(nats),
    };
    *own = Some(put.map_err(Put::Failed)?);
    Ok(())
}

async fn put_claim(boxes: &kv::Store, state: &BoxState, claim: &Claim) -> Result<(), FleetError> {
    let claim = Claim {
        updated_unix_ms: unix_ms(SystemTime::now()),
        ..claim.clone()
    };
    let key = format!("{}.{}", state.id, state.instance);
    let value = Bytes::from(serde_json::to_vec(&claim).expect("serializes"));
    boxes.put(key, value).await.map_err(nats)?;
    Ok(())
}

/// The fleet as its boxes reported it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fleet {
    pub boxes: BTreeMap<String, BoxReport>,
    /// Per box id, the other stores that claimed it lately.
    pub claims: BTreeMap<String, Vec<Claim>>,
}

impl Hub {
    /// Every box's latest report, and the claims on their ids.
    pub async fn fleet(&self) -> Result<Fleet, FleetError> {
        let boxes = self.boxes().await?;
        let mut keys = boxes.keys().await.map_err(nats)?;
        let mut fleet = Fleet::default();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            let Some(value) = boxes.get(&key).await.map_err(nats)? else {
                continue;
            };
            match key.split_once('.') {
                None => {
                    fleet
                        .boxes
                        .insert(key, serde_json::from_slice(&value).unwrap_or_default());
                }
                Some((id, _)) => {
                    if let Ok(claim) = serde_json::from_slice(&value) {
                        fleet.claims.entry(id.to_string()).or_default().push(claim);
                    }
                }
            }
        }
        Ok(fleet)
    }
}

/// The fleet at `url`: every box's latest report.
pub async fn read(url: &str) -> Result<Fleet, FleetError> {
    Hub::connect(url).await?.fleet().await
}

/// Experiment results for the whole fleet: the totals, with the same
/// checks as one box's, and each box's own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetResults {
    pub experiments: Vec<ExperimentReport>,
    pub boxes: BTreeMap<String, Vec<ExperimentReport>>,
}

impl Fleet {
    /// Sums every box's counts. The weights are those of the first box
    /// (by id) whose rules run the experiment; a box whose rules run other
    /// weights is named in the experiment's warnings.
    pub fn results(&self) -> FleetResults {
        let mut designs: Vec<Design> = Vec::new();
        let mut differ: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (id, b) in &self.boxes {
            for d in &b.figures.designs {
                match designs.iter().find(|k| k.experiment == d.experiment) {
                    None => designs.push(d.clone()),
                    Some(known) if known != d => {
                        differ.entry(d.experiment.clone()).or_default().push(id)
                    }
                    Some(_) => {}
                }
            }
        }
        let rows: Vec<ExperimentRow> = self
            .boxes
            .values()
            .flat_map(|b| b.figures.experiments.iter().cloned())
            .collect();
        let mut experiments = experiments::report(&rows, &designs);
        for e in &mut experiments {
            if let Some(ids) = differ.get(&e.experiment) {
                e.warnings.push(format!(
                    "boxes {} run other variants or weights than the others: their rules are not the same version",
                    ids.join(", ")
                ));
            }
        }
        let boxes = self
            .boxes
            .iter()
            .map(|(id, b)| {
                let own = experiments::report(&b.figures.experiments, &designs);
                (id.clone(), own)
            })
            .collect();
        FleetResults { experiments, boxes }
    }
}

/// One box as `outpost fleet status` and the dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BoxStatus {
    pub id: String,
    /// Milliseconds since its last report.
    pub seen_ms_ago: u64,
    /// It has not reported for longer than `stale_after`.
    pub stale: bool,
    /// Other stores that claimed its id within `stale_after`: boxes given
    /// the same id, whose figures are not counted.
    pub claimed_by: Vec<String>,
    pub report: BoxReport,
}

impl Fleet {
    /// Every box, in id order, as of now.
    pub fn status(&self, stale_after: Duration) -> Vec<BoxStatus> {
        let now = unix_ms(SystemTime::now());
        let fresh = |ms: u64| now.saturating_sub(ms) <= stale_after.as_millis() as u64;
        self.boxes
            .iter()
            .map(|(id, report)| BoxStatus {
                id: id.clone(),
                seen_ms_ago: now.saturating_sub(report.updated_unix_ms),
                stale: !fresh(report.updated_unix_ms),
                claimed_by: self
                    .claims
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(|c| fresh(c.updated_unix_ms) && c.instance != report.instance)
                    .map(|c| c.instance.clone())
                    .collect(),
                report: report.clone(),
            })
            .collect()
    }
}
