//! `outpost fleet status`: what each box of the fleet serves and how it
//! fares, from the reports the boxes put every second.

use std::fmt::Write;
use std::time::Duration;

use crate::fleet::report::{self, BoxStatus};
use crate::fleet::FleetError;

#[derive(clap::Args)]
pub struct FleetStatusArgs {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub fleet: String,
    /// A box that has not reported for this long is marked stale.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One block per box that has reported.
pub async fn status(args: FleetStatusArgs) -> Result<String, FleetError> {
    let boxes = report::read(&args.fleet).await?.status(args.stale_after);
    if args.json {
        return Ok(serde_json::to_string_pretty(&boxes).expect("serializes") + "\n");
    }
    Ok(render(&boxes))
}

fn render(boxes: &[BoxStatus]) -> String {
    let mut out = String::new();
    for b in boxes {
        render_box(&mut out, b);
    }
    if boxes.is_empty() {
        out.push_str("no boxes have reported\n");
    }
    out
}

fn render_box(out: &mut String, b: &BoxStatus) {
    let r = &b.report;
    let seen = humantime::format_duration(Duration::from_secs(b.seen_ms_ago / 1000));
    let state = if b.stale { "STALE" } else { "ok" };
    let _ = writeln!(out, "{}  {state}, last seen {seen} ago", b.id);
    for other in &b.claimed_by {
        let _ = writeln!(
            out,
            "  CONFLICT: another box (store {other}) claims this id; its figures are not counted"
        );
    }
    for (key, version) in &r.served {
        let _ = writeln!(out, "  {key}: {version}");
    }
    let f = &r.figures;
    let _ = writeln!(
        out,
        "  rules: generation {}, {} errors",
        f.rules.generation,
        f.rules.errors.len()
    );
    for e in &f.rules.errors {
        let _ = writeln!(out, "    {e}");
    }
    match &f.traffic {
        Some(t) => {
            let p99 = t.p99_ms.map_or("-".into(), |ms| format!("{ms:.1} ms"));
            let _ = writeln!(
                out,
                "  last minute: {:.1} req/s, {:.2}% 5xx, p99 {p99}",
                t.requests_per_second,
                t.error_rate * 100.0
            );
        }
        None => out.push_str("  last minute: - (metrics are off)\n"),
    }
    let g = &f.fragments;
    let _ = writeln!(
        out,
        "  fragments: {} fresh, {} stale, {} failed, {} upstream errors",
        g.fresh, g.stale, g.failed, g.upstream_errors
    );
    if f.log_lines_dropped > 0 {
        let _ = writeln!(out, "  log lines dropped: {}", f.log_lines_dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::report::Fleet;
    use crate::fleet::BoxReport;
    use std::collections::BTreeMap;

    #[test]
    fn each_box_lists_what_it_serves_and_how_it_fares() {
        let report: BoxReport = serde_json::from_str(
            r#"{"instance":"a1","served":{"_rules":"r1","main":"v2","main!error":"pack damaged"},
                "updated_unix_ms":5,
                "rules":{"generation":3,"errors":["rules/x.toml:1:1: bad"]},
                "traffic":{"requests":600,"requests_per_second":10.0,"error_rate":0.005,"p99_ms":1.25},
                "fragments":{"fresh":7,"stale":1,"failed":0,"upstream_errors":2}}"#,
        )
        .unwrap();
        let now = crate::store::unix_ms(std::time::SystemTime::now());
        let fresh = BoxReport {
            instance: "b2".into(),
            updated_unix_ms: now,
            ..Default::default()
        };
        let fleet = Fleet {
            boxes: BTreeMap::from([("box1".to_string(), report), ("box0".to_string(), fresh)]),
            claims: BTreeMap::new(),
        };
        let text = render(&fleet.status(Duration::from_secs(30)));
        assert!(text.starts_with("box0  ok, last seen 0s ago\n"), "{text}");
        let box1 = &text[text.find("box1").unwrap()..];
        assert!(box1.starts_with("box1  STALE, last seen"), "{text}");
        for line in [
            "  _rules: r1\n  main: v2\n  main!error: pack damaged\n",
            "  rules: generation 3, 1 errors\n    rules/x.toml:1:1: bad\n",
            "  last minute: 10.0 req/s, 0.50% 5xx, p99 1.2 ms\n",
            "  fragments: 7 fresh, 1 stale, 0 failed, 2 upstream errors\n",
        ] {
            assert!(box1.contains(line), "{line} in {text}");
        }
        assert_eq!(render(&[]), "no boxes have reported\n");
    }
}
