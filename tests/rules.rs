//! Rules: what each action makes of a request, in-process over the fixture
//! tests/fixtures/rules (its rule cases, and the response headers they
//! cannot check); over real HTTP what needs a server: bad rules files
//! (reported by `check`, never taking a running server down), changes
//! going live, personalized caching, and the hostile inputs each must
//! survive.

mod common;
use std::time::Duration;

use common::{fixture, run_on, InProcess, Root, Server};

/// A copy of the rules fixture to change and serve; its rule cases are
/// left out (they run in-process, see `fixture_rule_cases_pass`).
fn root() -> Root {
    let root = Root::copy_of(&fixture("rules"));
    std::fs::remove_dir_all(root.join("rules/tests")).unwrap();
    root
}

fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> common::Response {
    s.request("GET", "uk.localhost", path, headers)
}

/// The rule cases of the fixture (tests/fixtures/rules/rules/tests), run
/// in-process as `outpost test` runs them: offers, notes, previews,
/// blocks, redirects and rewrites, by status, location and body.
#[test]
fn fixture_rule_cases_pass() {
    let report = outpost::rule_tests::run(&fixture("rules")).unwrap();
    let failures: Vec<String> = report.failures.iter().map(|d| d.to_string()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(report.passed, 47);
}

/// What the cases cannot check: response headers, in-process.
fn in_process() -> InProcess {
    InProcess::load(&fixture("rules"))
}

#[test]
fn offers_are_private_and_staying_sets_a_cookie() {
    let app = in_process();
    let about = "http://uk.localhost/about.html";
    let r = app.get(about, &[("CF-IPCountry", "IT")]);
    assert!(r.text().contains("outpost-offer"), "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("private"));
    let r = app.get(
        &format!("{about}?outpost_stay=1&x=1"),
        &[("CF-IPCountry", "IT")],
    );
    assert_eq!(r.status, 302);
    assert!(r
        .header("set-cookie")
        .unwrap()
        .starts_with("outpost_stay=1; Max-Age=2592000"));
    let r = app.get(
        about,
        &[("CF-IPCountry", "IT"), ("Cookie", "outpost_stay=1")],
    );
    assert!(!r.text().contains("outpost-offer"));
}

#[test]
fn a_hidden_draft_answers_as_a_missing_page() {
    let app = in_process();
    let missing = app.get("http://uk.localhost/drafts/none.html", &[]);
    let hidden = app.get("http://uk.localhost/drafts/a.html", &[]);
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.body, missing.body);
    let names = |r: &common::Response| {
        let mut h: Vec<String> = r
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .filter(|k| k != "date")
            .collect();
        h.sort();
        h
    };
    assert_eq!(names(&hidden), names(&missing), "indistinguishable headers");
    // The rule that hid it is not named, even with X-Outpost-Rules on.
    assert_eq!(hidden.header("x-outpost-rules"), None);
    let r = app.get("http://uk.localhost/drafts/a.html?preview=true", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-robots-tag"), Some("noindex, nofollow"));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
}

#[test]
fn headers_rules_with_header_globs() {
    let app = in_process();
    let about = "http://uk.localhost/about.html";
    let r = app.get(about, &[("X-Debug", "ON please")]);
    assert_eq!(r.header("x-hello"), Some("world"));
    assert_eq!(r.header("last-modified"), None);
    let r = app.get(about, &[("X-Debug", "off")]);
    assert_eq!(r.header("x-hello"), None);
    assert!(r.header("last-modified").is_some());
}

#[test]
fn offer_redirect_mode_spares_crawlers() {
    let root = root();
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"offer\"\naction = \"offer-local\"\nmode = \"redirect\"\n",
    );
    let s = Server::start(root.path());
    let r = get(&s, "/about.html", &[("CF-IPCountry", "IT")]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://it.localhost/chi-siamo.html")
    );
    let bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let r = get(
        &s,
        "/about.html",
        &[("CF-IPCountry", "IT"), ("User-Agent", bot)],
    );
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("outpost-offer"));
}

#[test]
fn personalized_pages_are_private_with_an_etag_of_the_body_sent() {
    let root = root();
    let s = Server::start(root.path());
    let it = get(&s, "/", &[("CF-IPCountry", "IT")]);
    let plain = get(&s, "/", &[("CF-IPCountry", "GB")]);
    let (it_tag, plain_tag) = (it.header("etag").unwrap(), plain.header("etag").unwrap());
    assert_ne!(it_tag, plain_tag);
    assert_eq!(
        it.header("content-length").unwrap(),
        it.body.len().to_string()
    );
    let again = get(&s, "/", &[("CF-IPCountry", "IT")]);
    assert_eq!(
        again.header("etag"),
        Some(it_tag),
        "rendered once, then cached"
    );
    assert_eq!(again.body, it.body);
    let r = get(
        &s,
        "/",
        &[("CF-IPCountry", "IT"), ("If-None-Match", it_tag)],
    );
    assert_eq!(r.status, 304);
    // The Italian version's tag does not revalidate the British one.
    assert_eq!(
        get(
            &s,
            "/",
            &[("CF-IPCountry", "GB"), ("If-None-Match", it_tag)]
        )
        .status,
        200
    );
    // Compressed like static pages.
    let br = get(
        &s,
        "/",
        &[("CF-IPCountry", "IT"), ("Accept-Encoding", "br")],
    );
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut br.body.as_slice(), &mut out).unwrap();
    assert_eq!(out, it.body);
    // A change to the site invalidates the rendered copy.
    let page = std::fs::read_to_string(root.join("sites/uk/public/index.html")).unwrap();
    root.write("sites/uk/public/index.html", &page.replace("Home", "Start"));
    assert!(common::eventually(Duration::from_secs(10), || get(
        &s,
        "/",
        &[("CF-IPCountry", "IT")]
    )
    .text()
    .contains("Start")));
}

#[test]
fn preview_tokens_are_signed_and_expire() {
    let root = root();
    let s = Server::start(root.path());
    assert_eq!(get(&s, "/secret/s.html", &[]).status, 404);
    let out = run_on(
        root.path(),
        &[
            "preview-link",
            "http://uk.localhost/secret/s.html",
            "--ttl",
            "1h",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap();
    let path_and_query = link.trim().trim_start_matches("http://uk.localhost");
    assert!(
        path_and_query.starts_with("/secret/s.html?token="),
        "{link}"
    );
    assert!(get(&s, path_and_query, &[]).text().contains("embargoed"));
    let token = path_and_query.split("token=").nth(1).unwrap();
    let (expires, sig) = token.split_once('.').unwrap();
    let forged = format!(
        "/secret/s.html?token={}.{sig}",
        expires.parse::<u64>().unwrap() + 3600
    );
    assert_eq!(get(&s, &forged, &[]).status, 404, "extended expiry");
    assert_eq!(
        get(&s, &format!("/secret/s.html?token=1.{sig}"), &[]).status,
        404,
        "expired"
    );
    assert_eq!(get(&s, "/secret/s.html?token=garbage", &[]).status, 404);
    assert_eq!(
        get(&s, "/secret/s.html?token=true", &[]).status,
        404,
        "the plain value is not enough"
    );
    // The link for a page no secret rule gates is refused.
    let out = run_on(
        root.path(),
        &["preview-link", "http://uk.localhost/drafts/a.html"],
    );
    assert!(!out.status.success());
}

#[test]
fn redirects_built_from_the_request_never_leave_the_host() {
    let root = root();
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"r\"\nwhen = { path = \"/r/**\" }\naction = \"redirect\"\nto = \"{path}\"\n\n[[rule]]\nname = \"abs\"\nwhen = { path = \"/a/**\" }\naction = \"redirect\"\nto = \"https://example.org{path}?{query}\"\n",
    );
    let s = Server::start(root.path());
    for path in [
        "/r//evil.com/x",
        "/r/%2F%2Fevil.com",
        "/r/..//evil.com",
        "/r/\\evil.com",
    ] {
        let r = get(&s, path, &[]);
        if let Some(loc) = r.header("location") {
            assert!(
                loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\"),
                "{path} -> {loc}"
            );
        }
    }
    for path in ["/a/x?@evil.com", "/a/@evil.com", "/a/x?q=//evil.com"] {
        let r = get(&s, path, &[]);
        let loc = r
            .header("location")
            .unwrap_or_else(|| panic!("{path}: {} {:?}", r.status, r.headers));
        assert!(loc.starts_with("https://example.org/"), "{path} -> {loc}");
    }
    // A rule naming a host in a placeholder is refused at load.
    root.write(
        "rules/b.toml",
        "[[rule]]\nname = \"bad\"\naction = \"redirect\"\nto = \"https://{path}\"\n",
    );
    let out = run_on(root.path(), &["check"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("b.toml:4:6: placeholders may only appear in the path or query"));
}

#[test]
fn hostile_request_values() {
    let root = root();
    let s = Server::start(root.path());
    let long = "a".repeat(10 * 1024);
    for headers in [
        vec![("Accept-Language", long.as_str())],
        vec![("Accept-Language", ";;;q=x,,,*-*-*;q=-1,~")],
        vec![("Cookie", "a=%%%; ;;; =; b; ==\"; \"x\"=\"y")],
        vec![("Cookie", long.as_str())],
    ] {
        let r = get(&s, "/", &headers);
        assert_eq!(r.status, 200, "{headers:?}");
    }
    // Raw bytes that are not UTF-8 in a cookie.
    let r = common::raw(s.addr, b"GET / HTTP/1.1\r\nHost: uk.localhost\r\nCookie: a=\xff\xfe; outpost_stay=1\r\nCF-IPCountry: IT\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains("outpost-offer"),
        "the good cookie still counts"
    );
}

#[test]
fn odd_html_is_served_unbroken() {
    let root = root();
    let big: String = format!(
        "<html><body>{}</body></html>",
        "<p>filler paragraph of text</p>".repeat(170_000)
    );
    assert!(big.len() > 5 * 1024 * 1024);
    root.write("sites/uk/public/big.html", &big)
        .write("sites/uk/public/nobody.html", "<p>no body element at all")
        .write(
            "sites/uk/public/broken.html",
            "<html><body><div><p>unclosed <b>bold</div></span><!-- open comment",
        )
        .write_bytes(
            "sites/uk/public/latin1.html",
            b"<html><body><p>caf\xe9 cr\xe8me</p></body></html>",
        );
    let s = Server::start(root.path());
    let r = get(&s, "/big.html", &[("CF-IPCountry", "IT")]);
    assert_eq!(r.status, 200);
    assert!(r
        .text()
        .starts_with("<html><body><aside class=\"outpost-offer\""));
    assert!(r.text().ends_with("</body></html>"));
    let text = r.text();
    let after_banner = text.find("</aside>").unwrap() + "</aside>".len();
    assert_eq!(
        format!("<html><body>{}", text[after_banner..].trim_start()),
        big,
        "the rest is untouched"
    );
    let r = get(&s, "/nobody.html", &[("CF-IPCountry", "IT")]);
    assert!(
        r.text().starts_with("<p>no body element at all<aside"),
        "{}",
        r.text()
    );
    let r = get(&s, "/broken.html", &[("CF-IPCountry", "IT")]);
    assert!(
        r.text().ends_with("<b>bold</div></span><!-- open comment"),
        "{}",
        r.text()
    );
    let r = get(&s, "/latin1.html", &[("CF-IPCountry", "IT")]);
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(b"<p>caf\xe9 cr\xe8me</p></body></html>"));
}

/// Each bad rules file, and where `check` must point.
const BAD_RULES: &[(&str, &str, &str)] = &[
    ("invalid TOML", "[[rule]\nname = 1", "bad.toml:1:"),
    (
        "wrong type",
        "[[rule]]\nname = 1\naction = \"block\"\n",
        "bad.toml:2:8:",
    ),
    (
        "unknown action",
        "[[rule]]\nname = \"x\"\naction = \"redirct\"\nto = \"/\"\n",
        "bad.toml:3:10: unknown action `redirct`, did you mean `redirect`?",
    ),
    (
        "unknown key",
        "[[rule]]\nname = \"x\"\naction = \"block\"\nstatuss = 451\n",
        "bad.toml:4:1: unknown key `statuss`, did you mean `status`?",
    ),
    (
        "key of another action",
        "[[rule]]\nname = \"x\"\naction = \"block\"\nto = \"/\"\n",
        "bad.toml:4:6: `to` does not apply to action `block`",
    ),
    (
        "block page that is not a path on the site",
        "[[rule]]\nname = \"x\"\naction = \"block\"\npage = \"sorry.html\"\n",
        "bad.toml:4:8: `page` is a path on the site, starting with `/`",
    ),
    (
        "variant file that is not a path on the site",
        "[[rule]]\nname = \"x\"\naction = \"variant\"\nexperiment = \"e\"\nvariants = [{ name = \"a\" }, { name = \"b\", serve = \"b.html\" }]\n",
        "bad.toml:5:51: `serve` is a path on the site, starting with `/`",
    ),
    ("empty file", "", "bad.toml:1:1: file is empty"),
    (
        "duplicate name across files",
        "[[rule]]\nname = \"offer\"\naction = \"block\"\n",
        "bad.toml:2:8: rule name `offer` is already used at",
    ),
    (
        "bad glob",
        "[[rule]]\nname = \"x\"\nwhen = { path = \"[\" }\naction = \"block\"\n",
        "bad.toml:3:17: bad path glob `[`",
    ),
    (
        "bad selector",
        "[[rule]]\nname = \"x\"\naction = \"inject\"\nhtml = \"<p>\"\nselector = \"div >>\"\n",
        "bad.toml:5:12: bad CSS selector `div >>`",
    ),
    (
        "missing template",
        "[[rule]]\nname = \"x\"\naction = \"inject\"\ntemplate = \"nope.html\"\nselector = \"p\"\n",
        "bad.toml:4:12: no template `nope.html`",
    ),
    (
        "unknown site",
        "[[rule]]\nname = \"x\"\nsites = [\"ukk\"]\naction = \"block\"\n",
        "bad.toml:3:10: no site named `ukk`, did you mean `uk`?",
    ),
    (
        "bad country",
        "[[rule]]\nname = \"x\"\nwhen = { country = \"Italy\" }\naction = \"block\"\n",
        "bad.toml:3:20: `Italy` is not an ISO 3166-1 alpha-2 country code, did you mean IT?",
    ),
    (
        "an unknown time zone",
        "[[rule]]\nname = \"x\"\nwhen = { hours = { from = \"18:00\", to = \"20:00\", tz = \"Europe/Rom\" } }\naction = \"block\"\n",
        "bad.toml:3:55: `Europe/Rom` is not a time zone of the IANA database, did you mean `Europe/Rome`?",
    ),
    (
        "a window on no day",
        "[[rule]]\nname = \"x\"\nwhen = { hours = { days = [], from = \"18:00\", to = \"20:00\", tz = \"UTC\" } }\naction = \"block\"\n",
        "bad.toml:3:27: `days` is empty",
    ),
    (
        "before earlier than after",
        "[[rule]]\nname = \"x\"\nwhen = { after = \"2026-12-24T18:00:00+01:00\", before = \"2026-12-24T17:00:00Z\" }\naction = \"block\"\n",
        "bad.toml:3:56: `before` (2026-12-24T17:00:00Z) is not later than `after`",
    ),
    (
        "a time without its offset",
        "[[rule]]\nname = \"x\"\nwhen = { after = \"2026-12-24T18:00:00\" }\naction = \"block\"\n",
        "bad.toml:3:18: `2026-12-24T18:00:00` is not a time like 2026-12-24T18:00:00+01:00",
    ),
    (
        "an unknown device",
        "[[rule]]\nname = \"x\"\nwhen = { device = \"phone\" }\naction = \"block\"\n",
        "bad.toml:3:19: `phone` is not a device",
    ),
    (
        "a continent by its name",
        "[[rule]]\nname = \"x\"\nwhen = { continent = \"Europe\" }\naction = \"block\"\n",
        "bad.toml:3:22: `Europe` is not a continent code, did you mean EU?",
    ),
    (
        "a region without its country",
        "[[rule]]\nname = \"x\"\nwhen = { region = \"NJ\" }\naction = \"block\"\n",
        "bad.toml:3:19: `NJ` has no country part: a region is an ISO 3166-2 code like US-NJ",
    ),
    (
        "a region no country has",
        "[[rule]]\nname = \"x\"\nwhen = { region = \"US-NYY\" }\naction = \"block\"\n",
        "bad.toml:3:19: US-NYY is not an ISO 3166-2 region of US, did you mean US-NY?",
    ),
    (
        "a capture the path does not have",
        "[[rule]]\nname = \"x\"\nwhen = { path = \"/team/:slug\" }\naction = \"redirect\"\nto = \"/teams/{slg}\"\n",
        "bad.toml:5:6: `{slg}` is not a placeholder, did you mean `{slug}`?",
    ),
    (
        "a rewrite leaving the sites",
        "[[rule]]\nname = \"x\"\nwhen = { path = \"/a/**\" }\naction = \"rewrite\"\nto = \"https://evil.example/{splat}\"\n",
        "bad.toml:5:6: a rewrite serves a path of a site outpost serves",
    ),
    (
        "a bad capture name",
        "[[rule]]\nname = \"x\"\nwhen = { path = \"/a/:1\" }\naction = \"rewrite\"\nto = \"/b\"\n",
        "bad.toml:3:17: bad path pattern `/a/:1`",
    ),
];

#[test]
fn bad_rules_files_are_reported_with_their_location() {
    for (what, text, expected) in BAD_RULES {
        let root = root();
        root.write("rules/bad.toml", text);
        let out = run_on(root.path(), &["check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
        assert!(
            stdout.contains(expected),
            "{what}: expected `{expected}` in\n{stdout}"
        );
    }
    let root = root();
    root.write("rules/templates/broken.html", "<p>{{ oops </p>\n{% if %}");
    let out = run_on(root.path(), &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("templates/broken.html:1:"), "{stdout}");
}

#[test]
fn a_running_server_keeps_its_last_good_rules() {
    let root = root();
    let s = Server::start(root.path());
    assert!(get(&s, "/", &[("CF-IPCountry", "IT")])
        .text()
        .contains("outpost-offer"));
    for (what, text, _) in BAD_RULES {
        root.write("rules/zz-bad.toml", text);
        s.wait_for_log("the last good rules keep serving", Duration::from_secs(10));
        assert!(
            get(&s, "/", &[("CF-IPCountry", "IT")])
                .text()
                .contains("outpost-offer"),
            "{what}"
        );
        // Forget the logged failure before the next round.
        let loaded = s.log_count("rules loaded");
        std::fs::remove_file(root.join("rules/zz-bad.toml")).unwrap();
        s.wait_for_log_count("rules loaded", loaded + 1);
    }
    // A good change is taken.
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"only-headers\"\naction = \"headers\"\nset = { X-New = \"1\" }\n",
    );
    assert!(common::eventually(Duration::from_secs(10), || get(
        &s,
        "/",
        &[]
    )
    .header("x-new")
        == Some("1")));
}

#[test]
fn rule_cases_run_with_outpost_test() {
    let root = root();
    root.write(
        "rules/tests/cases.toml",
        "[[case]]\nname = \"offer\"\nurl = \"http://uk.localhost/\"\ncountry = \"IT\"\nstatus = 200\nrules = [\"offer\"]\nbody_contains = [\"outpost-offer\"]\n\n[[case]]\nname = \"wrong on purpose\"\nurl = \"http://uk.localhost/drafts/a.html\"\nstatus = 200\n",
    );
    let out = run_on(root.path(), &["test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("cases.toml:9:1: wrong on purpose: status 404 (expected 200)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn explain_names_each_rule_and_why() {
    let root = root();
    let out = run_on(
        root.path(),
        &[
            "explain",
            "http://uk.localhost/about.html",
            "--country",
            "IT",
            "--header",
            "X-Debug: on",
            "--body",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("site: uk"));
    assert!(stdout.contains("offer [offer-local]") && stdout.contains("FIRED"));
    assert!(
        stdout.contains("drafts [preview]")
            && stdout.contains("no match: path /about.html does not match")
    );
    assert!(stdout.contains("block-kp [block]") && stdout.contains("no match: country is IT"));
    assert!(stdout.contains("x-hello: world"));
    assert!(
        stdout.contains("Vai al sito italiano"),
        "--body prints the HTML"
    );
}

#[test]
fn responses_that_could_differ_by_visitor_are_private() {
    let root = root();
    let s = Server::start(root.path());
    // The offer rule read the country even when it offered nothing.
    assert_eq!(
        get(&s, "/", &[("CF-IPCountry", "GB")]).header("cache-control"),
        Some("private")
    );
    let r = s.request("GET", "it.localhost", "/", &[]);
    assert_eq!(
        r.header("cache-control"),
        Some("private"),
        "the offer reads the country there too"
    );
    let loaded = s.log_count("rules loaded");
    root.write("rules/a.toml", "[[rule]]\nname = \"ie\"\nwhen = { path = \"/about.html\", country = \"IE\" }\naction = \"headers\"\nset = { X-Ie = \"1\" }\n");
    s.wait_for_log_count("rules loaded", loaded + 1);
    assert_eq!(
        get(&s, "/about.html", &[("CF-IPCountry", "GB")]).header("cache-control"),
        Some("private")
    );
    assert_eq!(
        get(&s, "/", &[("CF-IPCountry", "GB")]).header("cache-control"),
        None,
        "path alone decided"
    );
}

#[test]
fn redirect_locations_are_encoded() {
    let root = root();
    root.write("rules/a.toml", "[[rule]]\nname = \"r\"\nwhen = { path = \"/r/**\" }\naction = \"redirect\"\nto = \"/{path}?{query}&from=old\"\n");
    let s = Server::start(root.path());
    let r = get(&s, "/r/a%20b%3Fc/caf%C3%A9", &[]);
    assert_eq!(
        r.header("location"),
        Some("/r/a%20b%3Fc/caf%C3%A9?from=old")
    );
    let r = get(&s, "/r/x?y=1", &[]);
    assert_eq!(r.header("location"), Some("/r/x?y=1&from=old"));
}

#[test]
fn starting_with_broken_rules_serves_the_last_good_copy() {
    let root = root();
    let s = Server::start(root.path());
    assert_eq!(get(&s, "/drafts/a.html", &[]).status, 404);
    drop(s);
    root.write("rules/a.toml", "this is [not toml");
    let s = Server::start(root.path());
    s.wait_for_log(
        "the last good rules keep serving (from cache/last-good)",
        Duration::from_secs(10),
    );
    assert_eq!(
        get(&s, "/drafts/a.html", &[]).status,
        404,
        "drafts stay hidden"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap();
    assert!(
        status["rules"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("a.toml:1:"),
        "{status}"
    );
}

#[test]
fn assets_keep_their_caching_under_rules_that_edit_html_only() {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    let root = root();
    for site in ["uk", "it"] {
        let toml = std::fs::read_to_string(root.join(&format!("sites/{site}/site.toml"))).unwrap();
        root.write(
            &format!("sites/{site}/site.toml"),
            &format!("{toml}[headers.\"/assets/**\"]\nCache-Control = \"{IMMUTABLE}\"\n"),
        );
    }
    root.write("sites/uk/public/assets/site.css", "body { color: red }")
        .write("sites/uk/public/drafts/draft.css", "body { color: blue }")
        .write(
            "rules/a.toml",
            "[[rule]]\nname = \"offer\"\nsites = [\"uk\", \"it\"]\naction = \"offer-local\"\n\n[[rule]]\nname = \"irish\"\nwhen = { country = \"IE\" }\naction = \"inject\"\nhtml = \"<p>euro</p>\"\nselector = \"h1\"\n\n[[rule]]\nname = \"drafts\"\nwhen = { path = \"/drafts/**\" }\naction = \"preview\"\n",
        );
    let s = Server::start(root.path());
    let explained = |path: &str, country: &str| {
        let url = format!("http://uk.localhost{path}");
        let out = run_on(root.path(), &["explain", &url, "--country", country]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("cache-control: "))
            .map(str::to_string);
        (line, stdout)
    };
    for country in ["IT", "IE", "GB"] {
        let css = get(&s, "/assets/site.css", &[("CF-IPCountry", country)]);
        assert_eq!(css.status, 200);
        assert_eq!(css.header("cache-control"), Some(IMMUTABLE), "{country}");
        let (line, out) = explained("/assets/site.css", country);
        assert_eq!(line.as_deref(), Some(IMMUTABLE), "{out}");
        assert!(
            out.contains("offer [offer-local]")
                && out.contains("it changes HTML pages only, and this is not one"),
            "{out}"
        );
        // The page could show a banner or a note to another visitor.
        let page = get(&s, "/", &[("CF-IPCountry", country)]);
        assert_eq!(page.header("cache-control"), Some("private"), "{country}");
        assert_eq!(explained("/", country).0.as_deref(), Some("private"));
        // A hidden asset answers exactly as a missing one.
        let hidden = get(&s, "/drafts/draft.css", &[("CF-IPCountry", country)]);
        let missing = get(&s, "/drafts/none.css", &[("CF-IPCountry", country)]);
        assert_eq!(hidden.status, 404);
        assert_eq!(
            hidden.header("cache-control"),
            missing.header("cache-control")
        );
    }
    // A block answers for any file: then the assets are private too.
    let loaded = s.log_count("rules loaded");
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"kp\"\nwhen = { country = \"KP\" }\naction = \"block\"\n",
    );
    s.wait_for_log_count("rules loaded", loaded + 1);
    let css = get(&s, "/assets/site.css", &[("CF-IPCountry", "GB")]);
    assert_eq!(css.header("cache-control"), Some("private"));
    assert_eq!(
        explained("/assets/site.css", "GB").0.as_deref(),
        Some("private")
    );
    assert_eq!(
        get(&s, "/assets/site.css", &[("CF-IPCountry", "KP")]).status,
        451
    );
}

/// `percent`: a new visitor is drawn once and keeps the id; a kept id
/// decides alone; a forged one is redrawn and the page served.
#[test]
fn percent_rollouts_keep_each_visitor_where_they_were_drawn() {
    let app = in_process();
    let page = "http://uk.localhost/only-uk.html";
    let r = app.get(page, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("private"));
    let cookie = r.header("set-cookie").expect("a new visitor gets an id");
    assert!(cookie.ends_with("; Max-Age=31536000; Path=/; SameSite=Lax; HttpOnly"));
    let id = cookie["outpost_id=".len()..].split(';').next().unwrap();
    let first = r.text().contains("New footer");
    for _ in 0..5 {
        let again = app.get(page, &[("Cookie", &format!("outpost_id={id}"))]);
        assert_eq!(
            again.text().contains("New footer"),
            first,
            "the same visitor, the same side"
        );
        assert!(
            again.header("set-cookie").is_none(),
            "a kept id is not set again"
        );
    }
    // Share 0 is in at 30%, share 9,999 out.
    let with = |id: &str| app.get(page, &[("Cookie", &format!("outpost_id={id}"))]);
    assert!(with("00000000000000000000000000002710")
        .text()
        .contains("New footer"));
    assert!(!with("0000000000000000000000000000270f")
        .text()
        .contains("New footer"));
    for forged in ["../../etc", "ZZZZ", "0000000000000000000000000000270F", ""] {
        let r = with(forged);
        assert_eq!(r.status, 200, "{forged}");
        assert!(
            r.header("set-cookie")
                .is_some_and(|c| c.starts_with("outpost_id=")),
            "{forged}"
        );
    }
    // Pages no `percent` rule asks about set no id.
    assert!(app
        .get("http://uk.localhost/about.html", &[])
        .header("set-cookie")
        .is_none());
}

/// A scheduled rule starts and stops by the clock, with no reload.
#[test]
fn schedules_start_and_stop_on_time() {
    let root = root();
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now + jiff::SignedDuration::from_secs(secs)).to_string();
    root.write(
        "rules/d-now.toml",
        &format!(
            "[[rule]]\nname = \"soon\"\nsites = [\"uk\"]\nwhen = {{ path = \"/about.html\", after = \"{}\", before = \"{}\" }}\naction = \"headers\"\nset = {{ X-Soon = \"1\" }}\n",
            at(1),
            at(3)
        ),
    );
    let app = InProcess::load(root.path());
    let soon = || {
        app.get("http://uk.localhost/about.html", &[])
            .header("x-soon")
            .is_some()
    };
    assert!(!soon(), "not before `after`");
    assert!(common::eventually(Duration::from_secs(10), soon), "started");
    assert!(
        common::eventually(Duration::from_secs(10), || !soon()),
        "stopped"
    );
}

/// A trusted proxy's CF-Region-Code counts with its CF-IPCountry; from
/// anyone else, or without a country, it does not.
#[test]
fn regions_from_a_trusted_proxy() {
    let app = in_process();
    let page = "http://uk.localhost/about.html";
    let nj = [("CF-IPCountry", "US"), ("CF-Region-Code", "NJ")];
    assert!(app.get(page, &nj).text().contains("Offer for US-NJ"));
    let ny = [("CF-IPCountry", "US"), ("CF-Region-Code", "NY")];
    assert!(!app.get(page, &ny).text().contains("class=region"));
    assert!(!app
        .get(page, &[("CF-Region-Code", "NJ")])
        .text()
        .contains("class=region"));
}

/// `check` says so when no visitor can have a region.
#[test]
fn a_region_rule_needs_a_source_of_regions() {
    let root = root();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\ntrusted_proxies = []\n",
    );
    let out = run_on(root.path(), &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("c-conditions.toml:67:1: the rule asks for a `region`, which no visitor has"),
        "{stdout}"
    );
}
