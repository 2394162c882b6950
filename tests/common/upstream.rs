//! A real HTTP upstream for fragment tests, whose behaviour a test can
//! change while it runs, counting the requests it gets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Mode {
    Json(String),
    /// Answers after a delay.
    Slow(Duration, String),
    Status(u16),
    /// Answers once the test calls [`Upstream::release`]: a page that comes
    /// back before then did not wait for this source.
    Held(String),
    /// Reads the request and never answers (until the upstream is dropped).
    Hang,
    Redirect(String),
    /// A body of this many bytes, with no Content-Length.
    Huge(usize),
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

/// Whether held answers may go, and whether the upstream is gone.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, released: bool, stopped: bool) {
        let mut s = self.state.lock().unwrap();
        s.0 |= released;
        s.1 |= stopped;
        self.changed.notify_all();
    }

    /// Blocks until released (when `held`) or stopped; true if released.
    fn wait(&self, held: bool) -> bool {
        let go = |&mut (released, stopped): &mut (bool, bool)| stopped || held && released;
        let s = self.state.lock().unwrap();
        let s = self.changed.wait_while(s, |s| !go(s)).unwrap();
        held && s.0 && !s.1
    }
}

impl Upstream {
    pub fn start(mode: Mode) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let (r, m, s, g) = (requests.clone(), mode.clone(), stop.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, m, s, g) = (r.clone(), m.clone(), s.clone(), g.clone());
                std::thread::spawn(move || serve(stream, &r, &m, &s, &g));
            }
        });
        Upstream {
            addr,
            requests,
            mode,
            stop,
            gate,
        }
    }

    /// Lets [`Mode::Held`] answers go, those waiting and those to come.
    pub fn release(&self) {
        self.gate.set(true, false);
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.gate.set(false, true);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    stream: TcpStream,
    requests: &AtomicUsize,
    mode: &Mutex<Mode>,
    stop: &AtomicBool,
    gate: &Gate,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        let mut head = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.clone());
        }
        if head.is_empty() || stop.load(Ordering::Relaxed) {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let mode = mode.lock().unwrap().clone();
        let reply = |out: &mut TcpStream, status: &str, extra: &str, body: &str| {
            let _ = write!(out, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len());
        };
        match mode {
            Mode::Json(body) => reply(&mut out, "200 OK", "", &body),
            Mode::Slow(delay, body) => {
                std::thread::sleep(delay);
                reply(&mut out, "200 OK", "", &body);
            }
            Mode::Status(code) => reply(&mut out, &format!("{code} Oops"), "", "{}"),
            Mode::Held(body) => {
                if !gate.wait(true) {
                    return;
                }
                reply(&mut out, "200 OK", "", &body);
            }
            Mode::Hang => {
                gate.wait(false);
                return;
            }
            Mode::Redirect(to) => reply(&mut out, "302 Found", &format!("Location: {to}\r\n"), ""),
            Mode::Huge(size) => {
                let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[");
                let chunk = vec![b'1'; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if out.write_all(&chunk).is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
                return;
            }
        }
        let _ = out.flush();
    }
}
