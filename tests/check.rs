//! `outpost check`: each problem as file:line:col, exit 1 on any.

mod common;
use common::{run_on, Root};

fn check(root: &Root) -> (i32, String) {
    let out = run_on(root.path(), &["check"]);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_good_root_passes() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true)
        .site("b", &["b.localhost"], false);
    let (code, out) = check(&root);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn unknown_keys_name_the_closest_one() {
    let root = Root::new();
    root.write(
        "sites/a/site.toml",
        "hosts = [\"a.localhost\"]\nlocale = \"en-GB\"\ncountires = [\"GB\"]\n",
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert!(
        out.contains("sites/a/site.toml:3:1: unknown key `countires`, did you mean `countries`?"),
        "{out}"
    );
}

#[test]
fn wrong_types_and_bad_values_point_at_the_value() {
    let root = Root::new();
    root.write(
        "sites/a/site.toml",
        "hosts = \"a.localhost\"\nlocale = \"en-GB\"\n",
    );
    root.write(
        "sites/b/site.toml",
        "hosts = [\"b.localhost\"]\nlocale = \"en-GB\"\ncountries = [\"GBR\"]\n",
    );
    root.write(
        "sites/c/site.toml",
        "hosts = [\"c.localhost\"]\nlocale = \"en-GB\"\n[headers.\"/a/[\"]\nX = \"1\"\n",
    );
    root.write(
        "sites/d/site.toml",
        "hosts = [\"d.localhost\"\nlocale = \"en-GB\"\n",
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert!(out.contains("sites/a/site.toml:1:9:"), "{out}");
    assert!(
        out.contains("sites/b/site.toml:3:14: `GBR` is not an ISO 3166-1 alpha-2"),
        "{out}"
    );
    assert!(
        out.contains("sites/c/site.toml:3:10: bad path glob"),
        "{out}"
    );
    assert!(out.contains("sites/d/site.toml:2:"), "{out}");
}

#[test]
fn two_defaults_and_a_host_claimed_twice() {
    let root = Root::new();
    root.site("a", &["a.localhost", "shared.localhost"], true)
        .site("b", &["b.localhost", "shared.localhost"], true);
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "sites/b/site.toml:1:25: host `shared.localhost` is already claimed by site `a`"
        ),
        "{out}"
    );
    assert!(
        out.contains("sites/b/site.toml:5:11: site `a` is already the default"),
        "{out}"
    );
}

#[test]
fn bad_settings_are_reported() {
    let root = Root::new();
    root.write("outpost.toml", "listen = \"nowhere\"\n");
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert!(
        out.contains("outpost.toml:1:10: `nowhere` is not an address"),
        "{out}"
    );
}

#[test]
fn a_bad_site_toml_at_runtime_keeps_the_last_good_version() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true)
        .write("sites/a/public/index.html", "good");
    let s = common::Server::start(root.path());
    root.write("sites/a/site.toml", "hosts = [\"a.localhost\"\nbroken");
    s.wait_for_log(
        "still serving the last good version",
        std::time::Duration::from_secs(10),
    );
    assert_eq!(s.get("a.localhost", "/").text(), "good");
}

#[test]
fn keys_an_action_does_not_take_are_errors() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true);
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"n\"\naction = \"inject\"\nhtml = \"<p>x</p>\"\nselector = \"body\"\nttl = \"10s\"\nvariants = []\n\n[[rule]]\nname = \"r\"\naction = \"redirect\"\nto = \"/x\"\nallow_force = true\nsource = \"http://127.0.0.1/x.json\"\n",
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rules/a.toml:6:7: `ttl` does not apply to action `inject`: it is a key of `fragment` (`inject` takes template, html, selector, position)"),
        "{out}"
    );
    assert!(
        out.contains("rules/a.toml:7:12: `variants` does not apply to action `inject`: it is a key of `variant`"),
        "{out}"
    );
    assert!(
        out.contains("rules/a.toml:13:15: `allow_force` does not apply to action `redirect`"),
        "{out}"
    );
    assert!(
        out.contains("rules/a.toml:14:10: `source` does not apply to action `redirect`"),
        "{out}"
    );
}

#[test]
fn redirect_placeholders_that_do_not_exist_are_errors() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true);
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"r\"\nwhen = { path = \"/old/**\" }\naction = \"redirect\"\nto = \"/new{pth}?{query}\"\n",
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rules/a.toml:5:6: `{pth}` is not a placeholder, did you mean `{path}`?"),
        "{out}"
    );
}

#[test]
fn country_codes_must_be_iso_3166_1() {
    let root = Root::new();
    root.write(
        "sites/a/site.toml",
        "hosts = [\"a.localhost\"]\nlocale = \"en-GB\"\ncountries = [\"UK\"]\n",
    );
    root.write(
        "rules/a.toml",
        "[[rule]]\nname = \"b\"\nwhen = { country = [\"EU\"] }\naction = \"block\"\n",
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("sites/a/site.toml:3:14: `UK` is not an ISO 3166-1 alpha-2 country code, did you mean GB?"),
        "{out}"
    );
    assert!(
        out.contains("rules/a.toml:3:20: `EU` is not an ISO 3166-1 alpha-2 country code: the European Union is not a country"),
        "{out}"
    );
}

#[test]
fn a_geo_database_serve_cannot_open_is_an_error() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true);
    root.write("outpost.toml", "geoip = \"geo/country.mmdb\"\n");
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outpost.toml:1:9: geo database "), "{out}");
    root.write("geo/country.mmdb", "not a database");
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outpost.toml:1:9: geo database "), "{out}");
    // serve agrees: it refuses to start.
    let out = common::outpost()
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn templates_using_variables_the_context_lacks_are_errors() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true)
        .site("b", &["b.localhost"], false)
        .write("sites/a/public/index.html", "<html><body><main><h1>Hi</h1></main></body></html>")
        .write(
            "rules/templates/good.html",
            "<p lang=\"{{ site.locale }}\">{{ request.path }} {{ request.host }} {{ request.country }} {{ request.language }} {{ site.name }}\n{% if request.query.ref %}{{ request.query.ref }}{% endif %}{{ request.query.x | default(value=\"\") }}</p>\n",
        )
        .write("rules/templates/typo.html", "<p>\n  {{ request.contry }}\n</p>\n")
        .write("rules/templates/query.html", "<p>{{ request.query.ref }}</p>\n")
        .write(
            "rules/templates/banner.html",
            "<a href=\"{{ offer.url }}\">{{ offer.go }}</a> {{ offer.stay_url }} {{ offer.message }} {{ offer.site }} {{ offer.locale }} {{ offer.country }} {{ offer.stay }} {{ offer.label }}\n{{ offer.link }}\n",
        )
        .write(
            "rules/templates/scores.html",
            "{% for m in data.matches %}{{ m.home }}{% endfor %}{{ data.league }}\n",
        )
        .write("rules/templates/scores-typo.html", "{{ site.nme }}{{ data.league }}\n")
        .write(
            "rules/a.toml",
            r##"
[[rule]]
name = "good"
action = "inject"
template = "good.html"
selector = "main"

[[rule]]
name = "typo"
action = "inject"
template = "typo.html"
selector = "main"

[[rule]]
name = "query"
action = "inject"
template = "query.html"
selector = "main"

[[rule]]
name = "banner"
action = "offer-local"
template = "banner.html"

[[rule]]
name = "scores"
action = "fragment"
selector = "main"
source = "http://127.0.0.1:1/s.json"
template = "scores.html"

[[rule]]
name = "scores-typo"
action = "fragment"
selector = "main"
source = "http://127.0.0.1:1/s.json"
template = "scores-typo.html"
"##,
        );
    let (code, out) = check(&root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rules/templates/typo.html:2:6: template `typo.html` uses `request.contry`, which templates are not given"),
        "{out}"
    );
    assert!(
        out.contains("rules/templates/query.html:1:7: template `query.html` uses `request.query.ref`, which a request without that parameter does not have"),
        "{out}"
    );
    assert!(
        out.contains("rules/templates/banner.html:2:4: template `banner.html` uses `offer.link`"),
        "{out}"
    );
    assert!(
        out.contains(
            "rules/templates/scores-typo.html:1:4: template `scores-typo.html` uses `site.nme`"
        ),
        "{out}"
    );
    assert!(!out.contains("good.html"), "{out}");
    assert!(
        !out.contains("scores.html"),
        "data comes from the source: {out}"
    );
}

#[test]
fn selectors_no_covered_page_has_are_warnings() {
    let root = Root::new();
    root.site("a", &["a.localhost"], true)
        .site("b", &["b.localhost"], false)
        .write(
            "sites/a/public/index.html",
            "<html><body><h1 class=\"hero-title\">Hi</h1><a class=\"cta\">Go</a></body></html>",
        )
        .write(
            "sites/a/public/about/index.html",
            "<html><body><main>About</main></body></html>",
        )
        .write(
            "sites/b/public/index.html",
            "<html><body><p class=\"only-b\">B</p></body></html>",
        )
        .write(
            "rules/a.toml",
            r##"[[rule]]
name = "hero"
sites = ["a"]
when = { path = "/" }
action = "variant"
experiment = "hero"
variants = [
  { name = "control" },
  { name = "bold", transforms = [
    { selector = "h1.hero-title", set_text = "Bold" },
    { selector = "a.button", set_text = "Now" },
  ] },
]

[[rule]]
name = "note"
sites = ["a"]
when = { path = "/about/**" }
action = "inject"
html = "<p>note</p>"
selector = "p.only-b"

[[rule]]
name = "everywhere"
action = "inject"
html = "<p>x</p>"
selector = "p.only-b"
"##,
        );
    let (code, out) = check(&root);
    assert_eq!(code, 0, "warnings do not fail the check: {out}");
    assert!(
        out.contains("rules/a.toml:11:18: warning: rule `hero`: selector `a.button` matches no element on the 1 page(s) it covers"),
        "{out}"
    );
    assert!(
        out.contains("rules/a.toml:21:12: warning: rule `note`: selector `p.only-b` matches no element on the 1 page(s) it covers"),
        "{out}"
    );
    assert!(!out.contains("h1.hero-title"), "{out}");
    assert!(!out.contains("`everywhere`"), "site b has it: {out}");
    assert!(out.contains("ok"), "{out}");
}
