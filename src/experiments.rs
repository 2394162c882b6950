//! Experiment counts: exposures and conversions per variant, counted on the
//! request path with atomics, saved to the store every second (and at
//! shutdown) so they survive a restart, and reported with conversion rates
//! and a two-proportion z-test against the first variant.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::rules::variant::Assignment;
use crate::rules::{Action, Rules};

#[derive(Debug, Default)]
struct Counts {
    exposures: AtomicU64,
    conversions: AtomicU64,
}

type Key = (Arc<str>, Arc<str>);

#[derive(Default)]
pub struct Experiments {
    counts: RwLock<BTreeMap<Key, Arc<Counts>>>,
    dirty: AtomicBool,
}

/// One variant's figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct VariantReport {
    pub variant: String,
    pub exposures: u64,
    pub conversions: u64,
    pub rate: f64,
    /// Against the first variant; `None` for that variant itself or with
    /// too little data.
    pub z: Option<f64>,
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ExperimentReport {
    pub experiment: String,
    pub variants: Vec<VariantReport>,
}

impl Experiments {
    /// Starts from saved `(experiment, variant, exposures, conversions)`.
    pub fn from_saved(rows: Vec<(String, String, u64, u64)>) -> Experiments {
        let counts = rows
            .into_iter()
            .map(|(e, v, x, c)| {
                (
                    (e.into(), v.into()),
                    Arc::new(Counts {
                        exposures: x.into(),
                        conversions: c.into(),
                    }),
                )
            })
            .collect();
        Experiments {
            counts: RwLock::new(counts),
            dirty: AtomicBool::new(false),
        }
    }

    fn counts(&self, a: &Assignment) -> Arc<Counts> {
        let key = (a.experiment.clone(), a.variant.clone());
        if let Some(c) = self.counts.read().unwrap().get(&key) {
            return c.clone();
        }
        self.counts.write().unwrap().entry(key).or_default().clone()
    }

    pub fn expose(&self, a: &Assignment) {
        self.counts(a).exposures.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn convert(&self, a: &Assignment) {
        self.counts(a).conversions.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// All counts, if any changed since the last call.
    pub fn take_changes(&self) -> Option<Vec<(String, String, u64, u64)>> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return None;
        }
        Some(self.rows())
    }

    pub fn rows(&self) -> Vec<(String, String, u64, u64)> {
        self.counts
            .read()
            .unwrap()
            .iter()
            .map(|((e, v), c)| {
                (
                    e.to_string(),
                    v.to_string(),
                    c.exposures.load(Ordering::Relaxed),
                    c.conversions.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Per experiment, variants in the order the rules list them (the first
    /// is the baseline), then any others seen before.
    pub fn report(&self, rules: &Rules) -> Vec<ExperimentReport> {
        report(&self.rows(), rules)
    }
}

/// Reports from saved rows (also used by `outpost stats` on a store).
pub fn report(rows: &[(String, String, u64, u64)], rules: &Rules) -> Vec<ExperimentReport> {
    let mut by_experiment: BTreeMap<&str, Vec<(&str, u64, u64)>> = BTreeMap::new();
    for (e, v, x, c) in rows {
        by_experiment.entry(e).or_default().push((v, *x, *c));
    }
    for rule in &rules.rules {
        if let Action::Variant(exp) = &rule.action {
            by_experiment.entry(&exp.experiment).or_default();
        }
    }
    by_experiment
        .into_iter()
        .map(|(experiment, mut seen)| {
            let order: Vec<&str> = rules
                .rules
                .iter()
                .find_map(|r| match &r.action {
                    Action::Variant(e) if &*e.experiment == experiment => {
                        Some(e.variants.iter().map(|v| v.name.as_ref()).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            for name in &order {
                if !seen.iter().any(|(v, _, _)| v == name) {
                    seen.push((name, 0, 0));
                }
            }
            seen.sort_by_key(|(v, _, _)| order.iter().position(|o| o == v).unwrap_or(usize::MAX));
            let base = seen.first().map(|(_, x, c)| (*x, *c));
            let variants = seen
                .iter()
                .enumerate()
                .map(|(i, (v, x, c))| {
                    let test = (i > 0)
                        .then(|| base.and_then(|(bx, bc)| z_test(bx, bc, *x, *c)))
                        .flatten();
                    VariantReport {
                        variant: v.to_string(),
                        exposures: *x,
                        conversions: *c,
                        rate: if *x == 0 { 0.0 } else { *c as f64 / *x as f64 },
                        z: test.map(|t| t.0),
                        p_value: test.map(|t| t.1),
                    }
                })
                .collect();
            ExperimentReport {
                experiment: experiment.to_string(),
                variants,
            }
        })
        .collect()
}

/// Two-proportion z-test of b against a: `(z, two-sided p-value)`.
pub fn z_test(a_n: u64, a_conv: u64, b_n: u64, b_conv: u64) -> Option<(f64, f64)> {
    if a_n == 0 || b_n == 0 {
        return None;
    }
    let (n1, n2) = (a_n as f64, b_n as f64);
    let (p1, p2) = (a_conv as f64 / n1, b_conv as f64 / n2);
    let pooled = (a_conv + b_conv) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p2 - p1) / se;
    Some((z, 2.0 * (1.0 - normal_cdf(z.abs()))))
}

/// Φ(x), from erf (Abramowitz and Stegun 7.1.26, error under 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_test_matches_the_textbook() {
        // 200/1000 against 250/1000: z ≈ 2.68, p ≈ 0.0073.
        let (z, p) = z_test(1000, 200, 1000, 250).unwrap();
        assert!((z - 2.68).abs() < 0.01, "{z}");
        assert!((p - 0.0073).abs() < 0.0005, "{p}");
        let (z, p) = z_test(1000, 100, 1000, 100).unwrap();
        assert_eq!(z, 0.0);
        assert!((p - 1.0).abs() < 1e-6);
        assert!(z_test(0, 0, 10, 1).is_none());
        assert!(z_test(10, 0, 10, 0).is_none());
    }

    #[test]
    fn normal_cdf_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-1.96) - 0.025).abs() < 1e-4);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot ask the running server at {0}: {1}")]
    Admin(std::net::SocketAddr, String),
}

/// The reports for a root folder: from the running server's admin listener
/// when one holds the store, else from the store itself.
pub fn read_reports(
    settings: &crate::config::Settings,
) -> Result<Vec<ExperimentReport>, StatsError> {
    match crate::store::Store::open_existing(&settings.store) {
        Ok(store) => {
            let rows = store.experiments()?;
            let names: Vec<String> = store
                .current_versions()?
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            let rules =
                crate::rules::load(&settings.root, &names).unwrap_or_else(|_| Rules::empty());
            Ok(report(&rows, &rules))
        }
        Err(crate::store::StoreError::Open { source, .. })
            if matches!(*source, redb::DatabaseError::DatabaseAlreadyOpen) =>
        {
            admin_reports(settings.admin_listen)
        }
        Err(e) => Err(e.into()),
    }
}

fn admin_reports(addr: std::net::SocketAddr) -> Result<Vec<ExperimentReport>, StatsError> {
    use std::io::{Read, Write};
    let fail = |e: String| StatsError::Admin(addr, e);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| fail(e.to_string()))?;
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &raw[i + 4..])
        .ok_or_else(|| fail("no response".into()))?;
    #[derive(serde::Deserialize)]
    struct Status {
        experiments: Vec<ExperimentReport>,
    }
    let status: Status = serde_json::from_slice(body).map_err(|e| fail(e.to_string()))?;
    Ok(status.experiments)
}
