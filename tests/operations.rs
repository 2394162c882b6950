//! Operating a box: TLS with HTTP/2 and certificate reload, the redirect to
//! HTTPS, graceful shutdown, slow and idle clients.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, run_on, Root, Server};

/// A self-signed certificate for main.localhost, made by openssl.
fn certificate(dir: &Path, name: &str, cn: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "subjectAltName=DNS:main.localhost",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn tls_root(extra: &str) -> Root {
    let root = Root::new();
    std::fs::create_dir_all(root.join("tls")).unwrap();
    certificate(&root.join("tls"), "cert", "first");
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "secure home")
        .write(
            "outpost.toml",
            &format!("admin_listen = \"127.0.0.1:0\"\n{extra}\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/cert.key\"\nlisten = \"127.0.0.1:0\"\n"),
        );
    root
}

fn https_addr(s: &Server) -> std::net::SocketAddr {
    let line = s
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.starts_with("https on "))
        .cloned()
        .expect("an https listener");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// curl over TLS: (HTTP version, body, verbose output).
fn curl(addr: std::net::SocketAddr, http2: bool) -> (String, String, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-v",
            "--max-time",
            "10",
            if http2 { "--http2" } else { "--http1.1" },
        ])
        .args([
            "--resolve",
            &format!("main.localhost:{}:127.0.0.1", addr.port()),
        ])
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://main.localhost:{}/", addr.port()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = stdout.rsplit_once('\n').unwrap_or((&stdout, ""));
    (
        version.to_string(),
        body.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn https_with_http2_by_alpn_and_reload_on_change() {
    let root = tls_root("");
    let s = Server::start(root.path());
    let addr = https_addr(&s);
    let (version, body, verbose) = curl(addr, true);
    assert_eq!(
        (version.as_str(), body.as_str()),
        ("2", "secure home"),
        "{verbose}"
    );
    assert!(
        verbose.contains("CN=first") || verbose.contains("CN = first"),
        "{verbose}"
    );
    assert_eq!(curl(addr, false).0, "1.1");

    // A broken replacement keeps the old certificate serving.
    std::fs::write(root.join("tls/cert.pem.tmp"), "not a certificate").unwrap();
    std::fs::rename(root.join("tls/cert.pem.tmp"), root.join("tls/cert.pem")).unwrap();
    s.wait_for_log(
        "the previous certificate keeps serving",
        Duration::from_secs(10),
    );
    assert_eq!(curl(addr, true).1, "secure home");

    // A good one is taken.
    certificate(&root.join("tls"), "new", "second");
    std::fs::rename(root.join("tls/new.key"), root.join("tls/cert.key")).unwrap();
    std::fs::rename(root.join("tls/new.pem"), root.join("tls/cert.pem")).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        let v = curl(addr, true).2;
        v.contains("CN=second") || v.contains("CN = second")
    }));
}

#[test]
fn plain_http_can_redirect_to_https() {
    let root = tls_root("");
    let toml = std::fs::read_to_string(root.join("outpost.toml")).unwrap();
    std::fs::write(
        root.join("outpost.toml"),
        format!("{toml}redirect_http = true\n"),
    )
    .unwrap();
    let s = Server::start(root.path());
    let port = https_addr(&s).port();
    let r = s.get("main.localhost:8080", "/a/b?c=1");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://main.localhost:{port}/a/b?c=1").as_str())
    );
}

#[test]
fn bad_tls_files_are_clear_errors_at_start() {
    type Break = fn(&Path);
    let cases: [(&str, Break); 3] = [
        ("missing", |dir| {
            std::fs::remove_file(dir.join("cert.pem")).unwrap()
        }),
        ("not PEM", |dir| {
            std::fs::write(dir.join("cert.pem"), "hello").unwrap()
        }),
        ("mismatched", |dir| {
            certificate(dir, "other", "other");
            std::fs::rename(dir.join("other.key"), dir.join("cert.key")).unwrap();
        }),
    ];
    for (what, break_it) in cases {
        let root = tls_root("");
        break_it(&root.join("tls"));
        let out = run_on(root.path(), &["serve", "--listen", "127.0.0.1:0"]);
        assert!(!out.status.success(), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("tls/cert"), "{what}: {err}");
    }
}

#[test]
fn sigterm_finishes_requests_in_flight() {
    let up = upstream::Upstream::start(upstream::Mode::Slow(
        Duration::from_millis(800),
        r#"{"x": "late data"}"#.into(),
    ));
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/p.html", "<html><body><div id=f></div></body></html>")
        .write("rules/templates/f.html", "{{ data.x }}")
        .write(
            "rules/f.toml",
            &format!("[[rule]]\nname = \"f\"\naction = \"fragment\"\nselector = \"#f\"\nsource = \"{}\"\ntemplate = \"f.html\"\ntimeout = \"5s\"\n", up.url("/f.json")),
        );
    let mut s = Server::start(root.path());
    let addr = s.addr;
    let in_flight = std::thread::spawn(move || {
        common::raw(
            addr,
            b"GET /p.html HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n",
        )
    });
    assert!(
        eventually(Duration::from_secs(5), || up.count() == 1),
        "the request is in flight"
    );
    Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("late data"));
    assert!(s.wait().success(), "a clean exit after draining");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "no new connections after shutdown"
    );
}

/// 10,000 idle connections and 50 heads sent a byte at a time do not keep
/// others from being answered: with a header timeout longer than the test,
/// every request is answered while all of them are still open (a server
/// that served them in turn would answer no one before cutting them).
#[test]
fn slow_and_idle_clients_do_not_starve_others() {
    let root = Root::new();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\nheader_timeout = \"10m\"\n",
    );
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "home");
    let s = Server::start(root.path());
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET / HT").unwrap();
            c
        })
        .collect();
    for i in 0..100 {
        if i % 20 == 0 {
            for mut c in &slow {
                c.write_all(b"T").unwrap();
            }
        }
        assert_eq!(s.get("main.localhost", "/").text(), "home");
    }
    let closed = idle
        .iter()
        .chain(&slow)
        .filter(|c| still_open(c).is_err())
        .count();
    assert_eq!(closed, 0, "connections closed while the others were served");
    assert_eq!(s.metric("outpost_connections_shed_total"), 0);
}

/// Whether the server has left `c` open: nothing to read and no end.
fn still_open(c: &TcpStream) -> Result<(), String> {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let got = match c.peek(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Ok(n) => Err(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) => Err(e.to_string()),
    };
    c.set_nonblocking(false).unwrap();
    got
}

/// A head sent a byte at a time is cut at the header timeout, counted from
/// the connection's opening: the bytes do not buy it more time. The client
/// waits ten times the timeout, which only a head kept alive would reach.
#[test]
fn a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let root = Root::new();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\n",
    );
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "home");
    let s = Server::start(root.path());
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET / HT").unwrap();
    let mut writer = c.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        // A byte every tenth of the timeout, until the server hangs up.
        while writer.write_all(b"T").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    let answer = match c.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
        Err(e) => panic!("not cut by the header timeout: {e}"),
    };
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Stops the trickle; a connection the server reset is already shut
    // (ENOTCONN), which is as good.
    let _ = c.shutdown(std::net::Shutdown::Both);
    trickle.join().unwrap();
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}
