//! The visitor's country: geo database (both schemas), X-Forwarded-For and
//! CF-IPCountry only from trusted peers, IPv6 and IPv4-mapped addresses,
//! and a database that changes on disk.

mod common;
use std::path::Path;
use std::time::Duration;

use common::{eventually, run_on, Root, Server};

/// A root whose page shows the country the rules saw.
fn root(settings: &str) -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "<html><body><main>page</main></body></html>")
        .write("rules/templates/country.html", "<b id=c>{{ request.country }}</b>")
        .write(
            "rules/country.toml",
            "[[rule]]\nname = \"show-country\"\naction = \"inject\"\ntemplate = \"country.html\"\nselector = \"main\"\n",
        )
        .write("outpost.toml", &format!("admin_listen = \"127.0.0.1:0\"\n{settings}"));
    root
}

fn test_db() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geo/GeoIP2-Country-Test.mmdb")
        .display()
        .to_string()
}

fn country(s: &Server, headers: &[(&str, &str)]) -> String {
    let body = s.request("GET", "main.localhost", "/", headers).text();
    let start = body.find("<b id=c>").expect("country shown") + 8;
    body[start..start + 2].to_string()
}

#[test]
fn forwarded_addresses_from_trusted_peers() {
    let root = root(&format!("geoip = {:?}\n", test_db()));
    let s = Server::start(root.path());
    assert_eq!(country(&s, &[]), "XX", "loopback is in no database");
    assert_eq!(country(&s, &[("X-Forwarded-For", "81.2.69.142")]), "GB");
    assert_eq!(
        country(&s, &[("X-Forwarded-For", "89.160.20.112, 127.0.0.1")]),
        "SE"
    );
    assert_eq!(country(&s, &[("X-Forwarded-For", "2001:218::1")]), "JP");
    assert_eq!(
        country(&s, &[("X-Forwarded-For", "::ffff:81.2.69.142")]),
        "GB"
    );
    assert_eq!(
        country(&s, &[("X-Forwarded-For", "[2001:218::1]:443")]),
        "JP"
    );
    assert_eq!(country(&s, &[("X-Forwarded-For", "not an address")]), "XX");
    assert_eq!(
        country(&s, &[("X-Forwarded-For", ",,,;;; 999.1.1.1")]),
        "XX"
    );
    assert_eq!(country(&s, &[("X-Forwarded-For", "8.8.8.8")]), "XX");
    assert_eq!(country(&s, &[("CF-IPCountry", "it")]), "IT");
    assert_eq!(country(&s, &[("CF-IPCountry", "Italy")]), "XX");
}

#[test]
fn untrusted_peers_cannot_choose_their_country() {
    let root = root(&format!(
        "geoip = {:?}\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        test_db()
    ));
    let s = Server::start(root.path());
    assert_eq!(country(&s, &[("X-Forwarded-For", "81.2.69.142")]), "XX");
    assert_eq!(country(&s, &[("CF-IPCountry", "IT")]), "XX");
}

#[test]
fn without_a_database_only_trusted_headers_count() {
    let root = root("");
    let s = Server::start(root.path());
    assert_eq!(country(&s, &[("X-Forwarded-For", "81.2.69.142")]), "XX");
    assert_eq!(country(&s, &[("CF-IPCountry", "DE")]), "DE");
}

fn ip_location_db(path: &Path, net: &str, code: &str) {
    #[derive(serde::Serialize)]
    struct Record<'a> {
        country_code: &'a str,
    }
    let mut w = mmdb_writer::Writer::new("country ipvAll");
    w.insert(
        net.parse::<ipnet::IpNet>().unwrap(),
        &Record { country_code: code },
    )
    .unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, w.to_bytes().unwrap()).unwrap();
    // Replaced by a rename, as updaters do.
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn ip_location_db_schema_and_reload_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    ip_location_db(&db, "2.125.160.0/24", "FR");
    let root = root(&format!("geoip = {:?}\n", db.display().to_string()));
    let s = Server::start(root.path());
    let h = [("X-Forwarded-For", "2.125.160.216")];
    assert_eq!(country(&s, &h), "FR");
    ip_location_db(&db, "2.125.160.0/24", "PT");
    assert!(eventually(Duration::from_secs(10), || country(&s, &h) == "PT"));
    // A broken update keeps the last good database.
    std::fs::write(dir.path().join("broken.tmp"), b"garbage").unwrap();
    std::fs::rename(dir.path().join("broken.tmp"), &db).unwrap();
    s.wait_for_log("keeping the previous database", Duration::from_secs(10));
    assert_eq!(country(&s, &h), "PT");
}

#[test]
fn a_missing_database_is_a_clear_error_at_start() {
    let root = root("geoip = \"/nonexistent/country.mmdb\"\n");
    let out = run_on(root.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/country.mmdb"), "{err}");
}
