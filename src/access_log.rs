//! The access log: one JSON line per request. The request writes its line
//! into one shared buffer (under a lock held for the few hundred bytes,
//! nothing allocated); a dedicated thread takes the buffer
//! every 100 ms and writes it out, so a slow disk never slows a response.
//! A log file that is moved or deleted (by logrotate, say) is opened again
//! at its path.
//!
//! The same thread hands the lines to an optional [`LineSink`] (the server
//! gives it the fleet's log shipper), whether the local log is on or off.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Response;

use crate::config::AccessLogTarget;
use crate::ctx::Ctx;
use crate::metrics::Metrics;
use crate::rules::variant::Assignment;

/// The log stage: counts the answer to `ctx` in the metrics (when on) and
/// writes its line (when the log is on).
pub fn log<B: http_body::Body>(
    log: &AccessLog,
    metrics: Option<&Metrics>,
    ctx: &Ctx<'_>,
    response: &Response<B>,
) {
    let status = response.status().as_u16();
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    let answered = Instant::now();
    let micros = answered.saturating_duration_since(ctx.started).as_micros() as u64;
    if let Some(metrics) = metrics {
        metrics.observe(
            ctx.site.map_or("", |s| s.site.as_str()),
            status,
            bytes,
            micros,
            answered,
        );
    }
    if !log.enabled() {
        return;
    }
    let decision = ctx.decision.as_ref();
    // At most 1024 characters (a path of at most 1024 bytes has no more).
    let path = ctx.head.uri.path();
    let cut = match path.len() {
        0..=1024 => path.len(),
        _ => path.char_indices().nth(1024).map_or(path.len(), |(i, _)| i),
    };
    log.record(&Entry {
        time: SystemTime::now(),
        site: ctx.site.map(|s| s.site.as_str()),
        method: ctx.head.method.as_str(),
        path: &path[..cut],
        status,
        bytes,
        micros,
        country: ctx.context.as_ref().map(|c| c.country.as_str()),
        rules: decision.map_or(&[], |d| &d.fired[..]),
        variant: decision.map_or(&[], |d| &d.variants[..]),
        version: ctx.site.map(|s| s.number),
        // The visitor's address, when the context found it behind proxies.
        client: ctx.context.as_ref().map_or(ctx.peer.ip(), |c| c.client),
        // Only a rule proxies, so a request no rule applied to has no
        // cache result to look for.
        cache: decision
            .and_then(|_| response.headers().get(&CACHE_HEADER))
            .and_then(|v| cache_result(v.as_bytes())),
    });
}

/// The header a proxy rule's cache marks its answers with.
pub const CACHE_HEADER: http::HeaderName = http::HeaderName::from_static("x-outpost-cache");

/// The proxy cache's word for a request, as its header says it.
fn cache_result(value: &[u8]) -> Option<&'static str> {
    ["HIT", "STALE", "MISS", "BYPASS"]
        .into_iter()
        .find(|r| r.as_bytes() == value)
}

/// One request's record, borrowed from the request: writing it allocates
/// nothing.
#[derive(Debug)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub site: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub micros: u64,
    pub country: Option<&'a str>,
    pub rules: &'a [Arc<str>],
    /// The experiments the response is in, as `experiment=variant,...`;
    /// null when none.
    pub variant: &'a [Assignment],
    pub version: Option<u64>,
    pub client: IpAddr,
    /// What a proxy's cache made of the request (HIT, STALE, MISS, BYPASS);
    /// the key is left out when none.
    pub cache: Option<&'static str>,
}

impl Entry<'_> {
    /// Appends the entry's JSON object. Written by hand: a line per request
    /// is the log's whole cost, and a derived serializer spends most of it
    /// escaping strings that need no escape.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        write_time(out, self.time);
        out.extend_from_slice(b"\",\"site\":");
        optional(out, self.site);
        out.extend_from_slice(b",\"method\":");
        string(out, self.method);
        out.extend_from_slice(b",\"path\":");
        string(out, self.path);
        out.extend_from_slice(b",\"status\":");
        number(out, self.status);
        out.extend_from_slice(b",\"bytes\":");
        number(out, self.bytes);
        out.extend_from_slice(b",\"micros\":");
        number(out, self.micros);
        out.extend_from_slice(b",\"country\":");
        optional(out, self.country);
        out.extend_from_slice(b",\"rules\":[");
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, rule);
        }
        out.extend_from_slice(b"],\"variant\":");
        if self.variant.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            for (i, a) in self.variant.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                escaped(out, &a.experiment);
                out.push(b'=');
                escaped(out, &a.variant);
            }
            out.push(b'"');
        }
        out.extend_from_slice(b",\"version\":");
        match self.version {
            Some(v) => number(out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"client\":\"");
        match self.client {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    number(out, octet);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
        out.push(b'"');
        if let Some(cache) = self.cache {
            out.extend_from_slice(b",\"cache\":");
            string(out, cache);
        }
        out.push(b'}');
    }
}

/// A JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// The inside of a JSON string: `s` as it is unless it holds a quote, a
/// backslash or a control character, which serde_json escapes.
fn escaped(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        let start = out.len();
        let _ = serde_json::to_writer(&mut *out, s);
        // Without the quotes serde_json put around it.
        out.pop();
        out.remove(start);
    }
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

thread_local! {
    /// The last second formatted on this thread, as `2026-12-02T01:57:00`:
    /// most lines of a second share it.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC with milliseconds: `2026-12-02T01:57:00.078Z`.
fn write_time(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs {
            let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
            prefix.copy_from_slice(&whole.to_string().as_bytes()[..19]);
            *second = secs;
        }
        out.extend_from_slice(prefix);
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

/// Where the writer thread hands the lines besides the local log. It runs
/// on the writer thread, never on the request path, and must not block:
/// a slow consumer would hold up the local log.
pub trait LineSink: Send + 'static {
    /// JSON lines, each ending with a newline.
    fn lines(&mut self, lines: &[u8]);
}

/// Takes lines from the requests; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

/// What the requests and the writer thread share.
struct Shared {
    /// Lines written since the writer last took them, each ending `\n`.
    lines: Mutex<Vec<u8>>,
    /// Rounds the writer finished, for [`AccessLog::flush`].
    rounds: Mutex<u64>,
    round_done: Condvar,
    writer: std::sync::OnceLock<std::thread::Thread>,
}

/// How often the writer takes the lines.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// Past this many bytes waiting (a disk that stalls), the writer is woken
/// at once; past `HELD_MAX`, lines are dropped rather than held.
const WAKE_AT: usize = 256 << 10;
const HELD_MAX: usize = 64 << 20;

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        AccessLog::open_with(target, None)
    }

    /// The log at `target`, its lines also handed to `also` (which keeps
    /// the writer running when the local log is off).
    pub fn open_with(
        target: &AccessLogTarget,
        also: Option<Box<dyn LineSink>>,
    ) -> std::io::Result<AccessLog> {
        let local = match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => Some(Sink::Stdout(BufWriter::new(std::io::stdout()))),
            AccessLogTarget::File(path) => {
                let (file, id) = open(path)?;
                Some(Sink::File {
                    path: path.clone(),
                    out: BufWriter::new(file),
                    id,
                    checked: Instant::now(),
                })
            }
        };
        if local.is_none() && also.is_none() {
            return Ok(AccessLog { shared: None });
        }
        let shared = Arc::new(Shared {
            lines: Mutex::new(Vec::with_capacity(WAKE_AT)),
            rounds: Mutex::new(0),
            round_done: Condvar::new(),
            writer: std::sync::OnceLock::new(),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&writer, local, also))?;
        let _ = shared.writer.set(thread.thread().clone());
        Ok(AccessLog {
            shared: Some(shared),
        })
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Writes `entry`'s line into the shared buffer (under its lock: the
    /// line is a few hundred bytes written without allocating).
    pub fn record(&self, entry: &Entry<'_>) {
        let Some(shared) = &self.shared else { return };
        let mut lines = shared.lines.lock().unwrap();
        if lines.len() > HELD_MAX {
            return;
        }
        entry.write(&mut lines);
        lines.push(b'\n');
        let wake = lines.len() >= WAKE_AT;
        drop(lines);
        if wake {
            if let Some(w) = shared.writer.get() {
                w.unpark();
            }
        }
    }

    /// Waits until the lines recorded so far are written (at shutdown).
    pub fn flush(&self) {
        let Some(shared) = &self.shared else { return };
        let mut rounds = shared.rounds.lock().unwrap();
        // The round under way may have taken its lines before ours: wait
        // for the one after it.
        let until = *rounds + 2;
        while *rounds < until {
            if let Some(w) = shared.writer.get() {
                w.unpark();
            }
            rounds = shared
                .round_done
                .wait_timeout(rounds, WRITE_EVERY)
                .unwrap()
                .0;
        }
    }
}

/// How often the log file's path is checked for a new file.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where lines go.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        path: PathBuf,
        out: BufWriter<File>,
        /// Device and inode of the open file.
        id: (u64, u64),
        checked: Instant,
    },
}

impl Sink {
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::File { out, .. } => out,
        }
    }

    /// Opens the path again when the file there is no longer the open one.
    fn reopen_if_moved(&mut self) {
        let Sink::File {
            path,
            out,
            id,
            checked,
        } = self
        else {
            return;
        };
        if checked.elapsed() < CHECK_EVERY {
            return;
        }
        *checked = Instant::now();
        let there = std::fs::metadata(&*path).map(|m| (m.dev(), m.ino()));
        if there.is_ok_and(|there| there == *id) {
            return;
        }
        match open(path) {
            Ok((file, new_id)) => {
                let _ = out.flush();
                *out = BufWriter::new(file);
                *id = new_id;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the access log again; writing to the moved file")
            }
        }
    }
}

fn open(path: &Path) -> std::io::Result<(File, (u64, u64))> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

/// Every [`WRITE_EVERY`] (or sooner when woken), takes the lines and
/// writes them to the local log and hands each to `also`.
fn write_lines(shared: &Shared, mut local: Option<Sink>, mut also: Option<Box<dyn LineSink>>) {
    let mut taken = Vec::with_capacity(WAKE_AT);
    loop {
        std::thread::park_timeout(WRITE_EVERY);
        std::mem::swap(&mut *shared.lines.lock().unwrap(), &mut taken);
        if !taken.is_empty() {
            if let Some(sink) = &mut local {
                sink.reopen_if_moved();
                let out = sink.out();
                let _ = out.write_all(&taken);
                let _ = out.flush();
            }
            if let Some(also) = &mut also {
                also.lines(&taken);
            }
            taken.clear();
        }
        *shared.rounds.lock().unwrap() += 1;
        shared.round_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_it_always_did() {
        let rules: Vec<Arc<str>> = vec!["security-headers".into(), "hero-test-uk".into()];
        let variants = [Assignment {
            experiment: "hero-uk".into(),
            variant: "control".into(),
            drawn: true,
            edits: 0..0,
            serve: None,
            applied: true,
            keep: None,
        }];
        let entry = Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_640_620_078),
            site: Some("casino-uk"),
            method: "GET",
            path: "/",
            status: 200,
            bytes: 4708,
            micros: 378,
            country: Some("GB"),
            rules: &rules,
            variant: &variants,
            version: Some(1),
            client: "127.0.0.1".parse().unwrap(),
            cache: cache_result(b"HIT"),
        };
        let text = |e: &Entry| {
            let mut out = Vec::new();
            e.write(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            text(&entry),
            r#"{"time":"2025-12-02T01:57:00.078Z","site":"casino-uk","method":"GET","path":"/","status":200,"bytes":4708,"micros":378,"country":"GB","rules":["security-headers","hero-test-uk"],"variant":"hero-uk=control","version":1,"client":"127.0.0.1","cache":"HIT"}"#
        );
        assert_eq!(cache_result(b"hit"), None);
        // Two experiments, one name needing an escape: as serde_json wrote
        // the joined names.
        let two = [
            variants[0].clone(),
            Assignment {
                experiment: "say \"hi\"".into(),
                ..variants[0].clone()
            },
        ];
        let line = text(&Entry {
            variant: &two,
            ..entry
        });
        assert!(
            line.contains(r#""variant":"hero-uk=control,say \"hi\"=control""#),
            "{line}"
        );
        // The second is formatted once per thread and reused.
        let later = Entry {
            time: entry.time + Duration::from_millis(921),
            variant: &[],
            cache: None,
            ..entry
        };
        let line = text(&later);
        assert!(
            line.starts_with(r#"{"time":"2025-12-02T01:57:00.999Z""#),
            "{line}"
        );
        assert!(line.contains(r#""variant":null"#), "{line}");
        let next = Entry {
            time: entry.time + Duration::from_millis(60_922),
            ..later
        };
        let line = text(&next);
        assert!(
            line.starts_with(r#"{"time":"2025-12-02T01:58:01.000Z""#),
            "{line}"
        );
    }

    #[test]
    fn flushed_lines_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&AccessLogTarget::File(path.clone())).unwrap();
        for status in 200..300 {
            log.record(&Entry {
                time: SystemTime::now(),
                site: None,
                method: "GET",
                path: "/x\"y",
                status,
                bytes: 0,
                micros: 1,
                country: None,
                rules: &[],
                variant: &[],
                version: None,
                client: "::1".parse().unwrap(),
                cache: None,
            });
        }
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(statuses, (200..300).collect::<Vec<_>>());
        assert!(text.contains(r#""path":"/x\"y""#), "{text}");
        assert!(text.contains(r#""client":"::1""#), "{text}");
    }
}
