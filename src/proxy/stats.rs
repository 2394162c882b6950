//! Counts per `proxy` rule, for /metrics: requests, what the cache made of
//! them, upstream errors, and the time upstreams took to answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

// Keys are rule names: no visitor can add one.
use foldhash::HashMap;

use crate::metrics::{family, sample};

/// What the cache made of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Stale,
    Miss,
    /// Not a request a cache answers (a POST, a rule without `cache`, ...).
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Stale => "STALE",
            CacheResult::Miss => "MISS",
            CacheResult::Bypass => "BYPASS",
        }
    }
}

/// A rule's failures are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct RuleStats {
    requests: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    upstream_requests: AtomicU64,
    upstream_errors: AtomicU64,
    upstream_micros: AtomicU64,
    /// When a failure was last logged, and the failures since.
    logged: Mutex<(Option<Instant>, u64)>,
}

impl RuleStats {
    /// A request the rule forwards, counted as it starts.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// What the cache made of a request.
    pub fn cache(&self, result: CacheResult) {
        let count = match result {
            CacheResult::Hit => &self.hits,
            CacheResult::Stale => &self.stale,
            CacheResult::Miss => &self.misses,
            CacheResult::Bypass => return,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure; the failures to log with it when one is due.
    pub fn due_for_log(&self) -> Option<u64> {
        let mut logged = self.logged.lock().unwrap();
        logged.1 += 1;
        if logged.0.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return None;
        }
        let errors = logged.1;
        *logged = (Some(Instant::now()), 0);
        Some(errors)
    }

    /// One request to the upstream that answered (or failed) after `micros`.
    pub fn upstream(&self, micros: u64, failed: bool) {
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
        self.upstream_micros.fetch_add(micros, Ordering::Relaxed);
        if failed {
            self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Which count of a rule a metric family reports.
type Count = fn(&RuleStats) -> &AtomicU64;

#[derive(Default)]
pub struct ProxyStats {
    by_rule: RwLock<HashMap<Arc<str>, Arc<RuleStats>>>,
}

impl ProxyStats {
    /// The counts of `rule`, made the first time it forwards.
    pub fn rule(&self, rule: &Arc<str>) -> Arc<RuleStats> {
        if let Some(s) = self.by_rule.read().unwrap().get(rule) {
            return s.clone();
        }
        let mut map = self.by_rule.write().unwrap();
        map.entry(rule.clone()).or_default().clone()
    }

    /// Writes the counts in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let map = self.by_rule.read().unwrap();
        let mut rows: Vec<_> = map.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters: [(&str, &str, Count); 3] = [
            (
                "outpost_proxy_requests_total",
                "Requests forwarded or answered from the cache, by rule.",
                |s| &s.requests,
            ),
            (
                "outpost_proxy_upstream_requests_total",
                "Requests sent to upstreams, by rule.",
                |s| &s.upstream_requests,
            ),
            (
                "outpost_proxy_upstream_errors_total",
                "Upstream requests that failed or timed out, by rule.",
                |s| &s.upstream_errors,
            ),
        ];
        for (name, help, read) in counters {
            family(out, name, "counter", help);
            for (rule, s) in &rows {
                sample(out, name, &[("rule", rule)], load(read(s)));
            }
        }
        let name = "outpost_proxy_cache_total";
        family(
            out,
            name,
            "counter",
            "Cache lookups of rules with `cache`, by rule and result.",
        );
        for (rule, s) in &rows {
            for (result, count) in [("hit", &s.hits), ("stale", &s.stale), ("miss", &s.misses)] {
                sample(
                    out,
                    name,
                    &[("rule", rule), ("result", result)],
                    load(count),
                );
            }
        }
        let name = "outpost_proxy_upstream_seconds";
        family(
            out,
            name,
            "summary",
            "Time upstreams took to answer (their response head), by rule.",
        );
        for (rule, s) in &rows {
            let seconds = load(&s.upstream_micros) as f64 / 1e6;
            sample(out, &format!("{name}_sum"), &[("rule", rule)], seconds);
            sample(
                out,
                &format!("{name}_count"),
                &[("rule", rule)],
                load(&s.upstream_requests),
            );
        }
    }
}
