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
        .write("sites/main/public/live.html", LIVE)
        .write("rules/templates/scores.html", TEMPLATE)
        .write(
            "rules/f.toml",
            &rule("scores", "/live.html", source, timing, on_error),
        );
    root
}

const LIVE: &str =
    "<html><body><h1>Live</h1><div id=\"scores\"><p>Loading…</p></div></body></html>";
const TEMPLATE: &str = "<h2>{{ data.league }}</h2>{% for m in data.matches %}<p class=m>{{ m.home }} {{ m.score }} {{ m.away }}</p>{% endfor %}";

/// A fragment rule filling `#scores` on the page at `path`.
fn rule(name: &str, path: &str, source: &str, timing: &str, on_error: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nwhen = {{ path = \"{path}\" }}\naction = \"fragment\"\nselector = \"#scores\"\nsource = \"{source}\"\ntemplate = \"scores.html\"\n{timing}\non_error = \"{on_error}\"\n\n"
    )
}

fn page(s: &Server) -> String {
    s.get("main.localhost", "/live.html").text()
}

/// A fragment counter on /metrics: how many fragments went into pages
/// `fresh`, `stale` or `failed`.
fn results(s: &Server, result: &str) -> u64 {
    s.metric(&format!(
        "outpost_fragment_results_total{{result=\"{result}\"}}"
    ))
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
    let body = page(&s);
    assert!(
        body.contains(r#"<div id="scores"><h2>Serie A</h2><p class=m>Inter 2-1 Milan</p></div>"#),
        "{body}"
    );
    for _ in 0..20 {
        assert!(page(&s).contains("Inter 2-1 Milan"));
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

/// Past the ttl, pages take the stale copy while one refresh runs: the
/// upstream holds the new data until every page was answered, so a page
/// that waited for the refresh (up to its timeout, past the test) would
/// not have come back with the old data.
#[test]
fn stale_copies_are_served_while_one_refresh_runs() {
    let up = Upstream::start(Mode::Json(SCORES.into()));
    let root = root(&up.url("/s.json"), "ttl = \"1s\"\ntimeout = \"1m\"", "keep");
    let s = Server::start(root.path());
    assert!(page(&s).contains("Inter 2-1 Milan"));
    up.set(Mode::Held(SCORES.replace("2-1", "3-1")));
    assert!(eventually(Duration::from_secs(30), || {
        let body = page(&s);
        assert!(body.contains("Inter 2-1 Milan"), "{body}");
        up.count() == 2
    }));
    for _ in 0..5 {
        assert!(page(&s).contains("Inter 2-1 Milan"));
    }
    assert_eq!(up.count(), 2, "one refresh at a time");
    assert!(results(&s, "stale") >= 5);
    up.release();
    assert!(eventually(Duration::from_secs(30), || page(&s)
        .contains("Inter 3-1 Milan")));
}

/// Each failure mode, with each `on_error`, on one server (a page and a
/// source of its own per case): the page comes with what was asked for.
/// A source that does not answer is given up at the fragment's timeout
/// (300 ms), not at the fetch's own limit (10 s): those pages come back
/// while their fetches still run, which go on to serve later pages.
#[test]
fn failing_upstreams_never_delay_the_page_past_the_timeout() {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let other = Upstream::start(Mode::Json(SCORES.into()));
    let late = Upstream::start(Mode::Held(SCORES.into()));
    let hang = Upstream::start(Mode::Hang);
    let failing = [
        ("500", Upstream::start(Mode::Status(500))),
        ("50 MB", Upstream::start(Mode::Huge(50 * 1024 * 1024))),
        ("not JSON", Upstream::start(Mode::Json("<html>oops".into()))),
        (
            "wrong shape",
            Upstream::start(Mode::Json("[1, 2, 3]".into())),
        ),
        (
            "redirect",
            Upstream::start(Mode::Redirect(other.url("/s.json"))),
        ),
    ];
    // The sources that do not answer come first, so that their fetches
    // are checked still running before the fetch limit could end them.
    let mut sources = vec![
        ("hang", hang.url("/s.json")),
        ("late", late.url("/s.json")),
        ("refused", format!("http://{refused}/s.json")),
    ];
    sources.extend(failing.iter().map(|(what, up)| (*what, up.url("/s.json"))));
    let outcomes = [
        ("keep", "<p>Loading…</p>"),
        ("empty", "<div id=\"scores\"></div>"),
        ("stale", "<div id=\"scores\"></div>"),
    ];
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("rules/templates/scores.html", TEMPLATE);
    let mut rules = String::new();
    let mut cases = Vec::new();
    for (what, url) in &sources {
        for (on_error, expect) in outcomes {
            let path = format!("/{}-{on_error}.html", cases.len());
            root.write(&format!("sites/main/public{path}"), LIVE);
            // A source of its own per case: no case sees another's back-off.
            let source = format!("{url}?on_error={on_error}");
            rules.push_str(&rule(
                &format!("case-{}", cases.len()),
                &path,
                &source,
                "ttl = \"1h\"\ntimeout = \"300ms\"",
                on_error,
            ));
            cases.push((*what, on_error, expect, path));
        }
    }
    root.write("rules/f.toml", &rules);
    let s = Server::start(root.path());
    let check = |(what, on_error, expect, path): &(&str, &str, &str, String)| {
        let body = s.get("main.localhost", path).text();
        if *what == "wrong shape" {
            // The JSON is fine; the template cannot use it.
            assert!(!body.contains("Inter"), "{what}/{on_error}");
        } else {
            assert!(body.contains(expect), "{what}/{on_error}: {body}");
        }
    };
    let (silent, answering) = cases.split_at(6);
    for case in silent {
        check(case);
        assert_eq!(
            s.metric("outpost_fragment_upstream_errors_total"),
            0,
            "{}/{}: the page waited for its fetch to fail",
            case.0,
            case.1
        );
    }
    // The late answers come now and serve the next pages at once.
    late.release();
    for case in answering {
        check(case);
    }
    assert_eq!(results(&s, "failed"), 21, "all but the wrong shape failed");
    assert_eq!(other.count(), 0, "redirects are not followed");
    for (_, on_error, _, path) in silent.iter().filter(|c| c.0 == "late") {
        assert!(
            eventually(Duration::from_secs(30), || s
                .get("main.localhost", path)
                .text()
                .contains("Inter 2-1 Milan")),
            "late/{on_error}"
        );
    }
    assert_eq!(late.count(), 3, "one request per source, never retried");
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
    assert!(page(&s).contains("Inter 2-1 Milan"));
    up.set(Mode::Status(503));
    // Requests keep coming; failed refreshes are retried after 1 s, then 2 s.
    assert!(eventually(Duration::from_secs(8), || {
        assert!(
            page(&s).contains("Inter 2-1 Milan"),
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
    let started = Instant::now();
    assert!(page(&s).contains("Loading"));
    assert_eq!(up.count(), 1);
    // Each failure leaves the source alone twice as long as the one before
    // (1 s, then 2 s, 4 s...): within t seconds of the first try, at most
    // log2(t + 1) more tries, however slow the machine; without the
    // back-off each page would try again.
    for _ in 0..10 {
        let body = page(&s);
        assert!(body.contains("Loading"), "{body}");
    }
    let secs = started.elapsed().as_secs_f64();
    let allowed = 1 + (secs + 1.0).log2().floor() as usize;
    assert!(
        up.count() <= allowed,
        "{} upstream requests in {secs:.1} s",
        up.count()
    );
    assert_eq!(results(&s, "failed"), 11);
    // The source recovers: pages get its data once the back-off is over.
    up.set(Mode::Json(SCORES.into()));
    assert!(eventually(Duration::from_secs(10), || page(&s)
        .contains("Inter 2-1 Milan")));
}

#[test]
fn upstream_data_is_escaped() {
    let evil = r#"{"league": "<script>alert('x')</script>", "matches": [{"home": "\"><img src=x onerror=alert(1)>", "away": "B", "score": "1-0"}]}"#;
    let up = Upstream::start(Mode::Json(evil.into()));
    let root = root(&up.url("/s.json"), "", "keep");
    let s = Server::start(root.path());
    let body = page(&s);
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
    assert!(page(&s).contains("Inter 2-1 Milan"));
    assert!(s.terminate().success());
    up.set(Mode::Status(500));
    let s = Server::start(root.path());
    let body = page(&s);
    assert!(body.contains("Inter 2-1 Milan"), "{body}");
}
