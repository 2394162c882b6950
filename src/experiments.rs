//! Experiment counts: per variant, the visitors drawn into it who were shown
//! it (exposures), those it could not be applied to (not applied), and
//! conversions; counted on the request path with atomics, saved to the store
//! every second (and at shutdown) so they survive a restart, and reported
//! with conversion rates, a two-proportion z-test against the first variant
//! and a sample-ratio check of the draws against the weights.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use crate::rules::variant::Assignment;
use crate::rules::{Action, Rules};
use crate::store::ExperimentRow;

/// Below this chi-square p-value the draws do not follow the weights.
pub const SAMPLE_RATIO_ALPHA: f64 = 0.001;

#[derive(Debug, Default)]
struct Counts {
    exposures: AtomicU64,
    not_applied: AtomicU64,
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
    /// Its weight in the rule; `None` for a variant the rule no longer has.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Visitors drawn into the variant and shown it as written.
    pub exposures: u64,
    /// Visitors drawn into the variant whose page went out without it (a
    /// transform matched nothing, its file was missing).
    #[serde(default)]
    pub not_applied: u64,
    pub conversions: u64,
    pub rate: f64,
    /// Against the first variant; `None` for that variant itself or with
    /// too little data.
    pub z: Option<f64>,
    pub p_value: Option<f64>,
}

impl VariantReport {
    /// Visitors drawn into the variant: exposures plus not applied.
    fn drawn(&self) -> u64 {
        self.exposures + self.not_applied
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ExperimentReport {
    pub experiment: String,
    pub variants: Vec<VariantReport>,
    /// Chi-square p-value of the draws (exposures plus not applied) against
    /// the weights; `None` with too little data.
    #[serde(default)]
    pub sample_ratio_p: Option<f64>,
    /// `sample_ratio_p` is below [`SAMPLE_RATIO_ALPHA`].
    #[serde(default)]
    pub sample_ratio_mismatch: bool,
    /// What makes the figures doubtful, in words: a sample-ratio mismatch,
    /// variants not applied.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Experiments {
    /// Starts from saved counts.
    pub fn from_saved(rows: Vec<ExperimentRow>) -> Experiments {
        let counts = rows
            .into_iter()
            .map(|r| {
                (
                    (r.experiment.into(), r.variant.into()),
                    Arc::new(Counts {
                        exposures: r.exposures.into(),
                        not_applied: r.not_applied.into(),
                        conversions: r.conversions.into(),
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

    /// Counts a visitor drawn into a variant: an exposure when the variant
    /// was `applied` as written, else not applied.
    pub fn expose(&self, a: &Assignment, applied: bool) {
        let counts = self.counts(a);
        let n = if applied {
            &counts.exposures
        } else {
            &counts.not_applied
        };
        n.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn convert(&self, a: &Assignment) {
        self.counts(a).conversions.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// All counts, if any changed since the last call.
    pub fn take_changes(&self) -> Option<Vec<ExperimentRow>> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return None;
        }
        Some(self.rows())
    }

    pub fn rows(&self) -> Vec<ExperimentRow> {
        self.counts
            .read()
            .unwrap()
            .iter()
            .map(|((e, v), c)| ExperimentRow {
                experiment: e.to_string(),
                variant: v.to_string(),
                exposures: c.exposures.load(Ordering::Relaxed),
                conversions: c.conversions.load(Ordering::Relaxed),
                not_applied: c.not_applied.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Per experiment, variants in the order the rules list them (the first
    /// is the baseline), then any others seen before.
    pub fn report(&self, rules: &Rules) -> Vec<ExperimentReport> {
        report(&self.rows(), &designs(rules))
    }
}

/// An experiment as the rules run it: its variants and their weights, the
/// baseline first.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Design {
    pub experiment: String,
    pub variants: Vec<(String, u32)>,
}

/// The experiments of `rules`, each once (the first rule that runs it).
pub fn designs(rules: &Rules) -> Vec<Design> {
    let mut out: Vec<Design> = Vec::new();
    for rule in &rules.rules {
        if let Action::Variant(e) = &rule.action {
            if !out.iter().any(|d| *d.experiment == *e.experiment) {
                out.push(Design {
                    experiment: e.experiment.to_string(),
                    variants: e
                        .variants
                        .iter()
                        .map(|v| (v.name.to_string(), v.weight))
                        .collect(),
                });
            }
        }
    }
    out
}

/// Reports from counts (a store's, or the sum of a fleet's) and the
/// experiments the rules run.
pub fn report(rows: &[ExperimentRow], designs: &[Design]) -> Vec<ExperimentReport> {
    let mut by_experiment: BTreeMap<&str, Vec<&ExperimentRow>> = BTreeMap::new();
    for r in rows {
        by_experiment.entry(&r.experiment).or_default().push(r);
    }
    for d in designs {
        by_experiment.entry(&d.experiment).or_default();
    }
    by_experiment
        .into_iter()
        .map(|(experiment, seen)| {
            // The rule's variants with their weights, then others seen before.
            let mut variants: Vec<VariantReport> = designs
                .iter()
                .find(|d| d.experiment == experiment)
                .into_iter()
                .flat_map(|d| &d.variants)
                .map(|(name, weight)| blank(name, Some(*weight)))
                .collect();
            for r in seen {
                let i = match variants.iter().position(|v| v.variant == r.variant) {
                    Some(i) => i,
                    None => {
                        variants.push(blank(&r.variant, None));
                        variants.len() - 1
                    }
                };
                let v = &mut variants[i];
                v.exposures += r.exposures;
                v.not_applied += r.not_applied;
                v.conversions += r.conversions;
                v.rate = if v.exposures == 0 {
                    0.0
                } else {
                    v.conversions as f64 / v.exposures as f64
                };
            }
            let base = variants.first().map(|v| (v.exposures, v.conversions));
            for v in variants.iter_mut().skip(1) {
                let test = base.and_then(|(bx, bc)| z_test(bx, bc, v.exposures, v.conversions));
                v.z = test.map(|t| t.0);
                v.p_value = test.map(|t| t.1);
            }
            let sample_ratio_p = sample_ratio_p(&variants);
            let sample_ratio_mismatch = sample_ratio_p.is_some_and(|p| p < SAMPLE_RATIO_ALPHA);
            ExperimentReport {
                experiment: experiment.to_string(),
                warnings: warnings(&variants, sample_ratio_p.filter(|_| sample_ratio_mismatch)),
                variants,
                sample_ratio_p,
                sample_ratio_mismatch,
            }
        })
        .collect()
}

/// The warnings of an experiment's report; `mismatch` is the p-value of a
/// sample-ratio mismatch.
fn warnings(variants: &[VariantReport], mismatch: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = mismatch {
        let split = |f: &dyn Fn(&VariantReport) -> String| {
            variants
                .iter()
                .filter(|v| v.weight.is_some())
                .map(f)
                .collect::<Vec<_>>()
                .join("/")
        };
        out.push(format!(
            "sample-ratio mismatch: visitors drawn {} for weights {} (chi-square p = {p:.1e}); \
             the split is not the weights' doing, so the figures cannot be trusted",
            split(&|v| v.drawn().to_string()),
            split(&|v| v.weight.unwrap_or(0).to_string()),
        ));
    }
    for v in variants.iter().filter(|v| v.not_applied > 0) {
        out.push(format!(
            "variant `{}` was not applied to {} of the {} visitors drawn into it \
             (a transform matched nothing, or its file was missing)",
            v.variant,
            v.not_applied,
            v.drawn(),
        ));
    }
    out
}

fn blank(name: &str, weight: Option<u32>) -> VariantReport {
    VariantReport {
        variant: name.to_string(),
        weight,
        exposures: 0,
        not_applied: 0,
        conversions: 0,
        rate: 0.0,
        z: None,
        p_value: None,
    }
}

/// Chi-square goodness of fit of the draws (exposures plus not applied)
/// against the weights, with one degree of freedom less than the variants
/// that have a weight. `None` without two weighted variants or while a
/// variant expects fewer than 5 draws (too few for the test). Variants the
/// rule no longer has are left out; draws into a weight-0 variant cannot
/// come from these weights, so they give p = 0.
pub fn sample_ratio_p(variants: &[VariantReport]) -> Option<f64> {
    let weighted: Vec<(u32, u64)> = variants
        .iter()
        .filter_map(|v| v.weight.map(|w| (w, v.drawn())))
        .collect();
    if weighted.iter().any(|&(w, n)| w == 0 && n > 0) {
        return Some(0.0);
    }
    let weighted: Vec<(f64, f64)> = weighted
        .into_iter()
        .filter(|&(w, _)| w > 0)
        .map(|(w, n)| (w as f64, n as f64))
        .collect();
    let total_weight: f64 = weighted.iter().map(|(w, _)| w).sum();
    let total: f64 = weighted.iter().map(|(_, n)| n).sum();
    let expected = |w: f64| total * w / total_weight;
    if weighted.len() < 2 || weighted.iter().any(|&(w, _)| expected(w) < 5.0) {
        return None;
    }
    let chi2: f64 = weighted
        .iter()
        .map(|&(w, n)| (n - expected(w)).powi(2) / expected(w))
        .sum();
    let dist = ChiSquared::new((weighted.len() - 1) as f64).ok()?;
    Some(dist.sf(chi2))
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
    let normal = Normal::standard();
    Some((z, 2.0 * normal.sf(z.abs())))
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

    fn drawn(split: &[(u32, u64, u64)]) -> Vec<VariantReport> {
        split
            .iter()
            .enumerate()
            .map(|(i, &(w, exposed, not_applied))| VariantReport {
                exposures: exposed,
                not_applied,
                ..blank(&format!("v{i}"), Some(w))
            })
            .collect()
    }

    #[test]
    fn sample_ratio_check_against_the_weights() {
        // 50/50 drawn 1000/1200: chi² = 18.2, p ≈ 2e-5: the draws are off.
        let p = sample_ratio_p(&drawn(&[(50, 1000, 0), (50, 1200, 0)])).unwrap();
        assert!((p - 2.0e-5).abs() < 0.2e-5, "{p}");
        // 1000/1300: chi² = 39.1, p ≈ 4e-10.
        let p = sample_ratio_p(&drawn(&[(50, 1000, 0), (50, 1300, 0)])).unwrap();
        assert!(p < 1e-9, "{p}");
        // 1000/1050: chi² = 1.22, p ≈ 0.27: well within chance.
        let p = sample_ratio_p(&drawn(&[(50, 1000, 0), (50, 1050, 0)])).unwrap();
        assert!((p - 0.27).abs() < 0.01, "{p}");
        // Not applied counts as drawn: 1000 + 300 against 1300 is even.
        let p = sample_ratio_p(&drawn(&[(50, 1000, 300), (50, 1300, 0)])).unwrap();
        assert!((p - 1.0).abs() < 1e-9, "{p}");
        // Uneven weights, three variants (2 degrees of freedom):
        // 80/10/10 drawn 800/100/100 fits; 800/150/50 does not
        // (chi² = 50, p = e^-25).
        let fits = sample_ratio_p(&drawn(&[(80, 800, 0), (10, 100, 0), (10, 100, 0)]));
        assert!((fits.unwrap() - 1.0).abs() < 1e-9);
        let off = sample_ratio_p(&drawn(&[(80, 800, 0), (10, 150, 0), (10, 50, 0)])).unwrap();
        assert!((off - (-25f64).exp()).abs() < 1e-12, "{off}");
    }

    #[test]
    fn sample_ratio_check_needs_data_and_two_weighted_variants() {
        assert_eq!(sample_ratio_p(&drawn(&[(50, 0, 0), (50, 0, 0)])), None);
        assert_eq!(sample_ratio_p(&drawn(&[(50, 4, 0), (50, 4, 0)])), None);
        assert_eq!(sample_ratio_p(&drawn(&[(1, 100, 0), (0, 0, 0)])), None);
        // A weight-0 variant is never drawn: draws into it are a mismatch.
        assert_eq!(
            sample_ratio_p(&drawn(&[(1, 100, 0), (1, 100, 0), (0, 1, 0)])),
            Some(0.0)
        );
        // A variant the rule no longer has is left out.
        let mut gone = drawn(&[(50, 100, 0), (50, 100, 0), (50, 900, 0)]);
        gone[2].weight = None;
        assert!((sample_ratio_p(&gone).unwrap() - 1.0).abs() < 1e-9);
    }
}
