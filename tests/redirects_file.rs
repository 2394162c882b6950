//! A site's `_redirects` and `_headers` (Netlify's formats): what each form
//! of line makes of a request, through the whole pipeline in-process; that
//! neither file is served; `explain` and `outpost test` naming the line;
//! `check` reporting bad lines and loops; and over a real server, a changed
//! file going live while a bad one keeps the last good version serving.

mod common;
use std::time::Duration;

use common::{eventually, run_on, InProcess, Root, Server};
use outpost::context::Country;
use outpost::offline::{Offline, Visit};
use outpost::rules::Verdict;

const REDIRECTS: &str = "\
# the news section was renamed
/news/*         /blog/:splat
/old.html       /new            302
/forced.html    /new            302!
/store id=:id   /blog/:id       301
/team/:slug     /team.html      200
/app/*          /app/index.html 200
/gone           /closed.html    410
/en/*           /en/404.html    404
/au             /australia      302   Country=au,nz
/hello          /fr/hello       302   Language=fr
/ext            https://example.com/x?from=outpost  308
/rules-too      /from-file      302
";

fn root() -> Root {
    let root = Root::new();
    root.site("shop", &["shop.localhost"], true);
    for (path, body) in [
        ("old.html", "old page"),
        ("forced.html", "forced page"),
        ("team.html", "<p>team page</p>"),
        ("app/index.html", "the app"),
        ("closed.html", "closed for good"),
        ("en/404.html", "english not found"),
        ("en/real.html", "a real english page"),
        ("about.html", "about us"),
    ] {
        root.write(&format!("sites/shop/public/{path}"), body);
    }
    root.write("sites/shop/public/_redirects", REDIRECTS);
    root.write(
        "sites/shop/public/_headers",
        "# everywhere\n/*\n  X-Frame-Options: DENY\n/team/*\n  Cache-Control: max-age=60\n",
    );
    // rules/ come after the file: this one never fires on /rules-too.
    root.write(
        "rules/r.toml",
        "[[rule]]\nname = \"later\"\naction = \"redirect\"\nto = \"/from-rules\"\nwhen.path = \"/rules-too\"\n",
    );
    root
}

fn location(app: &InProcess, path: &str) -> (u16, Option<String>) {
    let r = app.get(&format!("http://shop.localhost{path}"), &[]);
    (r.status, r.header("location").map(str::to_string))
}

fn body(app: &InProcess, path: &str) -> (u16, String) {
    let r = app.get(&format!("http://shop.localhost{path}"), &[]);
    (r.status, r.text())
}

#[test]
fn every_form_of_line_answers_as_on_netlify() {
    let root = root();
    let app = InProcess::load(root.path());
    let to = |s: u16, l: &str| (s, Some(l.to_string()));
    // A splat, the query kept; a trailing slash matches too.
    assert_eq!(
        location(&app, "/news/2024/a?x=1"),
        to(301, "/blog/2024/a?x=1")
    );
    assert_eq!(location(&app, "/news/"), to(301, "/blog/"));
    assert_eq!(location(&app, "/news"), to(301, "/blog/"));
    // A file at the path shadows a line without `!`.
    assert_eq!(body(&app, "/old.html"), (200, "old page".into()));
    assert_eq!(location(&app, "/forced.html"), to(302, "/new"));
    // Query matching: its capture fills `to`, and the query is not kept.
    assert_eq!(location(&app, "/store?id=42&utm=x"), to(301, "/blog/42"));
    assert_eq!(location(&app, "/store").0, 404);
    // 200: the page at the requested URL, with or without the slash.
    assert_eq!(body(&app, "/team/ana"), (200, "<p>team page</p>".into()));
    assert_eq!(body(&app, "/team/ana/"), (200, "<p>team page</p>".into()));
    assert_eq!(body(&app, "/app/a/b/c"), (200, "the app".into()));
    // 410 and 404 show their page with their status, where no file is.
    assert_eq!(body(&app, "/gone"), (410, "closed for good".into()));
    assert_eq!(body(&app, "/en/nothing"), (404, "english not found".into()));
    assert_eq!(
        body(&app, "/en/real.html"),
        (200, "a real english page".into())
    );
    // A full URL, its own query kept as written.
    assert_eq!(
        location(&app, "/ext?y=2"),
        to(308, "https://example.com/x?from=outpost")
    );
    // The file's line comes before rules/.
    let r = app.get("http://shop.localhost/rules-too", &[]);
    assert_eq!(r.header("location"), Some("/from-file"));
    assert_eq!(r.header("x-outpost-rules"), Some("_redirects:13"));
    // Nothing else matches.
    assert_eq!(body(&app, "/about.html"), (200, "about us".into()));
    assert_eq!(location(&app, "/newsx").0, 404);
}

#[test]
fn country_and_language_conditions() {
    let root = root();
    let offline = Offline::load(root.path()).unwrap();
    let visit = |path: &str, country: &str, language: &str| {
        let visit = Visit {
            url: format!("http://shop.localhost{path}"),
            country: Country::parse(country),
            headers: vec![("Accept-Language".into(), language.into())],
            ..Visit::default()
        };
        let (response, _) = offline.answer(&visit).unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let private = response
            .headers()
            .get("cache-control")
            .is_some_and(|c| c == "private");
        (response.status().as_u16(), location, private)
    };
    assert_eq!(
        visit("/au", "NZ", "en"),
        (302, Some("/australia".into()), true)
    );
    assert_eq!(visit("/au", "GB", "en"), (404, None, true));
    assert_eq!(
        visit("/hello", "GB", "fr-FR,fr;q=0.9"),
        (302, Some("/fr/hello".into()), true)
    );
    assert_eq!(visit("/hello", "GB", "de"), (404, None, true));
}

#[test]
fn neither_file_is_served_and_headers_apply() {
    let root = root();
    let app = InProcess::load(root.path());
    let missing = body(&app, "/nothing-here");
    assert_eq!(missing.0, 404);
    assert_eq!(body(&app, "/_redirects"), missing);
    assert_eq!(body(&app, "/_headers"), missing);
    let about = app.get("http://shop.localhost/about.html", &[]);
    assert_eq!(about.header("x-frame-options"), Some("DENY"));
    assert_eq!(about.header("cache-control"), None);
    let team = app.get("http://shop.localhost/team.html", &[]);
    assert_eq!(team.header("x-frame-options"), Some("DENY"));
    // A rewritten page is answered for the URL asked for.
    let rewritten = app.get("http://shop.localhost/team/ana", &[]);
    assert_eq!(rewritten.header("cache-control"), Some("max-age=60"));
}

#[test]
fn explain_and_rule_cases_name_the_line() {
    let root = root();
    let offline = Offline::load(root.path()).unwrap();
    let visit = Visit {
        url: "http://shop.localhost/old.html".into(),
        ..Visit::default()
    };
    let (_, decision) = offline.answer(&visit).unwrap();
    let trace = decision.unwrap().trace;
    assert_eq!(trace[0].rule, "_redirects:3");
    assert!(
        matches!(&trace[0].verdict, Verdict::Skipped(why) if why.starts_with("a file exists at this path"))
    );
    assert_eq!(trace[0].origin.line, 3);
    // Only the lines the path can match are looked at.
    assert_eq!(trace.len(), 2, "{trace:?}");

    let out = run_on(root.path(), &["explain", "http://shop.localhost/news/x"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("_redirects:2 [redirect] sites/shop/public/_redirects:2:1: FIRED"),
        "{text}"
    );
    assert!(
        text.contains("later [redirect]") && text.contains("not reached"),
        "{text}"
    );

    // A 200 to another host is Netlify's proxy: forwarded, query and all
    // (rule cases never reach the upstream: they answer with its URL).
    root.write(
        "sites/shop/public/_redirects",
        &format!("{REDIRECTS}/api/* https://api.example/:splat 200\n"),
    );
    root.write(
        "rules/tests/cases.toml",
        "[[case]]\nname = \"old news\"\nurl = \"http://shop.localhost/news/x\"\nstatus = 301\nlocation = \"/blog/x\"\nrules = [\"_redirects:2\"]\n\n[[case]]\nname = \"the API is proxied\"\nurl = \"http://shop.localhost/api/v1/odds?x=1\"\nstatus = 200\nrules = [\"_redirects:14\"]\nbody_contains = [\"proxied to https://api.example/v1/odds?x=1\"]\n",
    );
    let report = outpost::rule_tests::run(root.path()).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.passed, 2);
}

#[test]
fn check_reports_bad_lines_and_warns_of_loops() {
    let root = root();
    let report = outpost::check::check(root.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    root.write(
        "sites/shop/public/_redirects",
        &format!("{REDIRECTS}/a /b\n/b /a/ 302\n/api/* https://api.example/:splat 200\n/x /y 302 Role=admin\n"),
    );
    root.write("sites/shop/public/_headers", "/*\n  Bad Name: x\n");
    let report = outpost::check::check(root.path());
    let problems: Vec<String> = report.problems.iter().map(|d| d.to_string()).collect();
    let at = |rel: &str| root.join(rel).display().to_string();
    assert_eq!(
        problems,
        [
            format!(
                "{}:2:3: `Bad Name` is not a valid header name",
                at("sites/shop/public/_headers")
            ),
            format!(
                "{}:17:11: `Role=` is not supported: outpost has no user roles",
                at("sites/shop/public/_redirects")
            ),
        ]
    );
    // The same from the command, which fails.
    let out = run_on(root.path(), &["check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("_redirects:17:11: `Role=`"));

    root.write("sites/shop/public/_headers", "/*\n  X-A: b\n");
    root.write(
        "sites/shop/public/_redirects",
        &format!("{REDIRECTS}/a /b\n/b /a/ 302\n"),
    );
    let report = outpost::check::check(root.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let warnings: Vec<String> = report
        .warnings
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
        .collect();
    assert_eq!(
        warnings,
        [
            "14:1: redirect loop: /a → /b → /a/ (lines 14, 15)",
            "15:1: redirect loop: /b → /a/ → /b (lines 15, 14)",
        ]
    );
}

/// Over a real server and its watcher: a changed `_redirects` goes live;
/// one with a bad line is reported at its line and the last good version
/// keeps serving, until it is fixed.
#[test]
fn a_changed_file_goes_live_and_a_bad_one_keeps_the_last_good() {
    let root = root();
    let s = Server::start(root.path());
    let location = |path: &str| {
        let r = s.get("shop.localhost", path);
        (r.status, r.header("location").map(str::to_string))
    };
    assert_eq!(location("/news/a"), (301, Some("/blog/a".into())));
    assert_eq!(location("/moved").0, 404);

    root.write("sites/shop/public/_redirects", "/moved /here 307\n");
    assert!(eventually(Duration::from_secs(10), || location("/moved")
        == (307, Some("/here".into()))));
    assert_eq!(location("/news/a").0, 404);

    root.write(
        "sites/shop/public/_redirects",
        "/moved /there 307\n/broken\n",
    );
    s.wait_for_log(
        "_redirects:2:1: this line has no `to`",
        Duration::from_secs(10),
    );
    s.wait_for_log(
        "still serving the last good version",
        Duration::from_secs(10),
    );
    assert_eq!(location("/moved"), (307, Some("/here".into())));

    root.write("sites/shop/public/_redirects", "/moved /there 307\n");
    assert!(eventually(Duration::from_secs(10), || location("/moved")
        == (307, Some("/there".into()))));
}
