//! Request metrics, counted on the request path with atomics only (no locks
//! once a site/status pair has been seen) and written out in Prometheus'
//! text format by the admin listener.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

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

#[derive(Default)]
pub struct Metrics {
    by_site: RwLock<HashMap<String, HashMap<u16, Series>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
}

impl Metrics {
    /// Counts one response.
    pub fn observe(&self, site: &str, status: u16, bytes: u64, micros: u64) {
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
        m.observe("a", 200, 100, 50);
        m.observe("a", 200, 100, 3000);
        m.observe("b\"x", 404, 7, 2_000_000);
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
}
