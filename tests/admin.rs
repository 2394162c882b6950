//! The admin listener: health, readiness, metrics, status, rollback and
//! purge behind the token, and the dashboard in a real browser.

mod common;
use std::time::Duration;

use common::{eventually, run_on, Root, Server};

fn root(token: Option<&str>) -> Root {
    let root = Root::new();
    let token = token
        .map(|t| format!("admin_token = \"{t}\"\n"))
        .unwrap_or_default();
    root.write(
        "outpost.toml",
        &format!("admin_listen = \"127.0.0.1:0\"\n{token}"),
    );
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "v1")
        .write(
            "rules/exp.toml",
            "[[rule]]\nname = \"hero\"\nwhen = { path = \"/\" }\naction = \"variant\"\nexperiment = \"hero\"\nvariants = [{ name = \"control\" }, { name = \"bold\" }]\n\n[[rule]]\nname = \"goal\"\nwhen = { path = \"/thanks.html\" }\naction = \"goal\"\nexperiment = \"hero\"\n",
        )
        .write("sites/main/public/thanks.html", "thanks");
    root
}

#[test]
fn health_ready_status_and_metrics() {
    let root = root(Some("s3cret"));
    let s = Server::start(root.path());
    assert_eq!(s.admin("GET", "/health", &[]).status, 200);
    assert_eq!(s.admin("GET", "/ready", &[]).status, 200);
    s.get("main.localhost", "/");
    s.get("main.localhost", "/nope");
    let status: serde_json::Value =
        serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["sites"][0]["name"], "main");
    assert_eq!(status["sites"][0]["version"], 1);
    assert_eq!(status["rules"]["count"], 2);
    assert_eq!(status["experiments"][0]["experiment"], "hero");
    let metrics = s.admin("GET", "/metrics", &[]).text();
    for needle in [
        "outpost_requests_total{site=\"main\",status=\"200\"} 1",
        "outpost_requests_total{site=\"main\",status=\"404\"} 1",
        "outpost_request_duration_seconds_count 2",
        "outpost_site_version{site=\"main\"} 1",
        "outpost_rules_errors 0",
        "outpost_fragment_upstream_requests_total 0",
        "outpost_experiment_exposures_total{experiment=\"hero\"",
        "outpost_experiment_not_applied_total{experiment=\"hero\"",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}

#[test]
fn mutations_need_the_token() {
    let root = root(Some("s3cret"));
    let s = Server::start(root.path());
    root.write("sites/main/public/index.html", "v2");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/")
        .text()
        == "v2"));
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Bearer s3cre")],
        vec![("Authorization", "s3cret")],
    ] {
        assert_eq!(
            s.admin("POST", "/sites/main/rollback", &headers).status,
            401,
            "{headers:?}"
        );
    }
    assert_eq!(s.get("main.localhost", "/").text(), "v2");
    let r = s.admin(
        "POST",
        "/sites/main/rollback",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("main.localhost", "/").text(), "v1");
    assert_eq!(
        s.admin(
            "POST",
            "/sites/main/rollback",
            &[("Authorization", "Bearer s3cret")]
        )
        .status,
        409,
        "nothing older"
    );
    assert_eq!(
        s.admin("POST", "/purge", &[("Authorization", "Bearer s3cret")])
            .status,
        200
    );
    assert_eq!(s.admin("POST", "/purge", &[]).status, 401);
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let root = root(Some("s3cret"));
    let s = Server::start(root.path());
    for scheme in ["bearer", "BEARER", "Bearer "] {
        let auth = format!("{scheme} s3cret");
        let r = s.admin("POST", "/purge", &[("Authorization", &auth)]);
        assert_eq!(r.status, 200, "{auth}: {}", r.text());
    }
    for auth in ["Basic s3cret", "Bearers3cret", "bearer  wrong"] {
        let r = s.admin("POST", "/purge", &[("Authorization", auth)]);
        assert_eq!(r.status, 401, "{auth}");
    }
}

#[test]
fn a_blank_admin_token_is_refused_at_start() {
    for token in [" ", "\t", "   "] {
        let root = root(Some(token));
        // check first: a serve that accepts the token would run on.
        let out = run_on(root.path(), &["check"]);
        assert!(!out.status.success(), "check accepted {token:?}");
        let out = run_on(root.path(), &["serve", "--listen", "127.0.0.1:0"]);
        assert!(!out.status.success(), "{token:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("outpost.toml:2:15: `admin_token` is only whitespace"),
            "{err}"
        );
    }
}

#[test]
fn without_a_token_mutations_are_refused() {
    let root = root(None);
    let s = Server::start(root.path());
    let r = s.admin("POST", "/purge", &[("Authorization", "Bearer anything")]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("admin_token is not set"));
}

#[test]
fn a_public_admin_listener_without_a_token_is_refused_at_start() {
    let root = Root::new();
    root.write("outpost.toml", "admin_listen = \"0.0.0.0:0\"\n");
    let out = run_on(root.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outpost.toml:1:16: admin listener on 0.0.0.0:0 is reachable from other hosts; set `admin_token`"), "{err}");
}

#[test]
fn the_dashboard_renders_in_a_browser() {
    let root = root(Some("s3cret"));
    let s = Server::start(root.path());
    for _ in 0..40 {
        let r = s.get("main.localhost", "/");
        let cookie = r
            .headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap();
        if cookie.ends_with("bold") {
            s.request(
                "GET",
                "main.localhost",
                "/thanks.html",
                &[("Cookie", &cookie)],
            );
        }
    }
    let profile = tempfile::tempdir().unwrap();
    let shot = std::env::var("OUTPOST_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| profile.path().join("dashboard.png"));
    let url = format!("http://{}/", s.admin);
    let run = |args: &[&str]| common::chromium(&url, profile.path(), args);
    // The DOM after the page's script ran: live data, not the empty shell.
    let dom = String::from_utf8_lossy(&run(&["--dump-dom"]).stdout).into_owned();
    assert!(dom.contains("<td>main</td>"), "sites table filled: {dom}");
    assert!(dom.contains("main.localhost"));
    assert!(dom.contains("<h3>hero</h3>"), "experiments listed");
    assert!(dom.contains("<th class=\"num\">not applied</th>"), "{dom}");
    assert!(
        dom.contains("aria-label=\"conversion rate by variant\""),
        "chart drawn"
    );
    assert!(dom.contains("2 rules, generation"));
    let out = run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,900",
    ]);
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real picture"
    );
}

/// The render cache (the one set of bodies on the heap) is bounded by
/// `render_cache_size`, and its size and hit rate are in /status and
/// /metrics.
#[test]
fn the_render_cache_shows_its_size_and_hit_rate() {
    let root = Root::new();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\nrender_cache_size = \"1MiB\"\n",
    );
    root.site("main", &["main.localhost"], true)
        .write(
            "sites/main/public/index.html",
            "<html><head></head><body><main>page</main></body></html>",
        )
        .write(
            "rules/chat.toml",
            "[[rule]]\nname = \"chat\"\nwhen = { path = \"/\" }\naction = \"inject\"\nhtml = '<script src=\"/chat.js\"></script>'\nselector = \"head\"\n",
        );
    let s = Server::start(root.path());
    for _ in 0..3 {
        assert!(s.get("main.localhost", "/").text().contains("chat.js"));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap();
    let cache = &status["render_cache"];
    assert_eq!(cache["capacity_bytes"], 1 << 20, "{cache}");
    assert_eq!(
        (&cache["misses"], &cache["hits"]),
        (&1.into(), &2.into()),
        "{cache}"
    );
    assert!(cache["bytes"].as_u64().unwrap() > 0, "{cache}");
    let metrics = s.admin("GET", "/metrics", &[]).text();
    for needle in [
        "outpost_render_cache_hits_total 2",
        "outpost_render_cache_misses_total 1",
        "outpost_render_cache_capacity_bytes 1048576",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}
