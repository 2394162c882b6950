//! A/B variants and goals over real HTTP: weighted draws, sticky cookies,
//! forcing, variants served as files or transforms, counts that survive a
//! restart, and hostile cookies.

mod common;
use std::time::Duration;

use common::{run_on, Root, Server};

const HOME: &str = "<html><body><h1 class=hero>Welcome</h1><a class=cta href=/signup/>Sign up</a><p id=promo>promo</p></body></html>";

fn root() -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", HOME)
        .write(
            "sites/main/public/alt.html",
            "<html><body><h1>Alternative home</h1></body></html>",
        )
        .write(
            "sites/main/public/signup/thanks.html",
            "<html><body>Thanks</body></html>",
        )
        .write(
            "rules/exp.toml",
            r##"
[[rule]]
name = "hero"
when = { path = "/" }
action = "variant"
experiment = "hero"
allow_force = true
variants = [
  { name = "control", weight = 50 },
  { name = "bold", weight = 50, transforms = [
    { selector = "h1.hero", set_text = "Bold <welcome>" },
    { selector = "a.cta", set_attr = { name = "class", value = "cta big" } },
    { selector = "#promo", remove = true },
  ] },
]

[[rule]]
name = "layout"
when = { path = "/" }
action = "variant"
experiment = "layout"
variants = [
  { name = "same", weight = 1 },
  { name = "file", weight = 0, serve = "/alt.html" },
]

[[rule]]
name = "signed-up"
when = { path = "/signup/thanks.html" }
action = "goal"
experiment = "hero"
"##,
        );
    root
}

fn cookie_of<'a>(r: &'a common::Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().split_once('=').unwrap().1)
}

/// GET `path` on the test site, sending `cookies`.
fn with_cookies(s: &Server, path: &str, cookies: &str) -> common::Response {
    s.request("GET", "main.localhost", path, &[("Cookie", cookies)])
}

#[test]
fn ten_thousand_new_visitors_split_fifty_fifty() {
    let root = root();
    let s = Server::start(root.path());
    let addr = s.addr;
    let counts: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    let (mut control, mut bold) = (0, 0);
                    for _ in 0..2500 {
                        let r = common::raw(
                            addr,
                            b"GET / HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n",
                        );
                        match cookie_of(&r, "outpost_exp_hero") {
                            Some("control") => {
                                assert!(r.text().contains("Welcome"));
                                control += 1
                            }
                            Some("bold") => {
                                assert!(r.text().contains("Bold &lt;welcome&gt;"));
                                bold += 1
                            }
                            other => panic!("no variant cookie: {other:?}"),
                        }
                    }
                    (control, bold)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let control: usize = counts.iter().map(|c| c.0).sum();
    let bold: usize = counts.iter().map(|c| c.1).sum();
    assert_eq!(control + bold, 10_000);
    assert!(
        (4800..=5200).contains(&control),
        "control {control}, bold {bold}"
    );
}

#[test]
fn the_page_leaves_in_its_variant_and_visitors_keep_it() {
    let root = root();
    let s = Server::start(root.path());
    let r = with_cookies(&s, "/", "outpost_exp_hero=bold");
    let body = r.text();
    assert!(
        body.contains("<h1 class=hero>Bold &lt;welcome&gt;</h1>"),
        "{body}"
    );
    assert!(
        body.contains(r#"<a class="cta big" href=/signup/>"#),
        "{body}"
    );
    assert!(!body.contains("promo"));
    assert!(
        !body.contains("<script"),
        "nothing is swapped in the browser"
    );
    assert_eq!(
        cookie_of(&r, "outpost_exp_hero"),
        None,
        "a kept variant sets no new cookie"
    );
    assert_eq!(r.header("cache-control"), Some("private"));
    let set = s.get("main.localhost", "/");
    let cookie = set
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("outpost_exp_hero="))
        .unwrap()
        .1
        .clone();
    assert!(
        cookie.contains("Max-Age=2592000")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
}

#[test]
fn several_experiments_on_one_page_are_independent() {
    let root = root();
    let s = Server::start(root.path());
    let r = with_cookies(&s, "/", "outpost_exp_hero=bold; outpost_exp_layout=file");
    assert!(
        r.text().contains("Alternative home"),
        "layout serves its file"
    );
    let r = with_cookies(&s, "/", "outpost_exp_hero=bold; outpost_exp_layout=same");
    assert!(r.text().contains("Bold"));
    let r = s.get("main.localhost", "/");
    assert!(
        cookie_of(&r, "outpost_exp_hero").is_some()
            && cookie_of(&r, "outpost_exp_layout") == Some("same")
    );
}

#[test]
fn forged_and_hostile_cookies_are_redrawn() {
    let root = root();
    let s = Server::start(root.path());
    let long = format!("outpost_exp_hero={}", "x".repeat(10 * 1024));
    let many: String = (0..60)
        .map(|i| format!("outpost_exp_e{i}=v{i}; "))
        .collect::<String>()
        + "outpost_exp_hero=bold";
    for cookie in [
        "outpost_exp_hero=admin",
        "outpost_exp_hero=",
        "outpost_exp_hero=bold%00",
        long.as_str(),
    ] {
        let r = s.request("GET", "main.localhost", "/", &[("Cookie", cookie)]);
        assert_eq!(r.status, 200);
        assert!(
            matches!(cookie_of(&r, "outpost_exp_hero"), Some("control" | "bold")),
            "redrawn for {}",
            &cookie[..cookie.len().min(40)]
        );
    }
    let r = s.request("GET", "main.localhost", "/", &[("Cookie", &many)]);
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("Bold"),
        "the real cookie among many still counts"
    );
}

#[test]
fn qa_can_force_a_variant_without_being_counted() {
    let root = root();
    let s = Server::start(root.path());
    let r = s.get("main.localhost", "/?outpost_variant=bold");
    assert!(r.text().contains("Bold"));
    assert_eq!(cookie_of(&r, "outpost_exp_hero"), None);
    // Forcing an unknown variant falls back to the normal draw.
    let r = s.get("main.localhost", "/?outpost_variant=nope");
    assert!(cookie_of(&r, "outpost_exp_hero").is_some());
}

#[test]
fn exposures_and_conversions_survive_a_restart() {
    let root = root();
    let mut s = Server::start(root.path());
    // Exposures count visitors: each new visitor once, when drawn.
    let mut drawn = std::collections::HashMap::new();
    for _ in 0..20 {
        let r = s.get("main.localhost", "/");
        *drawn
            .entry(cookie_of(&r, "outpost_exp_hero").unwrap().to_string())
            .or_insert(0u64) += 1;
    }
    // Returning visitors and QA are not new exposures.
    with_cookies(&s, "/", "outpost_exp_hero=bold");
    s.get("main.localhost", "/?outpost_variant=bold");
    let r = with_cookies(&s, "/signup/thanks.html", "outpost_exp_hero=bold");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "set-cookie" && v.starts_with("outpost_conv_hero=1")));
    // Converted visitors are counted once.
    with_cookies(
        &s,
        "/signup/thanks.html",
        "outpost_exp_hero=bold; outpost_conv_hero=1",
    );
    // A forged variant converts nothing.
    with_cookies(&s, "/signup/thanks.html", "outpost_exp_hero=forged");
    assert!(s.terminate().success());
    let out = run_on(root.path(), &["stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hero = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["experiment"] == "hero")
        .unwrap();
    let variant = |n: &str| {
        hero["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        variant("control")["exposures"],
        drawn.get("control").copied().unwrap_or(0)
    );
    assert_eq!(
        variant("bold")["exposures"],
        drawn.get("bold").copied().unwrap_or(0)
    );
    assert_eq!(variant("bold")["conversions"], 1);
    assert_eq!(variant("control")["conversions"], 0);
    assert!(variant("bold")["p_value"].is_number());
    // Counting goes on from there after a restart.
    let s = Server::start(root.path());
    with_cookies(&s, "/", "outpost_exp_hero=bold");
    drop(s);
    let out = run_on(root.path(), &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("experiment hero"), "{text}");
}

#[test]
fn a_missing_variant_file_serves_the_control() {
    let root = root();
    root.write("rules/exp.toml", "[[rule]]\nname = \"layout\"\naction = \"variant\"\nexperiment = \"layout\"\nvariants = [{ name = \"file\", serve = \"/gone.html\" }]\n");
    let out = run_on(root.path(), &["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "exp.toml:5:38: variant `file` serves /gone.html, which site `main` does not have"
        ),
        "{text}"
    );
    let s = Server::start(root.path());
    let r = s.get("main.localhost", "/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Welcome"));
    s.wait_for_log(
        "variant file missing; serving the control",
        Duration::from_secs(10),
    );
}

/// The experiment `name`'s figures for `variant` in a report (`/status`
/// `experiments`, or `stats --json`).
fn figures(reports: &serde_json::Value, name: &str, variant: &str) -> serde_json::Value {
    let e = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["experiment"] == name)
        .unwrap_or_else(|| panic!("no experiment {name} in {reports}"));
    e["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant} in {e}"))
        .clone()
}

fn status_experiments(s: &Server) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap();
    status["experiments"].clone()
}

#[test]
fn a_variant_whose_selector_matches_nothing_is_counted_not_applied() {
    let root = root();
    // `renamed` was written for a button the page no longer has: its
    // heading change applies, its button change matches nothing. `bold`
    // applies.
    root.write(
        "rules/exp.toml",
        r#"
[[rule]]
name = "cta"
when = { path = "/" }
action = "variant"
experiment = "cta"
variants = [
  { name = "control", weight = 1 },
  { name = "renamed", weight = 1, transforms = [
    { selector = "h1.hero", set_text = "Bold" },
    { selector = "a.button", set_text = "Join now" },
  ] },
  { name = "bold", weight = 1, transforms = [
    { selector = "h1.hero", set_text = "Bold" },
  ] },
]
"#,
    );
    let mut s = Server::start(root.path());
    let mut drawn = std::collections::HashMap::new();
    // Enough visitors that most pages of each variant come from the render
    // cache, which must still know whether the variant applied.
    for _ in 0..60 {
        let r = s.get("main.localhost", "/");
        assert_eq!(r.status, 200);
        let v = cookie_of(&r, "outpost_exp_cta").unwrap().to_string();
        *drawn.entry(v).or_insert(0u64) += 1;
    }
    let (control, renamed, bold) = (drawn["control"], drawn["renamed"], drawn["bold"]);
    assert!(bold > 1 && renamed > 1, "{drawn:?}");
    let live = status_experiments(&s);
    assert_eq!(figures(&live, "cta", "bold")["exposures"], bold);
    assert_eq!(figures(&live, "cta", "bold")["not_applied"], 0);
    assert_eq!(figures(&live, "cta", "control")["exposures"], control);
    assert_eq!(figures(&live, "cta", "control")["not_applied"], 0);
    assert_eq!(figures(&live, "cta", "renamed")["exposures"], 0);
    assert_eq!(figures(&live, "cta", "renamed")["not_applied"], renamed);
    let cta = live
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["experiment"] == "cta");
    let warnings = cta.unwrap()["warnings"].to_string();
    assert!(
        warnings.contains("variant `renamed` was not applied"),
        "{warnings}"
    );
    // Returning visitors are not drawn again.
    with_cookies(&s, "/", "outpost_exp_cta=renamed");
    assert_eq!(
        figures(&status_experiments(&s), "cta", "renamed")["not_applied"],
        renamed
    );
    // The counts are saved and read back with the store.
    assert!(s.terminate().success());
    let out = run_on(root.path(), &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not applied"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "warning: variant `renamed` was not applied to {renamed} of the {renamed} visitors drawn into it"
        )),
        "{text}"
    );
    // So do rule cases: a case for `renamed` fails.
    root.write(
        "rules/tests/cta.toml",
        "[[case]]\nname = \"renamed\"\nurl = \"http://main.localhost/\"\ncookies = { outpost_exp_cta = \"renamed\" }\nvariant = \"renamed\"\n\n[[case]]\nname = \"bold\"\nurl = \"http://main.localhost/\"\ncookies = { outpost_exp_cta = \"bold\" }\nvariant = \"bold\"\n",
    );
    let out = run_on(root.path(), &["test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cta.toml:1:1: renamed: variant renamed was not applied"),
        "{text}"
    );
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    // explain says the same of one visit.
    let url = "http://main.localhost/";
    for (cookie, says) in [
        (
            "outpost_exp_cta=renamed",
            "variant: cta = renamed, NOT APPLIED",
        ),
        ("outpost_exp_cta=bold", "variant: cta = bold, applied"),
    ] {
        let out = run_on(root.path(), &["explain", url, "--cookie", cookie]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(says), "{text}");
    }
    let out = run_on(root.path(), &["stats", "--json"]);
    let saved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(figures(&saved, "cta", "renamed")["not_applied"], renamed);
    assert_eq!(figures(&saved, "cta", "renamed")["exposures"], 0);
    assert_eq!(figures(&saved, "cta", "control")["exposures"], control);
}

#[test]
fn a_missing_variant_file_counts_not_applied() {
    let root = root();
    root.write(
        "rules/exp.toml",
        r#"
[[rule]]
name = "layout"
when = { path = "/" }
action = "variant"
experiment = "layout"
variants = [{ name = "file", serve = "/gone.html" }, { name = "alt", weight = 0, serve = "/alt.html" }]
"#,
    );
    let s = Server::start(root.path());
    assert!(s.get("main.localhost", "/").text().contains("Welcome"));
    let live = status_experiments(&s);
    assert_eq!(figures(&live, "layout", "file")["exposures"], 0);
    assert_eq!(figures(&live, "layout", "file")["not_applied"], 1);
}

#[test]
fn stats_warns_when_the_draws_do_not_follow_the_weights() {
    let root = root();
    let rules = |weight: u32| {
        format!(
            "[[rule]]\nname = \"hero\"\nwhen = {{ path = \"/\" }}\naction = \"variant\"\nexperiment = \"hero\"\nvariants = [{{ name = \"control\", weight = 1 }}, {{ name = \"bold\", weight = {weight} }}]\n"
        )
    };
    root.write("rules/exp.toml", &rules(0));
    let mut s = Server::start(root.path());
    for _ in 0..30 {
        s.get("main.localhost", "/");
    }
    assert!(s.terminate().success());
    // Every visitor went to control, as weights 1/0 say: no warning.
    let out = run_on(root.path(), &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sample-ratio mismatch"), "{text}");
    // The weights changed in the middle of the test: 30/0 is far from 1/1.
    root.write("rules/exp.toml", &rules(1));
    let out = run_on(root.path(), &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: sample-ratio mismatch: visitors drawn 30/0 for weights 1/1 (chi-square p = 4.3e-8)"),
        "{text}"
    );
    let out = run_on(root.path(), &["stats", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hero = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["experiment"] == "hero")
        .unwrap();
    assert_eq!(hero["sample_ratio_mismatch"], true);
    assert!(hero["sample_ratio_p"].as_f64().unwrap() < 0.001);
}

#[test]
fn a_draw_is_kept_only_where_the_page_went_out() {
    let root = root();
    root.write(
        "rules/exp.toml",
        r#"
[[rule]]
name = "everywhere"
when = { path = "/**" }
action = "variant"
experiment = "all"
variants = [{ name = "only", transforms = [{ selector = "h1", set_text = "Hi" }] }]
"#,
    );
    let s = Server::start(root.path());
    // The trailing-slash redirect and a missing page show nothing of the
    // experiment: no cookie is kept, nothing is counted.
    for path in ["/signup", "/missing.html"] {
        let r = s.get("main.localhost", path);
        assert!(r.status == 308 || r.status == 404, "{path}: {}", r.status);
        assert_eq!(cookie_of(&r, "outpost_exp_all"), None, "{path}");
    }
    let live = status_experiments(&s);
    assert_eq!(figures(&live, "all", "only")["exposures"], 0);
    assert_eq!(figures(&live, "all", "only")["not_applied"], 0);
    // The page itself keeps the draw and counts it.
    let r = s.get("main.localhost", "/");
    assert_eq!(cookie_of(&r, "outpost_exp_all"), Some("only"));
    assert!(r.text().contains("Hi"));
    let live = status_experiments(&s);
    assert_eq!(figures(&live, "all", "only")["exposures"], 1);
    assert_eq!(figures(&live, "all", "only")["not_applied"], 0);
}
