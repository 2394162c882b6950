//! Request metrics, counted on the request path with atomics only (no locks
//! once a site/status pair has been seen) and written out in Prometheus'
//! text format by the admin listener; and the last minute's traffic
//! (requests per second, 5xx rate, p99 latency) a box reports to its fleet.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

// foldhash: looked up per request with keys no visitor can add.
use foldhash::HashMap;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
struct Series {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Which count of a series a metric family reports.
type ReadSeries = fn(&Series) -> u64;

pub struct Metrics {
    by_site: RwLock<HashMap<String, HashMap<u16, Series>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
    minute: Minute,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            by_site: RwLock::default(),
            buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
            minute: Minute::new(Instant::now()),
        }
    }
}

impl Metrics {
    /// Counts one response, answered `micros` after its request came, at
    /// `now`.
    pub fn observe(&self, site: &str, status: u16, bytes: u64, micros: u64, now: Instant) {
        self.minute.observe(status, micros, now);
        let record = |s: &Series| {
            s.requests.fetch_add(1, Ordering::Relaxed);
            s.bytes.fetch_add(bytes, Ordering::Relaxed);
        };
        let known = {
            let map = self.by_site.read().unwrap();
            map.get(site)
                .and_then(|m| m.get(&status))
                .map(record)
                .is_some()
        };
        if !known {
            let mut map = self.by_site.write().unwrap();
            record(
                map.entry(site.to_string())
                    .or_default()
                    .entry(status)
                    .or_default(),
            );
        }
        let seconds = micros as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Writes the request metrics in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let map = self.by_site.read().unwrap();
        let mut rows: Vec<_> = map
            .iter()
            .flat_map(|(site, m)| m.iter().map(move |(status, s)| ((site, status), s)))
            .collect();
        rows.sort_by_key(|(k, _)| *k);
        let by_site: [(&str, &str, ReadSeries); 2] = [
            (
                "outpost_requests_total",
                "Requests answered, by site and status.",
                |s: &Series| s.requests.load(Ordering::Relaxed),
            ),
            (
                "outpost_response_bytes_total",
                "Body bytes sent, by site and status.",
                |s: &Series| s.bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in by_site {
            family(out, name, "counter", help);
            for ((site, status), s) in &rows {
                let status = status.to_string();
                sample(out, name, &[("site", site), ("status", &status)], value(s));
            }
        }
        let name = "outpost_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time from request to response head.",
        );
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            sample(out, &bucket, &[("le", &bound.to_string())], cumulative);
        }
        let total = self.latency_count.load(Ordering::Relaxed);
        sample(out, &bucket, &[("le", "+Inf")], total);
        let micros = self.latency_micros.load(Ordering::Relaxed);
        sample(out, &format!("{name}_sum"), &[], micros as f64 / 1e6);
        sample(out, &format!("{name}_count"), &[], total);
    }

    /// The last minute's traffic, up to `now`.
    pub fn traffic(&self, now: Instant) -> Traffic {
        self.minute.traffic(now)
    }
}

/// Requests over the last minute (or since start, when younger).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    pub requests: u64,
    pub requests_per_second: f64,
    /// Share of the requests answered 5xx.
    pub error_rate: f64,
    /// 99th percentile of the time to the response head, in milliseconds,
    /// to within an eighth; `None` without requests.
    pub p99_ms: Option<f64>,
}

/// Latency buckets per doubling: a bucket's bounds are an eighth apart.
const STEPS: u32 = 8;
/// Buckets from 1 µs to 2^30 µs (18 minutes).
const LATENCIES: usize = 31 * STEPS as usize;

/// A second of traffic.
struct Second {
    /// Which second since `Minute::start` the counts are of.
    at: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCIES],
}

/// The last 60 seconds of traffic, one slot per second, reused as the
/// clock goes round. Counting is a few relaxed atomic adds; a slot is
/// cleared by the first request of its new second (an add racing with the
/// clear may be lost, which a minute's figures do not feel).
struct Minute {
    start: Instant,
    seconds: Box<[Second]>,
}

impl Minute {
    fn new(start: Instant) -> Minute {
        let seconds = (0..60)
            .map(|_| Second {
                at: AtomicU64::new(u64::MAX),
                requests: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                latency: std::array::from_fn(|_| AtomicU64::new(0)),
            })
            .collect();
        Minute { start, seconds }
    }

    fn observe(&self, status: u16, micros: u64, now: Instant) {
        let second = now.saturating_duration_since(self.start).as_secs();
        let slot = &self.seconds[(second % 60) as usize];
        let at = slot.at.load(Ordering::Relaxed);
        if at != second
            && slot
                .at
                .compare_exchange(at, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
            for b in &slot.latency {
                b.store(0, Ordering::Relaxed);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[latency_bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The 60 seconds before the current one (a second still counting would
    /// lower the rate), or those since start.
    fn traffic(&self, now: Instant) -> Traffic {
        let current = now.saturating_duration_since(self.start).as_secs();
        let first = current.saturating_sub(60);
        let mut requests = 0;
        let mut errors = 0;
        let mut latency = [0u64; LATENCIES];
        for s in self.seconds.iter() {
            let at = s.at.load(Ordering::Relaxed);
            if at < first || at >= current {
                continue;
            }
            requests += s.requests.load(Ordering::Relaxed);
            errors += s.errors.load(Ordering::Relaxed);
            for (sum, b) in latency.iter_mut().zip(&s.latency) {
                *sum += b.load(Ordering::Relaxed);
            }
        }
        let span = (current - first).max(1) as f64;
        let counted: u64 = latency.iter().sum();
        let p99_ms = (counted > 0).then(|| {
            let rank = (counted * 99).div_ceil(100);
            let mut seen = 0;
            let bucket = latency
                .iter()
                .position(|n| {
                    seen += n;
                    seen >= rank
                })
                .unwrap_or(LATENCIES - 1);
            bucket_top(bucket) as f64 / 1000.0
        });
        Traffic {
            requests,
            requests_per_second: requests as f64 / span,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p99_ms,
        }
    }
}

/// The bucket of a latency: its doubling, then which eighth of it.
fn latency_bucket(micros: u64) -> usize {
    let v = micros.max(1);
    let doubling = 63 - v.leading_zeros();
    let eighth = if doubling >= 3 {
        (v >> (doubling - 3)) & (STEPS as u64 - 1)
    } else {
        (v << (3 - doubling)) & (STEPS as u64 - 1)
    };
    ((doubling * STEPS) as usize + eighth as usize).min(LATENCIES - 1)
}

/// The largest latency in a bucket, in microseconds.
fn bucket_top(bucket: usize) -> u64 {
    let (doubling, eighth) = (bucket as u32 / STEPS, bucket as u64 % STEPS as u64);
    let low = (1u64 << doubling) + ((eighth << doubling) >> 3);
    let width = ((1u64 << doubling) >> 3).max(1);
    low + width - 1
}

/// Writes a metric family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample, `name{label="value",...} value`, labels escaped.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        let now = Instant::now();
        m.observe("a", 200, 100, 50, now);
        m.observe("a", 200, 100, 3000, now);
        m.observe("b\"x", 404, 7, 2_000_000, now);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("outpost_requests_total{site=\"a\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(out.contains("outpost_response_bytes_total{site=\"a\",status=\"200\"} 200"));
        assert!(out.contains("outpost_requests_total{site=\"b\\\"x\",status=\"404\"} 1"));
        assert!(out.contains("outpost_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(out.contains("outpost_request_duration_seconds_bucket{le=\"1\"} 2"));
        assert!(out.contains("outpost_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
    }

    #[test]
    fn latency_buckets_are_an_eighth_wide() {
        for micros in [1, 2, 7, 8, 9, 100, 1000, 1023, 1024, 123_456, 10_000_000] {
            let b = latency_bucket(micros);
            assert!(bucket_top(b) >= micros, "{micros} in {b}");
            assert!(b == 0 || bucket_top(b - 1) < micros, "{micros} in {b}");
            assert!(
                bucket_top(b) as f64 <= micros as f64 * 1.125 + 1.0,
                "{micros}"
            );
        }
    }

    #[test]
    fn the_last_minute_counts_rate_errors_and_p99() {
        let start = Instant::now();
        let minute = Minute::new(start);
        let at = |s: u64| start + std::time::Duration::from_millis(s * 1000 + 500);
        // Seconds 0..10: 100 requests a second, 1 of them a 503 taking
        // 50 ms, the rest 1 ms.
        for s in 0..10 {
            for i in 0..100 {
                let (status, micros) = if i == 0 { (503, 50_000) } else { (200, 1000) };
                minute.observe(status, micros, at(s));
            }
        }
        let t = minute.traffic(at(10));
        assert_eq!(t.requests, 1000);
        assert_eq!(t.requests_per_second, 100.0);
        assert_eq!(t.error_rate, 0.01);
        // The 990th of 1000 is a 1 ms answer; at 2 % slow it is 50 ms.
        assert!((t.p99_ms.unwrap() - 1.0).abs() < 0.13, "{t:?}");
        minute.observe(503, 50_000, at(10));
        for _ in 0..20 {
            minute.observe(503, 50_000, at(10));
        }
        let t = minute.traffic(at(11));
        assert!((t.p99_ms.unwrap() - 50.0).abs() < 6.3, "{t:?}");
        // A minute later, seconds 0..10 have left the window; their slots
        // are reused.
        minute.observe(200, 1000, at(70));
        let t = minute.traffic(at(71));
        assert_eq!(t.requests, 1, "{t:?}");
        assert_eq!(minute.traffic(at(200)).requests, 0);
        assert_eq!(minute.traffic(at(200)).p99_ms, None);
    }
}
