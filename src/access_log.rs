//! The access log: one JSON line per request, written off the request path by
//! a dedicated thread so a slow disk never slows a response.

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::AccessLogTarget;

/// One request's record.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub time: String,
    pub site: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub micros: u64,
    pub country: Option<String>,
    pub rules: Vec<String>,
    pub variant: Option<String>,
    pub version: Option<u64>,
    pub client: IpAddr,
}

/// Sends entries to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<Sender<Entry>>,
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(AccessLog { tx: None }),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out))?;
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

/// Writes lines as they come, flushing whenever the queue runs dry.
fn write_lines(rx: Receiver<Entry>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(entry) = rx.recv() {
        let mut next = Some(entry);
        while let Some(e) = next {
            let _ = serde_json::to_writer(&mut out, &e);
            let _ = out.write_all(b"\n");
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// Now, as RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
