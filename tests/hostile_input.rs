//! Hostile requests: nothing escapes public/, odd Host headers are answered
//! sensibly, and the server keeps serving afterwards.

mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{eventually, raw, Root, Server};

fn root() -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "home")
        .write("sites/main/public/a/b.html", "b");
    root.write("secret.txt", "TOP SECRET")
        .write("sites/main/secret.txt", "TOP SECRET");
    root
}

#[test]
fn traversal_never_escapes_public() {
    let root = root();
    let s = Server::start(root.path());
    for path in [
        "/../secret.txt",
        "/../../secret.txt",
        "/a/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/secret.txt",
        "/a%2f..%2f..%2fsecret.txt",
        "/..%5c..%5csecret.txt",
        "/..\\secret.txt",
        "/index.html%00.txt",
        "/%00",
        "/%c0%ae%c0%ae/secret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/%ff",
        "//../secret.txt",
        "/site.toml",
        "/../site.toml",
    ] {
        let r = s.get("main.localhost", path);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(
            !r.text().contains("SECRET") && !r.text().contains("hosts"),
            "{path} leaked"
        );
    }
    // Harmless dots still resolve inside the site.
    assert_eq!(s.get("main.localhost", "/a/./b.html").text(), "b");
    assert_eq!(s.get("main.localhost", "/a/x/../b.html").text(), "b");
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

#[test]
fn huge_paths_are_refused() {
    let root = root();
    let s = Server::start(root.path());
    let path = format!("/{}", "a".repeat(100 * 1024));
    let r = s.get("main.localhost", &path);
    assert!(matches!(r.status, 414 | 431), "{}", r.status);
    let path = format!("/{}", "a".repeat(9 * 1024));
    assert_eq!(s.get("main.localhost", &path).status, 414);
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

#[test]
fn odd_hosts() {
    let root = root();
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost:1234", "/").text(), "home");
    assert_eq!(s.get("unknown.test", "/").text(), "home");
    // HTTP/1.1 requires a Host header.
    let r = raw(s.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400);
    // HTTP/1.0 may omit it: the default site answers.
    let r = raw(s.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "home");
    let r = raw(
        s.addr,
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
    );
    assert!(matches!(r.status, 200 | 400), "{}", r.status);
    let r = raw(
        s.addr,
        b"GET / HTTP/1.1\r\nHost: a b c\r\nConnection: close\r\n\r\n",
    );
    assert!(matches!(r.status, 200 | 400), "{}", r.status);
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

/// A visitor sends its own X-Forwarded-For (or CF-IPCountry) line and a
/// trusted proxy appends another: the proxy's word decides, never the
/// visitor's, so a geo-block cannot be dodged with a second line.
#[test]
fn every_forwarded_line_counts() {
    let root = root();
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo/GeoIP2-Country-Test.mmdb");
    root.write("rules/templates/country.html", "<b id=c>{{ request.country }}</b>")
        .write(
            "rules/country.toml",
            "[[rule]]\nname = \"show-country\"\naction = \"inject\"\ntemplate = \"country.html\"\nselector = \"body\"\n",
        )
        .write("sites/main/public/index.html", "<html><body>home</body></html>")
        .write(
            "outpost.toml",
            &format!("admin_listen = \"127.0.0.1:0\"\ngeoip = {:?}\n", db.display()),
        );
    let s = Server::start(root.path());
    let country = |lines: &str| {
        let r = raw(
            s.addr,
            format!("GET / HTTP/1.1\r\nHost: main.localhost\r\n{lines}Connection: close\r\n\r\n")
                .as_bytes(),
        );
        let body = r.text();
        let start = body.find("<b id=c>").expect("country shown") + 8;
        body[start..start + 2].to_string()
    };
    // GB is the visitor's claim, SE what the proxy saw.
    let gb = "81.2.69.142";
    let se = "89.160.20.112";
    assert_eq!(country(&format!("X-Forwarded-For: {se}\r\n")), "SE");
    assert_eq!(
        country(&format!(
            "X-Forwarded-For: {gb}\r\nX-Forwarded-For: {se}\r\n"
        )),
        "SE"
    );
    assert_eq!(
        country(&format!(
            "X-Forwarded-For: {gb}\r\nX-Forwarded-For: {se}, 127.0.0.1\r\n"
        )),
        "SE"
    );
    assert_eq!(country("CF-IPCountry: GB\r\nCF-IPCountry: SE\r\n"), "SE");
}

/// RFC 9112 §3.2: two Host lines are refused; an absolute-form target
/// names the host, not the Host line; a port that is no port is refused
/// rather than copied into a redirect's Location.
#[test]
fn host_is_one_valid_authority() {
    let root = root();
    root.site("other", &["other.localhost"], false)
        .write("sites/other/public/index.html", "other home")
        .write(
            "rules/to-other.toml",
            "[[rule]]\nname = \"to-other\"\nwhen = { path = \"/go\" }\naction = \"redirect\"\nto_site = \"other\"\n",
        );
    let s = Server::start(root.path());
    let send = |head: &str| {
        raw(
            s.addr,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        )
    };

    for hosts in [
        "Host: main.localhost\r\nHost: other.localhost\r\n",
        "Host: main.localhost\r\nHost: main.localhost\r\n",
    ] {
        let r = send(&format!("GET / HTTP/1.1\r\n{hosts}"));
        assert_eq!(r.status, 400, "{hosts}");
    }

    let r = send("GET http://other.localhost/ HTTP/1.1\r\nHost: main.localhost\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "other home"));
    let r = send("GET http://main.localhost/ HTTP/1.1\r\nHost: other.localhost\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "home"));

    // A valid port is kept in the redirect, as the visitor used it.
    let r = send("GET /go HTTP/1.1\r\nHost: main.localhost:8080\r\n");
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("http://other.localhost:8080/go"));
    for host in [
        "main.localhost:99999",
        "main.localhost:abc",
        "main.localhost:0",
    ] {
        for path in ["/go", "/a", "/"] {
            let r = send(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"));
            assert_eq!(r.status, 400, "{host}{path}: {:?}", r.header("location"));
            assert_eq!(r.header("location"), None);
        }
    }
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

/// A root whose outpost.toml holds `settings`.
fn limited(settings: &str) -> Root {
    let root = root();
    root.write(
        "outpost.toml",
        &format!("admin_listen = \"127.0.0.1:0\"\n{settings}"),
    );
    root
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c
}

/// One request on a kept-alive connection; the response's body.
fn exchange(c: &mut TcpStream) -> String {
    c.write_all(b"GET / HTTP/1.1\r\nHost: main.localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut byte).unwrap(), 1, "closed mid-head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.parse().unwrap())
        })
        .expect("a length");
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// Whether a new connection gets its request answered (rather than
/// closed unanswered).
fn served(s: &Server) -> bool {
    let mut c = connect(s);
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got.starts_with(b"HTTP/1.1 200")
}

/// Whether the server closed the connection, reading (and dropping)
/// anything it still sent, such as an HTTP/2 GOAWAY.
fn closed_by_server(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connections that never send a byte, up to `max_connections`, do not
/// stop a normal client: the one idle longest makes room.
#[test]
fn silent_connections_do_not_starve_others() {
    let root = limited("max_connections = 4\nheader_timeout = \"10m\"\n");
    let s = Server::start(root.path());
    let mut silent: Vec<TcpStream> = (0..4).map(|_| connect(&s)).collect();
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    assert!(closed_by_server(&mut silent[0]), "the oldest made room");
    let metrics = s.admin("GET", "/metrics", &[]).text();
    assert!(
        metrics.contains("outpost_connections_shed_total 1\n"),
        "{metrics}"
    );
    // The others were left alone and can still ask.
    assert_eq!(exchange(&mut silent[1]), "home");
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

/// When every slot is taken, the keep-alive connection idle longest is
/// closed for a new one, never one that is newer.
#[test]
fn idle_keep_alive_connections_make_room() {
    let root = limited("max_connections = 3\nheader_timeout = \"10m\"\n");
    let s = Server::start(root.path());
    let mut kept: Vec<TcpStream> = (0..3).map(|_| connect(&s)).collect();
    for c in &mut kept {
        assert_eq!(exchange(c), "home");
    }
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    assert!(closed_by_server(&mut kept[0]), "the idlest made room");
    assert_eq!(exchange(&mut kept[2]), "home");
    assert_eq!(exchange(&mut kept[1]), "home");
}

/// One address holds at most `max_connections_per_client`; more are
/// closed at once, and a freed slot is its again.
#[test]
fn one_client_holds_at_most_its_share() {
    let root =
        limited("max_connections_per_client = 2\ntrusted_proxies = []\nheader_timeout = \"10m\"\n");
    let s = Server::start(root.path());
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&s)).collect();
    let mut extra = connect(&s);
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: main.localhost\r\n\r\n");
    assert!(
        closed_by_server(&mut extra),
        "a third connection is refused"
    );
    let metrics = s.admin("GET", "/metrics", &[]).text();
    assert!(
        metrics.contains("outpost_connections_refused_total 1\n"),
        "{metrics}"
    );
    assert_eq!(exchange(&mut held[1]), "home");
    drop(held.remove(0));
    assert!(
        eventually(Duration::from_secs(60), || served(&s)),
        "a freed slot serves again"
    );
}

/// A connection that sends no request within `header_timeout` is closed
/// whatever it sent before: nothing, part of the HTTP/2 preface, or a
/// whole HTTP/2 start with no request after it.
#[test]
fn connections_without_a_request_close_at_header_timeout() {
    let root = limited("header_timeout = \"1s\"\n");
    let s = Server::start(root.path());
    let starts: [&[u8]; 3] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ];
    let mut conns: Vec<TcpStream> = starts
        .iter()
        .map(|start| {
            let mut c = connect(&s);
            c.write_all(start).unwrap();
            c
        })
        .collect();
    for (c, start) in conns.iter_mut().zip(starts) {
        assert!(
            closed_by_server(c),
            "{:?} kept open",
            String::from_utf8_lossy(start)
        );
    }
    assert_eq!(s.get("main.localhost", "/").text(), "home");
}

/// A client that asks for a large file and takes none of it is cut after
/// `header_timeout`, instead of holding its slot for ever.
#[test]
fn a_client_that_takes_no_bytes_is_cut() {
    let root =
        limited("max_connections_per_client = 1\ntrusted_proxies = []\nheader_timeout = \"1s\"\n");
    // Larger than what the kernel buffers on both sides of a loopback socket.
    root.write_bytes("sites/main/public/big.bin", &vec![7u8; 16 << 20]);
    let s = Server::start(root.path());
    let mut stalled = connect(&s);
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: main.localhost\r\n\r\n")
        .unwrap();
    // While it holds its address's one slot, others from there are refused.
    assert!(
        eventually(Duration::from_secs(60), || served(&s)),
        "the stalled client still holds its slot"
    );
}
