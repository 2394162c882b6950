//! `outpost fleet status`: which version each box of the fleet serves.

use std::fmt::Write;

use crate::fleet::{self, FleetError};

#[derive(clap::Args)]
pub struct FleetArgs {
    /// `status`
    #[arg(value_parser = ["status"])]
    pub what: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub fleet: String,
}

/// One block per box that has reported: its name, then `  key: version`
/// for each site (and the rules) it serves.
pub async fn status(url: &str) -> Result<String, FleetError> {
    Ok(render(&fleet::status(url).await?))
}

fn render(boxes: &std::collections::BTreeMap<String, fleet::BoxReport>) -> String {
    let mut out = String::new();
    for (name, report) in boxes {
        let _ = writeln!(out, "{name}");
        for (key, version) in &report.served {
            let _ = writeln!(out, "  {key}: {version}");
        }
    }
    if boxes.is_empty() {
        out.push_str("no boxes have reported\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn each_box_lists_what_it_serves() {
        let report: fleet::BoxReport = serde_json::from_str(
            r#"{"served":{"_rules":"r1","main":"v2","main!error":"pack damaged"},"updated_unix_ms":5}"#,
        )
        .unwrap();
        let boxes = BTreeMap::from([
            ("box1".to_string(), report),
            ("box0".to_string(), fleet::BoxReport::default()),
        ]);
        assert_eq!(
            render(&boxes),
            "box0\nbox1\n  _rules: r1\n  main: v2\n  main!error: pack damaged\n"
        );
        assert_eq!(render(&BTreeMap::new()), "no boxes have reported\n");
    }
}
