//! The access log: one JSON line per request, written off the request path by
//! a dedicated thread so a slow disk never slows a response. A log file that
//! is moved or deleted (by logrotate, say) is opened again at its path.
//!
//! The same thread hands each line, serialized once, to an optional
//! [`LineSink`] (the server gives it the fleet's log shipper), whether the
//! local log is on or off: the request only builds its [`Entry`] and sends
//! it down a channel.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::Response;
use serde::{Serialize, Serializer};

use crate::config::AccessLogTarget;
use crate::context::Country;
use crate::ctx::Ctx;
use crate::metrics::Metrics;

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
    let variant = decision.filter(|d| !d.variants.is_empty()).map(|d| {
        let names: Vec<String> = d
            .variants
            .iter()
            .map(|a| format!("{}={}", a.experiment, a.variant))
            .collect();
        names.join(",")
    });
    // At most 1024 characters, copied once.
    let path = ctx.head.uri.path();
    let cut = path.char_indices().nth(1024).map_or(path.len(), |(i, _)| i);
    log.record(Entry {
        time: SystemTime::now(),
        site: ctx.site.map(|s| s.site.clone()),
        method: ctx.head.method.clone(),
        path: path[..cut].to_string(),
        status,
        bytes,
        micros,
        country: ctx.context.as_ref().map(|c| c.country),
        rules: decision.map_or_else(Vec::new, |d| d.fired.clone()),
        variant,
        version: ctx.site.map(|s| s.number),
        // The visitor's address, when the context found it behind proxies.
        client: ctx.context.as_ref().map_or(ctx.peer.ip(), |c| c.client),
        cache: response
            .headers()
            .get("x-outpost-cache")
            .and_then(|v| cache_result(v.as_bytes())),
    });
}

/// The proxy cache's word for a request, as its header says it.
fn cache_result(value: &[u8]) -> Option<&'static str> {
    ["HIT", "STALE", "MISS", "BYPASS"]
        .into_iter()
        .find(|r| r.as_bytes() == value)
}

/// One request's record. The request builds it and the writer thread
/// writes it, so its fields are what costs the request least to fill:
/// few allocations (each is freed on the other thread), and text such as
/// the time formatted only when written.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    pub site: Option<String>,
    #[serde(serialize_with = "method")]
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub micros: u64,
    #[serde(serialize_with = "country")]
    pub country: Option<Country>,
    #[serde(serialize_with = "names")]
    pub rules: Vec<Arc<str>>,
    pub variant: Option<String>,
    pub version: Option<u64>,
    pub client: IpAddr,
    /// What a proxy's cache made of the request (HIT, STALE, MISS, BYPASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

fn rfc3339_millis<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn method<S: Serializer>(method: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

fn country<S: Serializer>(country: &Option<Country>, s: S) -> Result<S::Ok, S::Error> {
    match country {
        Some(c) => s.serialize_some(c.as_str()),
        None => s.serialize_none(),
    }
}

fn names<S: Serializer>(names: &[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(|n| &**n))
}

/// Where the writer thread hands each line besides the local log. It runs
/// on the writer thread, never on the request path, and must not block:
/// a slow consumer would hold up the local log.
pub trait LineSink: Send + 'static {
    /// One JSON line, without its newline.
    fn line(&mut self, line: &[u8]);
}

/// Sends entries to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<Sender<Entry>>,
}

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
            return Ok(AccessLog { tx: None });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, local, also))?;
        Ok(AccessLog { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, entry: Entry) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(entry);
        }
    }
}

/// How long the writer rests between rounds when it has no local log.
const SINK_ONLY_REST: Duration = Duration::from_millis(50);

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

/// Writes lines as they come, flushing whenever the queue runs dry; each
/// line is serialized once for both the local log and `also`.
fn write_lines(rx: Receiver<Entry>, mut local: Option<Sink>, mut also: Option<Box<dyn LineSink>>) {
    let mut line = Vec::with_capacity(512);
    while let Ok(entry) = rx.recv() {
        if let Some(sink) = &mut local {
            sink.reopen_if_moved();
        }
        let mut next = Some(entry);
        while let Some(e) = next {
            line.clear();
            let _ = serde_json::to_writer(&mut line, &e);
            if let Some(also) = &mut also {
                also.line(&line);
            }
            if let Some(sink) = &mut local {
                line.push(b'\n');
                let _ = sink.out().write_all(&line);
            }
            next = rx.try_recv().ok();
        }
        match &mut local {
            Some(sink) => {
                let _ = sink.out().flush();
            }
            // Lines for the sink alone leave in batches anyway: resting
            // between rounds spares each request a wake-up of this thread
            // (a system call on the request path).
            None => std::thread::sleep(SINK_ONLY_REST),
        }
    }
}

/// Now, as RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_as_it_always_did() {
        let entry = Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_640_620_078),
            site: Some("casino-uk".into()),
            method: http::Method::GET,
            path: "/".into(),
            status: 200,
            bytes: 4708,
            micros: 378,
            country: Country::parse("GB"),
            rules: vec!["security-headers".into(), "hero-test-uk".into()],
            variant: Some("hero-uk=control".into()),
            version: Some(1),
            client: "127.0.0.1".parse().unwrap(),
            cache: cache_result(b"HIT"),
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"time":"2025-12-02T01:57:00.078Z","site":"casino-uk","method":"GET","path":"/","status":200,"bytes":4708,"micros":378,"country":"GB","rules":["security-headers","hero-test-uk"],"variant":"hero-uk=control","version":1,"client":"127.0.0.1","cache":"HIT"}"#
        );
        assert_eq!(cache_result(b"hit"), None);
    }
}
