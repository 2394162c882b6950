//! The `proxy` action against real upstreams on 127.0.0.1, through the
//! real binary: what goes up and comes back, streaming both ways, the
//! cache, failing and endless upstreams, request smuggling and body limits;
//! and what `check` and `explain` say of proxy rules.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{eventually, raw, run_on, Response, Root, Server};

const WAIT: Duration = Duration::from_secs(60);

/// One request as the upstream read it.
#[derive(Debug, Clone)]
struct Seen {
    /// The request line and headers, as sent.
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

/// A gate a test opens once.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let open = self.open.lock().unwrap();
        drop(self.changed.wait_while(open, |o| !*o).unwrap());
    }
}

/// What the upstream shares with the test.
#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Body bytes of the request being read, as they arrive.
    arriving: Mutex<Vec<u8>>,
    counted: AtomicUsize,
    failing: AtomicBool,
    gate: Gate,
}

/// An HTTP/1.1 upstream answering by path (see [`answer`]).
struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || connection(stream, &state));
            }
        });
        Upstream { addr, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn requests_for(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path() == path).count()
    }
}

fn connection(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut seen = Seen {
            head,
            body: Vec::new(),
        };
        state.arriving.lock().unwrap().clear();
        let length = seen
            .header("content-length")
            .first()
            .map(|v| v.parse::<usize>().unwrap());
        if let Some(n) = length {
            let mut body = vec![0; n];
            reader.read_exact(&mut body).unwrap();
            seen.body = body;
        } else if seen
            .header("transfer-encoding")
            .iter()
            .any(|v| v.contains("chunked"))
        {
            seen.body = read_chunked(&mut reader, state);
        }
        state.seen.lock().unwrap().push(seen.clone());
        if !answer(&seen, &mut out, state) {
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead, state: &State) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        chunk.truncate(size);
        state.arriving.lock().unwrap().extend_from_slice(&chunk);
        body.extend_from_slice(&chunk);
        if size == 0 {
            return body;
        }
    }
}

/// Answers one request; false when the connection is done.
fn answer(seen: &Seen, out: &mut TcpStream, state: &State) -> bool {
    let reply = |out: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        true
    };
    if state.failing.load(Ordering::SeqCst) {
        return reply(out, "500 Oops", "", "down");
    }
    let path = seen.path().to_string();
    let n = state.counted.fetch_add(1, Ordering::SeqCst) + 1;
    // `/api/echo?x` is answered as `echo`.
    let name = path.split('?').next().unwrap().rsplit('/').next().unwrap();
    match name {
        "echo" => {
            let extra = "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: X-Up-Secret\r\nX-Up-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-Method: ";
            let body = format!("got:{}", String::from_utf8_lossy(&seen.body));
            let method = seen.head.split(' ').next().unwrap();
            reply(out, "201 Created", &format!("{extra}{method}\r\n"), &body)
        }
        "count" => reply(out, "200 OK", "", &format!("n={n}")),
        "no-store" => reply(
            out,
            "200 OK",
            "Cache-Control: no-store\r\n",
            &format!("n={n}"),
        ),
        "private" => reply(
            out,
            "200 OK",
            "Cache-Control: private, max-age=60\r\n",
            &format!("n={n}"),
        ),
        "cookie" => reply(out, "200 OK", "Set-Cookie: s=1\r\n", &format!("n={n}")),
        "max-age" => reply(
            out,
            "200 OK",
            "Cache-Control: max-age=1\r\n",
            &format!("n={n}"),
        ),
        "missing" => reply(out, "404 Not Found", "", &format!("n={n}")),
        "vary" => {
            let lang = seen.header("accept-language").join(",");
            reply(
                out,
                "200 OK",
                "Vary: Accept-Language\r\n",
                &format!("lang={lang} n={n}"),
            )
        }
        "held" => {
            state.gate.wait();
            reply(out, "200 OK", "", "held")
        }
        "upload" => reply(out, "200 OK", "", &format!("{} bytes", seen.body.len())),
        "stream" => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
            );
            let _ = out.flush();
            state.gate.wait();
            let _ = write!(out, "6\r\nsecond\r\n0\r\n\r\n");
            true
        }
        "endless" => {
            let _ = write!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while out.write_all(&chunk).is_ok() {}
            false
        }
        "stall" => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
            );
            let _ = out.flush();
            state.gate.wait();
            false
        }
        // Reads the request and never answers.
        "hang" => {
            state.gate.wait();
            false
        }
        "redirect" => reply(out, "302 Found", "Location: /elsewhere\r\n", ""),
        _ => reply(out, "500 Unknown", "", &path),
    }
}

/// A root with site `web` (which has its 502 and 504 pages) and site
/// `bare` (which has none), and `rules` for both.
fn root_with(rules: &str, settings: &str) -> Root {
    let root = Root::new();
    let log = match settings.contains("access_log") {
        true => "",
        false => "access_log = \"off\"\n",
    };
    root.site("web", &["web.localhost"], true)
        .site("bare", &["bare.localhost"], false)
        .write("sites/web/public/index.html", "<h1>home</h1>")
        .write("sites/web/public/502.html", "<h1>our upstream is down</h1>")
        .write("sites/web/public/504.html", "<h1>our upstream is slow</h1>")
        .write("rules/10-proxy.toml", rules)
        .write(
            "outpost.toml",
            &format!("admin_listen = \"127.0.0.1:0\"\n{log}{settings}"),
        );
    root
}

/// A proxy rule for `/api/**` to `upstream`, with more keys.
fn api_rule(upstream: SocketAddr, keys: &str) -> String {
    format!(
        "[[rule]]\nname = \"api\"\nwhen = {{ path = \"/api/**\" }}\naction = \"proxy\"\nto = \"http://{upstream}{{path}}?{{query}}\"\n{keys}\n"
    )
}

fn serve(rules: &str, settings: &str) -> (Root, Server) {
    let root = root_with(rules, settings);
    let server = Server::start(root.path());
    (root, server)
}

fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Response {
    server.request("GET", "web.localhost", path, headers)
}

fn cache_of(r: &Response) -> &str {
    r.header("x-outpost-cache").unwrap_or("")
}

/// Asks for `path` until the cache says `result` (as time passes, a copy
/// goes stale); that answer.
fn until_cache(server: &Server, path: &str, result: &str) -> Response {
    let mut last = None;
    let seen = eventually(WAIT, || {
        let r = get(server, path, &[]);
        let done = cache_of(&r) == result;
        last = Some(r);
        done
    });
    let last = last.unwrap();
    assert!(
        seen,
        "no {result} for {path}: {} {:?}",
        last.status, last.headers
    );
    last
}

#[test]
fn method_body_and_headers_go_up_and_come_back_less_hop_by_hop() {
    let up = Upstream::start();
    let rule = api_rule(up.addr, "headers = { \"X-Api-Key\" = \"k1\" }");
    let (_root, server) = serve(&rule, "");
    let request = "POST /api/echo?x=1 HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\
        Connection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\n\
        Proxy-Authorization: Basic eA==\r\nX-Forwarded-For: 203.0.113.9\r\nX-Api-Key: visitor\r\n\r\nhello";
    let r = raw(server.addr, request.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), "got:hello");
    assert_eq!(r.header("x-method"), Some("POST"));
    // Both cookies of the upstream, nothing about its connection.
    let cookies: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    for gone in ["x-up-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(r.header(gone), None, "{gone} came back");
    }
    let seen = &up.seen()[0];
    assert!(
        seen.head.starts_with("POST /api/echo?x=1 HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("host"), [up.addr.to_string()]);
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            seen.header(gone).is_empty(),
            "{gone} went up: {}",
            seen.head
        );
    }
    // The test's address is a trusted proxy (127.0.0.0/8 by default): its
    // X-Forwarded-For is kept and the peer appended.
    assert_eq!(seen.header("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.header("x-forwarded-host"), ["web.localhost"]);
    assert_eq!(seen.header("x-api-key"), ["k1"]);
    // Redirects are passed on, not followed.
    let r = get(&server, "/api/redirect", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/elsewhere"));
    assert_eq!(up.requests_for("/elsewhere"), 0);
}

#[test]
fn an_untrusted_peer_cannot_forge_x_forwarded_for() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, ""), "trusted_proxies = []\n");
    let r = get(
        &server,
        "/api/count",
        &[("X-Forwarded-For", "198.51.100.1")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.seen()[0].header("x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn bodies_stream_both_ways() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, ""), "");
    // Up: the upstream has the first part before the visitor sends the rest.
    let mut visitor = TcpStream::connect(server.addr).unwrap();
    write!(visitor, "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\npart1\r\n").unwrap();
    assert!(eventually(WAIT, || up
        .state
        .arriving
        .lock()
        .unwrap()
        .starts_with(b"part1")));
    write!(visitor, "5\r\npart2\r\n0\r\n\r\n").unwrap();
    let mut answer = String::new();
    visitor.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("10 bytes"), "{answer}");
    // Down: the visitor has the first piece while the upstream holds the rest.
    let mut visitor = TcpStream::connect(server.addr).unwrap();
    write!(
        visitor,
        "GET /api/stream HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = visitor.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first piece");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    up.state.gate.open();
    visitor.read_to_end(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("second"));
}

#[test]
fn the_cache_keeps_200s_as_the_upstream_allows() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, "cache = \"1h\""), "");
    let first = get(&server, "/api/count?a=1", &[]);
    assert_eq!((first.status, cache_of(&first)), (200, "MISS"));
    let second = get(&server, "/api/count?a=1", &[]);
    assert_eq!((cache_of(&second), second.text()), ("HIT", first.text()));
    assert!(second.header("age").is_some());
    // Another query is another URL.
    assert_eq!(cache_of(&get(&server, "/api/count?a=2", &[])), "MISS");
    // HEAD is answered from the same copy, without a body.
    let head = server.request("HEAD", "web.localhost", "/api/count?a=1", &[]);
    assert_eq!((cache_of(&head), head.body.len()), ("HIT", 0));
    assert_eq!(
        head.header("content-length"),
        Some(first.text().len().to_string().as_str())
    );
    // Never kept: no-store, private, a cookie, a 404, a POST, credentials.
    for path in [
        "/api/no-store",
        "/api/private",
        "/api/cookie",
        "/api/missing",
    ] {
        get(&server, path, &[]);
        let again = get(&server, path, &[]);
        assert_eq!(cache_of(&again), "MISS", "{path}");
        assert_eq!(up.requests_for(path), 2, "{path}");
    }
    let post = server.request(
        "POST",
        "web.localhost",
        "/api/count?a=1",
        &[("Content-Length", "0")],
    );
    assert_eq!(cache_of(&post), "BYPASS");
    let authorized = get(&server, "/api/count?a=1", &[("Authorization", "Bearer x")]);
    assert_eq!(cache_of(&authorized), "BYPASS");
    // A shorter max-age wins over the rule's hour.
    assert_eq!(cache_of(&get(&server, "/api/max-age", &[])), "MISS");
    assert!(eventually(WAIT, || cache_of(&get(
        &server,
        "/api/max-age",
        &[]
    )) == "MISS"));
    assert_eq!(
        up.requests_for("/api/count?a=1"),
        3,
        "one miss, a POST and one with credentials"
    );
    // Metrics per rule.
    assert!(server.metric("outpost_proxy_cache_total{rule=\"api\",result=\"hit\"}") >= 2);
    assert!(server.metric("outpost_proxy_upstream_requests_total{rule=\"api\"}") >= 10);
}

#[test]
fn vary_keeps_one_copy_per_value() {
    let up = Upstream::start();
    let (_root, server) = serve(
        &api_rule(up.addr, "cache = \"1h\""),
        "access_log = \"stdout\"\n",
    );
    let lang = |l| get(&server, "/api/vary", &[("Accept-Language", l)]);
    let en = lang("en");
    assert_eq!(cache_of(&en), "MISS");
    let it = lang("it");
    assert_eq!(cache_of(&it), "MISS");
    assert!(it.text().starts_with("lang=it "), "{}", it.text());
    let (en2, it2) = (lang("en"), lang("it"));
    assert_eq!((cache_of(&en2), en2.text()), ("HIT", en.text()));
    assert_eq!((cache_of(&it2), it2.text()), ("HIT", it.text()));
    assert_eq!(up.requests_for("/api/vary"), 2);
    // The access log says what the cache did.
    let logged = |result: &str| {
        let needle = format!("\"cache\":\"{result}\"");
        server
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    };
    assert!(eventually(WAIT, || logged("MISS") == 2 && logged("HIT") == 2));
}

#[test]
fn a_thousand_visitors_of_a_cold_entry_make_one_upstream_request() {
    let up = Upstream::start();
    let (_root, server) = serve(
        &api_rule(up.addr, "cache = \"1h\"\ntimeout = \"120s\""),
        "max_connections_per_client = 2000\n",
    );
    let addr = server.addr;
    let visitors: Vec<_> = (0..1000)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    addr,
                    b"GET /api/held HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n",
                )
            })
        })
        .collect();
    // Every visitor is waiting on the upstream before it answers.
    let waiting = || server.metric("outpost_proxy_requests_total{rule=\"api\"}");
    assert!(
        eventually(Duration::from_secs(120), || waiting() == 1000),
        "{} waiting",
        waiting()
    );
    up.state.gate.open();
    for v in visitors {
        let r = v.join().unwrap();
        assert_eq!((r.status, r.text()), (200, "held".to_string()));
    }
    assert_eq!(up.requests_for("/api/held"), 1);
}

#[test]
fn a_stale_copy_is_served_while_one_refresh_runs() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, "cache = \"1s\"\nstale_for = \"1h\""), "");
    let first = get(&server, "/api/count", &[]);
    assert_eq!(cache_of(&first), "MISS");
    // Past its second: the old copy at once, and one refresh behind it.
    let stale = until_cache(&server, "/api/count", "STALE");
    assert_eq!(stale.text(), first.text());
    // The refreshed copy serves next, and the upstream was asked once more.
    let fresh = until_cache(&server, "/api/count", "HIT");
    assert_ne!(fresh.text(), first.text());
    assert_eq!(up.requests_for("/api/count"), 2);
}

#[test]
fn a_stale_copy_answers_while_the_upstream_fails() {
    let up = Upstream::start();
    let rule = api_rule(up.addr, "cache = \"1s\"\nstale_if_error = \"1h\"");
    let (_root, server) = serve(&rule, "");
    let first = get(&server, "/api/count", &[]);
    assert_eq!(cache_of(&first), "MISS");
    up.state.failing.store(true, Ordering::SeqCst);
    // Once the copy is past its second, the upstream's 500 is not shown.
    let r = until_cache(&server, "/api/count", "STALE");
    assert_eq!((r.status, r.text()), (200, first.text()));
    assert!(
        up.requests_for("/api/count") >= 2,
        "the upstream was asked again"
    );
    // Without a copy, the failure shows.
    assert_eq!(get(&server, "/api/count?other", &[]).status, 500);
}

#[test]
fn a_down_upstream_answers_502_and_a_silent_one_504_with_the_sites_pages() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = Upstream::start();
    let rules = format!(
        "{}\n[[rule]]\nname = \"slow\"\nwhen = {{ path = \"/slow/**\" }}\naction = \"proxy\"\nto = \"http://{}{{path}}\"\ntimeout = \"300ms\"\n",
        api_rule(closed, ""),
        up.addr
    );
    let (_root, server) = serve(&rules, "");
    let down = get(&server, "/api/count", &[]);
    assert_eq!(down.status, 502);
    assert!(
        down.text().contains("our upstream is down"),
        "{}",
        down.text()
    );
    assert_eq!(down.header("cache-control"), Some("no-store"));
    let slow = get(&server, "/slow/hang", &[]);
    assert_eq!(slow.status, 504);
    assert!(
        slow.text().contains("our upstream is slow"),
        "{}",
        slow.text()
    );
    // A site without the pages answers in plain text.
    let bare = server.request("GET", "bare.localhost", "/slow/hang", &[]);
    assert_eq!(
        (bare.status, bare.text()),
        (504, "504 Gateway Timeout\n".to_string())
    );
    let bare = server.request("GET", "bare.localhost", "/api/x", &[]);
    assert_eq!(
        (bare.status, bare.text()),
        (502, "502 Bad Gateway\n".to_string())
    );
    assert!(server.metric("outpost_proxy_upstream_errors_total{rule=\"api\"}") >= 2);
    assert!(server.metric("outpost_proxy_upstream_errors_total{rule=\"slow\"}") >= 2);
    up.state.gate.open();
}

/// Reads a whole answer; `Ok` only when the server closed the connection
/// (rather than the read timing out).
fn read_until_closed(addr: SocketAddr, request: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).map(|_| got)
}

#[test]
fn an_endless_or_stalled_body_is_cut_off() {
    let up = Upstream::start();
    let rule = api_rule(up.addr, "timeout = \"500ms\"");
    let (_root, server) = serve(&rule, "proxy_max_response_size = \"1MiB\"\n");
    let ask = |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n");
        read_until_closed(server.addr, &request).expect("the connection was closed")
    };
    let endless = ask("/api/endless");
    assert!(endless.starts_with(b"HTTP/1.1 200"));
    assert!(endless.len() < 3 << 20, "{} bytes", endless.len());
    // The upstream promised 100 bytes and sent 10: cut after the timeout.
    let stalled = ask("/api/stall");
    assert!(stalled.starts_with(b"HTTP/1.1 200"));
    assert!(
        stalled.ends_with(b"only ten b"),
        "{}",
        String::from_utf8_lossy(&stalled)
    );
    up.state.gate.open();
}

#[test]
fn request_bodies_over_the_limit_answer_413() {
    let up = Upstream::start();
    let (_root, server) = serve(
        &api_rule(up.addr, ""),
        "proxy_max_request_size = \"1KiB\"\n",
    );
    let big = "x".repeat(2000);
    let declared = format!("POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{big}");
    assert_eq!(raw(server.addr, declared.as_bytes()).status, 413);
    assert_eq!(up.requests_for("/api/upload"), 0);
    let chunked = format!("POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{big}\r\n0\r\n\r\n");
    assert_eq!(raw(server.addr, chunked.as_bytes()).status, 413);
    let small = "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    assert_eq!(raw(server.addr, small.as_bytes()).text(), "3 bytes");
}

#[test]
fn conflicting_lengths_are_never_forwarded() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, ""), "");
    // Content-Length and Transfer-Encoding together, hiding a second
    // request in the body for an upstream that would believe the length.
    let smuggle = "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 4\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
        0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    let r = raw(server.addr, smuggle.as_bytes());
    assert!(r.status == 400 || r.status == 200, "{}", r.status);
    if r.status == 200 {
        // Taken as chunked (an empty body), as RFC 9112 §6.3 says.
        let seen = &up.seen()[0];
        assert!(seen.body.is_empty(), "{:?}", seen.body);
    }
    let two_lengths = "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 3\r\n\
        Content-Length: 30\r\nConnection: close\r\n\r\nabc";
    assert_eq!(raw(server.addr, two_lengths.as_bytes()).status, 400);
    let bad_chunked =
        "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\
        Transfer-Encoding: identity\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let _ = raw(server.addr, bad_chunked.as_bytes());
    for seen in up.seen() {
        let framing = (
            seen.header("content-length").len(),
            seen.header("transfer-encoding").len(),
        );
        assert!(
            framing.0 + framing.1 <= 1,
            "both or repeated framing went up: {}",
            seen.head
        );
        assert_ne!(seen.path(), "/api/smuggled", "a smuggled request went up");
    }
    assert_eq!(up.requests_for("/api/smuggled"), 0);
}

#[test]
fn check_points_at_bad_proxy_rules() {
    let up = "127.0.0.1:9";
    let rules = [
        ("ftp", "to = \"ftp://files.example.com{path}\""),
        ("path", "to = \"/elsewhere{path}\""),
        ("host", "to = \"https://{path}\""),
        (
            "duration",
            &format!("to = \"http://{up}{{path}}\"\ntimeout = \"soon\""),
        ),
        (
            "stale",
            &format!("to = \"http://{up}{{path}}\"\nstale_for = \"5s\""),
        ),
        (
            "hop",
            &format!("to = \"http://{up}{{path}}\"\nheaders = {{ Connection = \"close\" }}"),
        ),
    ]
    .map(|(name, keys)| format!("[[rule]]\nname = \"{name}\"\naction = \"proxy\"\n{keys}\n"))
    .join("\n");
    let root = root_with(&rules, "");
    let typo = format!("[[rule]]\nname = \"typo\"\naction = \"proxy\"\nto = \"http://{up}{{path}}\"\ncahce = \"5s\"\n");
    root.write("rules/20-typo.toml", &typo);
    let capture = format!("[[rule]]\nname = \"capture\"\nwhen = {{ path = \"/x/:a\" }}\naction = \"proxy\"\nto = \"http://{up}/{{b}}\"\n");
    root.write("rules/30-capture.toml", &capture);
    let out = run_on(root.path(), &["check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "rules/10-proxy.toml:4:6: scheme `ftp` is not http or https",
        "rules/10-proxy.toml:9:6: `to` of a proxy is an http or https URL",
        "rules/10-proxy.toml:14:6: placeholders may only appear in the path or query",
        "rules/10-proxy.toml:20:11: `soon` is not a duration",
        "rules/20-typo.toml:5:1: unknown key `cahce`, did you mean `cache`?",
        "rules/30-capture.toml:5:6: `{b}` is not a placeholder",
        "rules/10-proxy.toml:26:13: `stale_for` needs `cache`",
        "rules/10-proxy.toml:32:13: `connection` is about one connection",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
}

#[test]
fn explain_names_the_proxy_and_its_url_without_forwarding() {
    let up = Upstream::start();
    let root = root_with(&api_rule(up.addr, "cache = \"5s\""), "");
    let out = run_on(
        root.path(),
        &["explain", "http://web.localhost/api/odds?match=7"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let url = format!("http://{}/api/odds?match=7", up.addr);
    assert!(
        text.contains(&format!("decision: proxy to {url} (rule api)")),
        "{text}"
    );
    assert!(up.seen().is_empty(), "explain forwarded");
}

#[test]
fn captures_fill_the_upstream_url() {
    let up = Upstream::start();
    let rule = format!(
        "[[rule]]\nname = \"odds\"\nwhen = {{ path = \"/odds/:sport/**\" }}\naction = \"proxy\"\nto = \"http://{}/v2/{{sport}}/{{splat}}?{{query}}\"\n",
        up.addr
    );
    let (_root, server) = serve(&rule, "");
    let r = get(&server, "/odds/foot%20ball/it/serie-a/count?live=1", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.seen()[0].path(),
        "/v2/foot%20ball/it/serie-a/count?live=1"
    );
}

#[test]
fn a_slow_upload_is_not_a_slow_upstream() {
    let up = Upstream::start();
    let (_root, server) = serve(&api_rule(up.addr, "timeout = \"1s\""), "");
    let mut visitor = TcpStream::connect(server.addr).unwrap();
    write!(visitor, "POST /api/upload HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    // The visitor itself is slow: the whole upload takes longer than the
    // timeout, which counts from the last piece that went up.
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(300));
        write!(visitor, "5\r\npart{i}\r\n").unwrap();
        let sent = format!("part{i}");
        assert!(eventually(WAIT, || up
            .state
            .arriving
            .lock()
            .unwrap()
            .ends_with(sent.as_bytes())));
    }
    write!(visitor, "0\r\n\r\n").unwrap();
    let mut answer = String::new();
    visitor.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("25 bytes"), "{answer}");
}
