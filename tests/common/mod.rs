//! Test harness: a temporary root folder, the real `outpost` binary on an
//! ephemeral port, and a raw HTTP/1.1 client (raw, so hostile paths reach the
//! server exactly as written).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A root folder in a temporary directory.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("outpost.toml"),
            "admin_listen = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        Root { dir }
    }

    /// A copy of a fixture root (see [`fixture`]) to change.
    pub fn copy_of(from: &Path) -> Root {
        let root = Root::new();
        copy_dir(from, root.path());
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a site with the given hosts; `default` makes it answer unknown hosts.
    pub fn site(&self, name: &str, hosts: &[&str], default: bool) -> &Self {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
        self.write(
            &format!("sites/{name}/site.toml"),
            &format!(
                "hosts = [{}]\nlocale = \"en-GB\"\ncountries = [\"GB\"]\ngroup = \"g\"\ndefault = {default}\n",
                hosts.join(", ")
            ),
        );
        std::fs::create_dir_all(self.path().join(format!("sites/{name}/public"))).unwrap();
        self
    }

    /// Writes a file under the root, creating folders.
    pub fn write(&self, rel: &str, content: &str) -> &Self {
        self.write_bytes(rel, content.as_bytes())
    }

    pub fn write_bytes(&self, rel: &str, content: &[u8]) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fixture root under tests/fixtures/, read as it is (tests that change
/// files work on a [`Root::copy_of`] it).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The server's pipeline in-process (`outpost::offline`, as `explain` and
/// `outpost test` use it): the answers a running server gives, for logic
/// that needs no socket, process or watcher.
pub struct InProcess(outpost::offline::Offline);

impl InProcess {
    pub fn load(root: &Path) -> InProcess {
        let offline = outpost::offline::Offline::load(root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        InProcess(offline)
    }

    /// GET `url` (`http://host/path?query`) with `headers`.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Response {
        let visit = outpost::offline::Visit {
            url: url.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let (response, _) = self.0.answer(&visit).unwrap();
        Response {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.to_string(), v)
                })
                .collect(),
            body: outpost::offline::body_bytes(&response).to_vec(),
        }
    }
}

/// A running `outpost serve`, killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

pub fn outpost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
}

impl Server {
    pub fn start(root: &Path) -> Server {
        Server::start_with(root, outpost())
    }

    /// Starts `cmd` (the outpost binary, maybe wrapped) serving `root`, and
    /// waits until it listens and has scanned its sites.
    pub fn start_with(root: &Path, mut cmd: Command) -> Server {
        let server = Server::spawn(root, &mut cmd);
        server.wait_for_log("sites scanned", Duration::from_secs(60));
        server
    }

    /// Starts with more `serve` flags, and waits for the scan.
    pub fn start_serving_with(root: &Path, flags: &[&str]) -> Server {
        let server = Server::spawn_with(root, &mut outpost(), flags);
        server.wait_for_log("sites scanned", Duration::from_secs(60));
        server
    }

    /// Starts without waiting for the scan.
    pub fn spawn(root: &Path, cmd: &mut Command) -> Server {
        Server::spawn_with(root, cmd, &[])
    }

    fn spawn_with(root: &Path, cmd: &mut Command, flags: &[&str]) -> Server {
        let mut child = cmd
            .args(["serve", "--root"])
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .env("OUTPOST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting outpost");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().unwrap(), stdout.clone());
        drain(child.stderr.take().unwrap(), stderr.clone());
        let mut server = Server {
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            child,
            stdout,
            stderr,
        };
        let line = server.wait_for(
            &server.stdout.clone(),
            "listening on ",
            Duration::from_secs(60),
        );
        server.addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        let line = server.wait_for(&server.stdout.clone(), "admin on ", Duration::from_secs(60));
        server.admin = line.rsplit(' ').next().unwrap().parse().unwrap();
        server
    }

    fn wait_for(
        &mut self,
        lines: &Arc<Mutex<Vec<String>>>,
        needle: &str,
        limit: Duration,
    ) -> String {
        let started = Instant::now();
        loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "outpost exited ({status}) before `{needle}`:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            assert!(started.elapsed() < limit, "no `{needle}` within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a line containing `needle` on stderr (the log).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                started.elapsed() < limit,
                "no `{needle}` in the log within {limit:?}:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `needle` appeared at least `count` times in the log.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) {
        assert!(
            eventually(Duration::from_secs(10), || self.log_count(needle) >= count),
            "`{needle}` not logged {count} times:\n{}",
            self.stderr.lock().unwrap().join("\n")
        );
    }

    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn get(&self, host: &str, path: &str) -> Response {
        self.request("GET", host, path, &[])
    }

    pub fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw(self.addr, req.as_bytes())
    }

    /// A request to the admin listener.
    pub fn admin(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw(self.admin, req.as_bytes())
    }

    /// The value of one series on the admin listener's /metrics, written as
    /// it appears there: `name` or `name{label="value"}`.
    pub fn metric(&self, series: &str) -> u64 {
        let metrics = self.admin("GET", "/metrics", &[]).text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from\n{metrics}"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes and reads the response to the end of the connection.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse(&buf)
        .unwrap_or_else(|| panic!("unparsable response: {:?}", String::from_utf8_lossy(&buf)))
}

fn parse(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Runs `outpost ARGS` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    outpost().args(args).output().unwrap()
}

/// Runs `outpost ARGS --root ROOT` to completion.
pub fn run_on(root: &Path, args: &[&str]) -> std::process::Output {
    outpost()
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`)
/// and the profile folder `profile`, after the page's scripts ran.
pub fn chromium(url: &str, profile: &Path, args: &[&str]) -> std::process::Output {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is installed by .ci/run");
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}
