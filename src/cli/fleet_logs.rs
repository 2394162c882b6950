//! `outpost fleet logs`: the access-log lines of every box (or one), from
//! the fleet's log stream, one JSON line each with the box's id as its
//! first field (`{"box":"edge-1","time":...}`), ready for `jq`.
//!
//! Without `--follow` it prints what the stream held when it started and
//! exits; with it, it goes on with new lines until interrupted. `--site`
//! and `--status` are checked here, on each line.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::fleet::logs::{self, LogQuery};
use crate::fleet::FleetError;

#[derive(clap::Args)]
pub struct FleetLogsArgs {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub fleet: String,
    /// Go on printing new lines as the boxes send them.
    #[arg(long)]
    pub follow: bool,
    /// Only this site's lines.
    #[arg(long)]
    pub site: Option<String>,
    /// Only these answers: a code (503), a class (5xx) or a list (404,5xx).
    #[arg(long)]
    pub status: Option<StatusFilter>,
    /// Only this box's lines.
    #[arg(long = "box", value_parser = super::box_id)]
    pub box_id: Option<String>,
    /// Lines from this long ago on.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub since: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetLogsError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Answers `--status` lets through: codes and classes, any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusFilter(Vec<Status>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Code(u16),
    /// The hundreds digit: 5 for 5xx.
    Class(u16),
}

impl StatusFilter {
    pub fn admits(&self, status: u16) -> bool {
        self.0.iter().any(|s| match *s {
            Status::Code(c) => c == status,
            Status::Class(c) => status / 100 == c,
        })
    }
}

impl FromStr for StatusFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<StatusFilter, String> {
        let one = |part: &str| {
            let part = part.trim().to_ascii_lowercase();
            let bad = || {
                format!("`{part}` is not a status: give a code (503), a class (5xx) or a list (404,5xx)")
            };
            if let Some(class) = part.strip_suffix("xx") {
                return match class.parse::<u16>() {
                    Ok(c @ 1..=5) if class.len() == 1 => Ok(Status::Class(c)),
                    _ => Err(bad()),
                };
            }
            match part.parse::<u16>() {
                Ok(c @ 100..=599) if part.len() == 3 => Ok(Status::Code(c)),
                _ => Err(bad()),
            }
        };
        text.split(',')
            .map(one)
            .collect::<Result<_, _>>()
            .map(StatusFilter)
    }
}

/// The fields of a line the filters read.
#[derive(Deserialize)]
struct Seen {
    site: Option<String>,
    status: u16,
}

/// Prints the lines the arguments ask for, to stdout.
pub fn run(args: FleetLogsArgs) -> Result<(), FleetLogsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FleetLogsError::Runtime)?;
    let query = LogQuery {
        box_id: args.box_id.clone(),
        since: args.since,
        follow: args.follow,
    };
    let stdout = std::io::stdout();
    runtime.block_on(logs::read(&args.fleet, &query, |box_id, line| {
        if wanted(&args, line) {
            let mut out = stdout.lock();
            let _ = out.write_all(&with_box(box_id, line));
        }
    }))?;
    Ok(())
}

fn wanted(args: &FleetLogsArgs, line: &[u8]) -> bool {
    if args.site.is_none() && args.status.is_none() {
        return !line.is_empty();
    }
    let Ok(seen) = serde_json::from_slice::<Seen>(line) else {
        return false;
    };
    args.site
        .as_deref()
        .is_none_or(|s| seen.site.as_deref() == Some(s))
        && args.status.as_ref().is_none_or(|f| f.admits(seen.status))
}

/// `line` with `"box":"<id>"` as its first field, and a newline.
fn with_box(box_id: &str, line: &[u8]) -> Vec<u8> {
    let rest = line.strip_prefix(b"{").unwrap_or(line);
    let mut out = Vec::with_capacity(line.len() + box_id.len() + 10);
    out.extend_from_slice(b"{\"box\":");
    out.extend_from_slice(&serde_json::to_vec(box_id).expect("a string serializes"));
    if rest != b"}" {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_takes_codes_classes_and_lists() {
        let f: StatusFilter = "503".parse().unwrap();
        assert!(f.admits(503) && !f.admits(502));
        let f: StatusFilter = "5xx".parse().unwrap();
        assert!(f.admits(500) && f.admits(599) && !f.admits(404));
        let f: StatusFilter = "404, 5XX".parse().unwrap();
        assert!(f.admits(404) && f.admits(503) && !f.admits(403) && !f.admits(200));
    }

    #[test]
    fn a_bad_status_is_a_clear_error() {
        for bad in [
            "", "5", "50", "5000", "099", "600", "6xx", "0xx", "xx", "55xx", "abc", "404,",
        ] {
            let e = bad.parse::<StatusFilter>().unwrap_err();
            assert!(e.contains("is not a status"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_box_comes_first() {
        let line = with_box("edge-1", br#"{"site":"a","status":200}"#);
        assert_eq!(
            line,
            b"{\"box\":\"edge-1\",\"site\":\"a\",\"status\":200}\n"
        );
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["box"], "edge-1");
    }
}
