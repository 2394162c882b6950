//! Fragments against a real upstream: caching, single flight, stale while
//! revalidate, timeouts, failures of every kind, escaping, and the last good
//! copy across a restart.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use common::{eventually, run_on, Root, Server};
use upstream::{Mode, Upstream};

const SCORES: &str =
    r#"{"league": "Serie A", "matches": [{"home": "Inter", "away": "Milan", "score": "2-1"}]}"#;

fn root(source: &str, timing: &str, on_error: &str) -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/live.html", "<html><body><h1>Live</h1><div id=\"scores\"><p>Loading…</p></div></body></html>")
        .write(
            "rules/templates/scores.html",
            "<h2>{{ data.league }}</h2>{% for m in data.matches %}<p class=m>{{ m.home }} {{ m.score }} {{ m.away }}</p>{% endfor %}",
        )
        .write(
            "rules/f.toml",
            &format!(
                "[[rule]]\nname = \"scores\"\nwhen = {{ path = \"/live.html\" }}\naction = \"fragment\"\nselector = \"#scores\"\nsource = \"{source}\"\ntemplate = \"scores.html\"\n{timing}\non_error = \"{on_error}\"\n"
            ),
        );
    root
}

fn page(s: &Server) -> (String, Duration) {
    let t = Instant::now();
    let body = s.get("main.localhost", "/live.html").text();
    (body, t.elapsed())
}

#[test]
fn a_warm_fragment_costs_no_upstream_request() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(
        &up.url("/scores.json?c={country}&q={query.league}"),
        "ttl = \"1h\"",
        "keep",
    );
    let s = Server::start(root.path());
    let (body, _) = page(&s);
    assert!(
        body.contains(r#"<div id="scores"><h2>Serie A</h2><p class=m>Inter 2-1 Milan</p></div>"#),
        "{body}"
    );
    for _ in 0..20 {
        assert!(page(&s).0.contains("Inter 2-1 Milan"));
    }
    assert_eq!(up.count(), 1);
}

#[test]
fn request_values_go_into_the_query_string_encoded() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(
        &up.url("/scores.json?q={query.league}"),
        "ttl = \"1h\"",
        "keep",
    );
    let s = Server::start(root.path());
    // Two different values: two sources.
    s.get("main.localhost", "/live.html?league=a%26b%3Dc%20d");
    s.get("main.localhost", "/live.html?league=serie-a");
    assert_eq!(up.count(), 2);
    // The encoded value cannot add parameters or change the host.
    let root = self::root("http://127.0.0.1:1/x?q={query.league}", "", "keep");
    let out = run_on(root.path(), &["check"]);
    assert!(out.status.success());
    let bad = self::root("http://{query.h}/x", "", "keep");
    let out = run_on(bad.path(), &["check"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("request values may appear in the query string only"));
}

#[test]
fn a_thousand_concurrent_cold_requests_make_one_upstream_request() {
    let up = Upstream::start(Mode::Slow(Duration::from_millis(300), SCORES.into()));
    let root = root(
        &up.url("/scores.json"),
        "ttl = \"1h\"\ntimeout = \"10s\"",
        "keep",
    );
    let s = Server::start(root.path());
    let addr = s.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bodies: Vec<String> = rt.block_on(async move {
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    c.write_all(b"GET /live.html HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n").await.unwrap();
                    let mut out = Vec::new();
                    c.read_to_end(&mut out).await.unwrap();
                    String::from_utf8_lossy(&out).into_owned()
                })
            })
            .collect();
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        bodies
    });
    assert_eq!(bodies.len(), 1000);
    assert!(bodies.iter().all(|b| b.contains("Inter 2-1 Milan")));
    assert_eq!(up.count(), 1, "exactly one upstream request");
}

#[test]
fn stale_copies_are_served_while_one_refresh_runs() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(&up.url("/s.json"), "ttl = \"1s\"\ntimeout = \"2s\"", "keep");
    let s = Server::start(root.path());
    assert!(page(&s).0.contains("Inter 2-1 Milan"));
    up.set(Mode::Slow(
        Duration::from_millis(800),
        SCORES.replace("2-1", "3-1"),
    ));
    assert!(eventually(Duration::from_secs(5), || up.count() == 2 || {
        // Past the ttl: served at once from the stale copy, refresh behind.
        let (body, took) = page(&s);
        assert!(body.contains("2-1") || body.contains("3-1"));
        assert!(
            took < Duration::from_millis(700),
            "stale must not wait: {took:?}"
        );
        false
    }));
    assert!(eventually(Duration::from_secs(3), || page(&s)
        .0
        .contains("Inter 3-1 Milan")));
    assert!(up.count() <= 3, "one refresh at a time: {}", up.count());
}

/// Each failure mode, with each `on_error`: the page comes on time with
/// what was asked for.
#[test]
fn failing_upstreams_never_delay_the_page_past_the_timeout() {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let other = Upstream::start(Mode::Json(SCORES.into()));
    let cases: Vec<(&str, Option<Upstream>)> = vec![
        ("refused", None),
        ("hang", Some(Upstream::start(Mode::Hang))),
        (
            "late",
            Some(Upstream::start(Mode::Slow(
                Duration::from_millis(1500),
                SCORES.into(),
            ))),
        ),
        ("500", Some(Upstream::start(Mode::Status(500)))),
        ("50 MB", Some(Upstream::start(Mode::Huge(50 * 1024 * 1024)))),
        (
            "not JSON",
            Some(Upstream::start(Mode::Json("<html>oops".into()))),
        ),
        (
            "wrong shape",
            Some(Upstream::start(Mode::Json("[1, 2, 3]".into()))),
        ),
        (
            "redirect",
            Some(Upstream::start(Mode::Redirect(other.url("/s.json")))),
        ),
    ];
    for (what, up) in &cases {
        let url = up
            .as_ref()
            .map_or(format!("http://{refused}/s.json"), |u| u.url("/s.json"));
        for (on_error, expect) in [
            ("keep", "<p>Loading…</p>"),
            ("empty", "<div id=\"scores\"></div>"),
            ("stale", "<div id=\"scores\"></div>"),
        ] {
            let root = root(&url, "timeout = \"300ms\"", on_error);
            let s = Server::start(root.path());
            let (body, took) = page(&s);
            assert!(
                took < Duration::from_millis(1000),
                "{what}/{on_error}: took {took:?}"
            );
            if *what == "wrong shape" {
                // The JSON is fine; the template cannot use it.
                assert!(!body.contains("Inter"), "{what}/{on_error}");
            } else {
                assert!(body.contains(expect), "{what}/{on_error}: {body}");
            }
        }
    }
    assert_eq!(other.count(), 0, "redirects are not followed");
}

#[test]
fn errors_are_logged_once_per_burst_and_stale_copies_cover_them() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(
        &up.url("/s.json"),
        "ttl = \"0s\"\ntimeout = \"200ms\"\nstale_for = \"1h\"",
        "stale",
    );
    let s = Server::start(root.path());
    assert!(page(&s).0.contains("Inter 2-1 Milan"));
    up.set(Mode::Status(503));
    // Requests keep coming; failed refreshes are retried after 1 s, then 2 s.
    assert!(eventually(Duration::from_secs(8), || {
        assert!(
            page(&s).0.contains("Inter 2-1 Milan"),
            "the stale copy covers the failure"
        );
        up.count() >= 4
    }));
    assert_eq!(
        s.log_count("fragment source failed"),
        1,
        "one log line for the burst"
    );
}

#[test]
fn a_failing_source_is_left_alone_for_a_while_and_pages_do_not_wait_on_it() {
    let up = Upstream::start(Mode::Status(500));
    let root = root(&up.url("/s.json"), "ttl = \"0s\"\ntimeout = \"2s\"", "keep");
    let s = Server::start(root.path());
    assert!(page(&s).0.contains("Loading"));
    assert_eq!(up.count(), 1);
    // Within the back-off (1 s after the first failure) pages answer at
    // once and the source is spared; without it, each page would try again.
    for _ in 0..10 {
        let (body, took) = page(&s);
        assert!(body.contains("Loading"), "{body}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    assert!(up.count() <= 2, "{} upstream requests", up.count());
    // The source recovers: pages get its data once the back-off is over.
    up.set(Mode::Json(SCORES.into()));
    assert!(eventually(Duration::from_secs(10), || page(&s)
        .0
        .contains("Inter 2-1 Milan")));
}

#[test]
fn upstream_data_is_escaped() {
    let evil = r#"{"league": "<script>alert('x')</script>", "matches": [{"home": "\"><img src=x onerror=alert(1)>", "away": "B", "score": "1-0"}]}"#;
    let up = Upstream::start(Mode::Json(evil.into()));
    let root = root(&up.url("/s.json"), "", "keep");
    let s = Server::start(root.path());
    let body = page(&s).0;
    assert!(
        !body.contains("<script>alert") && !body.contains("<img src=x"),
        "{body}"
    );
    assert!(
        body.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt;"),
        "{body}"
    );
    assert!(
        body.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{body}"
    );
}

#[test]
fn the_last_good_copy_survives_a_restart() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(
        &up.url("/s.json"),
        "ttl = \"1s\"\ntimeout = \"200ms\"",
        "stale",
    );
    let mut s = Server::start(root.path());
    assert!(page(&s).0.contains("Inter 2-1 Milan"));
    assert!(s.terminate().success());
    up.set(Mode::Status(500));
    let s = Server::start(root.path());
    let (body, _) = page(&s);
    assert!(body.contains("Inter 2-1 Milan"), "{body}");
}
