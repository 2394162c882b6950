//! Static serving over real HTTP: methods, index and clean URLs, content
//! types, validators, ranges, encodings, not-found pages, hosts, headers.

mod common;
use common::{Root, Server};

fn page(n: usize) -> String {
    format!(
        "<!doctype html><html><body>{}</body></html>",
        (0..n)
            .map(|i| format!("<p>Paragraph {i} of a page.</p>"))
            .collect::<String>()
    )
}

fn root() -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/site.toml", "hosts = [\"main.localhost\", \"*.wild.test\"]\nlocale = \"en-GB\"\ndefault = true\n[headers.\"/assets/**\"]\nCache-Control = \"public, max-age=31536000, immutable\"\n")
        .write("sites/main/public/index.html", &page(100))
        .write("sites/main/public/about.html", &page(5))
        .write("sites/main/public/docs/index.html", "<p>docs</p>")
        .write("sites/main/public/assets/site.css", &"body { color: red; }\n".repeat(50))
        .write("sites/main/public/assets/logo.png", "\u{89}PNG not really")
        .write("sites/main/public/data.json", "{\"a\": 1}")
        .write("sites/main/public/404.html", "<h1>Not here</h1>")
        .write("sites/main/public/.env", "SECRET=1")
        .write("sites/main/public/.git/config", "[core]")
        .write("sites/main/public/.well-known/security.txt", "Contact: a@b.c");
    root.site("other", &["other.localhost"], false)
        .write("sites/other/public/index.html", "<p>other site</p>");
    root
}

#[test]
fn serves_index_clean_urls_and_directory_redirects() {
    let root = root();
    let s = Server::start(root.path());
    let r = s.get("main.localhost", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), page(100));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(s.get("main.localhost", "/about").text(), page(5));
    assert_eq!(s.get("main.localhost", "/about.html").text(), page(5));
    assert_eq!(s.get("main.localhost", "/docs/").text(), "<p>docs</p>");
    let r = s.get("main.localhost", "/docs?x=1");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    assert_eq!(
        s.get("main.localhost", "/assets/site.css")
            .header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        s.get("main.localhost", "/assets/logo.png")
            .header("content-type"),
        Some("image/png")
    );
    assert_eq!(
        s.get("main.localhost", "/data.json").header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn head_and_other_methods() {
    let root = root();
    let s = Server::start(root.path());
    let get = s.get("main.localhost", "/about");
    let head = s.request("HEAD", "main.localhost", "/about", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("etag"), get.header("etag"));
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = s.request(
            method,
            "main.localhost",
            "/about",
            &[("Content-Length", "0")],
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn etags_and_dates_give_304() {
    let root = root();
    let s = Server::start(root.path());
    let r = s.get("main.localhost", "/about");
    let etag = r.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    let last_modified = r.header("last-modified").unwrap().to_string();

    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("If-None-Match", "\"other\", W/".to_string().as_str())],
    );
    assert_eq!(r.status, 200);
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("If-Modified-Since", &last_modified)],
    );
    assert_eq!(r.status, 304);
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[
            ("If-None-Match", "\"nope\""),
            ("If-Modified-Since", &last_modified),
        ],
    );
    assert_eq!(r.status, 200);
    // The tag of the compressed copy revalidates a plain request too.
    let br = s.request("GET", "main.localhost", "/", &[("Accept-Encoding", "br")]);
    let br_tag = br.header("etag").unwrap().to_string();
    assert_ne!(br_tag, s.get("main.localhost", "/").header("etag").unwrap());
    assert_eq!(
        s.request("GET", "main.localhost", "/", &[("If-None-Match", &br_tag)])
            .status,
        304
    );
}

#[test]
fn single_ranges() {
    let root = root();
    let s = Server::start(root.path());
    let full = page(5);
    let r = s.request("GET", "main.localhost", "/about", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full.as_bytes()[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()).as_str())
    );
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("Range", "bytes=-5"), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full.as_bytes()[full.len() - 5..]);
    assert_eq!(r.header("content-encoding"), None);
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("Range", &format!("bytes={}-", full.len()))],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", full.len()).as_str())
    );
    // A stale If-Range gets the whole file.
    let r = s.request(
        "GET",
        "main.localhost",
        "/about",
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), full.len());
}

/// Bytes no compressor shrinks, the same for the same `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).unwrap();
    out
}

/// The value of an unlabelled counter on the admin listener's /metrics.
fn counter(s: &Server, name: &str) -> u64 {
    let metrics = s.admin("GET", "/metrics", &[]).text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
}

#[test]
fn large_files_are_sent_whole_in_ranges_and_pipelined_by_sendfile() {
    let root = root();
    let big = noise(3 << 20, 7);
    let css = "body { color: red; }\n".repeat(10_000);
    root.write_bytes("sites/main/public/big.bin", &big)
        .write("sites/main/public/assets/large.css", &css);
    let s = Server::start(root.path());
    let before = counter(&s, "outpost_sendfile_bytes_total");

    let r = s.get("main.localhost", "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    assert!(r.body == big, "the body differs from the file");
    let r = s.request(
        "GET",
        "main.localhost",
        "/big.bin",
        &[("Range", "bytes=1000-2000999")],
    );
    assert_eq!(r.status, 206);
    assert!(
        r.body == big[1000..2_001_000],
        "the range differs from the file"
    );
    let r = s.request("HEAD", "main.localhost", "/big.bin", &[]);
    assert!(r.body.is_empty());
    let r = s.request(
        "GET",
        "main.localhost",
        "/assets/large.css",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), css.as_bytes());
    let r = s.get("main.localhost", "/assets/large.css");
    assert_eq!(r.text(), css);

    // Two requests in one write: each response must follow the other whole.
    let pipelined = "GET /big.bin HTTP/1.1\r\nHost: main.localhost\r\n\r\n\
         GET /about HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n";
    let r = common::raw(s.addr, pipelined.as_bytes());
    assert_eq!(r.status, 200);
    let (first, second) = r.body.split_at(big.len());
    assert!(first == big, "the first body differs from the file");
    let second = String::from_utf8_lossy(second);
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second:.100}");
    assert!(second.ends_with(&page(5)), "{second}");

    // The large bodies went out by sendfile (the small page did not need to),
    // all but maybe a tail under 64 KiB that a partial send left, per body.
    let sent = counter(&s, "outpost_sendfile_bytes_total") - before;
    let large = 2 * big.len() as u64 + 2_000_000 + css.len() as u64 - 4 * 65_536;
    assert!(
        sent >= large,
        "{sent} bytes by sendfile, expected {large} at least"
    );
}

/// Clients that hang up in the middle of a large body (closing with unread
/// bytes resets the connection): the send fails, and only that connection.
#[test]
fn clients_resetting_mid_body_leave_the_server_serving() {
    use std::io::{Read, Write};
    let root = root();
    let big = noise(4 << 20, 11);
    root.write_bytes("sites/main/public/big.bin", &big);
    let s = Server::start(root.path());
    for _ in 0..20 {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: main.localhost\r\n\r\n")
            .unwrap();
        let mut some = [0; 1000];
        c.read_exact(&mut some).unwrap();
    }
    let r = s.get("main.localhost", "/big.bin");
    assert!(r.body == big, "the body differs from the file");
    assert_eq!(s.get("main.localhost", "/about").text(), page(5));
}

#[test]
fn precompressed_copies_follow_accept_encoding() {
    let root = root();
    let s = Server::start(root.path());
    let plain = s.get("main.localhost", "/");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let br = s.request(
        "GET",
        "main.localhost",
        "/",
        &[("Accept-Encoding", "gzip, deflate, br")],
    );
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut br.body.as_slice(), &mut out).unwrap();
    assert_eq!(out, plain.body);

    let gz = s.request(
        "GET",
        "main.localhost",
        "/",
        &[("Accept-Encoding", "gzip;q=1, br;q=0")],
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), plain.body);
    assert!(gz.body.len() < plain.body.len() / 3);

    // Images are not compressed, and do not vary.
    let png = s.request(
        "GET",
        "main.localhost",
        "/assets/logo.png",
        &[("Accept-Encoding", "br, gzip")],
    );
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
}

#[test]
fn not_found_dotfiles_and_site_headers() {
    let root = root();
    let s = Server::start(root.path());
    let r = s.get("main.localhost", "/missing");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>Not here</h1>");
    for path in ["/.env", "/.git/config", "/site.toml", "/../site.toml"] {
        let r = s.get("main.localhost", path);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(
            !r.text().contains("SECRET")
                && !r.text().contains("[core]")
                && !r.text().contains("hosts")
        );
    }
    assert_eq!(
        s.get("main.localhost", "/.well-known/security.txt").text(),
        "Contact: a@b.c"
    );
    assert_eq!(
        s.get("main.localhost", "/assets/site.css")
            .header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        s.get("main.localhost", "/about").header("cache-control"),
        None
    );
    // A site without a 404.html gets a plain one.
    assert_eq!(s.get("other.localhost", "/nope").status, 404);
}

#[test]
fn hosts_route_to_sites() {
    let root = root();
    let s = Server::start(root.path());
    assert_eq!(s.get("other.localhost", "/").text(), "<p>other site</p>");
    assert_eq!(
        s.get("OTHER.localhost:8080", "/").text(),
        "<p>other site</p>"
    );
    assert_eq!(s.get("other.localhost.", "/").text(), "<p>other site</p>");
    assert_eq!(s.get("deep.sub.wild.test", "/").text(), page(100));
    // Unknown hosts go to the default site.
    assert_eq!(s.get("unknown.example", "/").text(), page(100));
}

#[test]
fn unknown_host_without_default_is_404() {
    let root = Root::new();
    root.site("only", &["only.localhost"], false)
        .write("sites/only/public/index.html", "only");
    let s = Server::start(root.path());
    assert_eq!(s.get("only.localhost", "/").text(), "only");
    let r = s.get("elsewhere.localhost", "/");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no site"));
}

#[test]
fn a_moved_access_log_file_is_opened_again_at_its_path() {
    let root = root();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\naccess_log = \"access.log\"\n",
    );
    let s = Server::start(root.path());
    let log = root.path().join("access.log");
    let has = |file: &std::path::Path, path: &str| {
        std::fs::read_to_string(file).is_ok_and(|t| t.contains(&format!("\"path\":\"{path}\"")))
    };
    let wait = std::time::Duration::from_secs(5);
    s.get("main.localhost", "/about");
    assert!(common::eventually(wait, || has(&log, "/about")));
    // As logrotate does: the file is moved, and the server goes on.
    let rotated = root.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    assert!(common::eventually(wait, || {
        s.get("main.localhost", "/after");
        has(&log, "/after")
    }));
    assert!(has(&rotated, "/about"));
    assert!(!has(&log, "/about"));
}

#[test]
fn access_log_is_one_json_line_per_request() {
    let root = root();
    let s = Server::start(root.path());
    s.get("main.localhost", "/about");
    assert!(common::eventually(
        std::time::Duration::from_secs(5),
        || {
            s.stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("\"path\":\"/about\""))
        }
    ));
    let line = s
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("\"path\":\"/about\""))
        .unwrap()
        .clone();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["site"], "main");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], page(5).len());
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["version"], 1);
    for key in ["time", "micros", "country", "rules", "variant"] {
        assert!(v.get(key).is_some(), "{key} missing in {line}");
    }
}
