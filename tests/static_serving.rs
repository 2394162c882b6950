//! Static serving: index and clean URLs, content types, validators, ranges,
//! encodings, not-found pages, site headers and hosts in-process over the
//! fixture tests/fixtures/static; over real HTTP what needs a server: HEAD
//! and other methods on the wire, hosts and paths as sent (a URL would
//! normalize them), large files by sendfile and pipelined, clients
//! resetting mid-body, access logs.

mod common;
use common::{fixture, InProcess, Response, Root, Server};

/// A file of the fixture's main site, as it is served.
fn file(rel: &str) -> Vec<u8> {
    std::fs::read(fixture("static").join("sites/main/public").join(rel)).unwrap()
}

/// A copy of the fixture to serve (the server may write into its root).
fn root() -> Root {
    Root::copy_of(&fixture("static"))
}

fn in_process() -> InProcess {
    InProcess::load(&fixture("static"))
}

/// GET `path` on the main site, in-process.
fn get(app: &InProcess, path: &str, headers: &[(&str, &str)]) -> Response {
    app.get(&format!("http://main.localhost{path}"), headers)
}

#[test]
fn serves_index_clean_urls_and_directory_redirects() {
    let app = in_process();
    let r = get(&app, "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, file("index.html"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get(&app, "/about", &[]).body, file("about.html"));
    assert_eq!(get(&app, "/about.html", &[]).body, file("about.html"));
    assert_eq!(get(&app, "/docs/", &[]).text(), "<p>docs</p>");
    let r = get(&app, "/docs?x=1", &[]);
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    assert_eq!(
        get(&app, "/assets/site.css", &[]).header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        get(&app, "/assets/logo.png", &[]).header("content-type"),
        Some("image/png")
    );
    assert_eq!(
        get(&app, "/data.json", &[]).header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

/// HEAD's empty body and the 405s as the connection frames them.
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
    let app = in_process();
    let r = get(&app, "/about", &[]);
    let etag = r.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    let last_modified = r.header("last-modified").unwrap().to_string();

    let r = get(&app, "/about", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(&app, "/about", &[("If-None-Match", "\"other\", W/")]);
    assert_eq!(r.status, 200);
    let r = get(&app, "/about", &[("If-Modified-Since", &last_modified)]);
    assert_eq!(r.status, 304);
    let r = get(
        &app,
        "/about",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = get(
        &app,
        "/about",
        &[
            ("If-None-Match", "\"nope\""),
            ("If-Modified-Since", &last_modified),
        ],
    );
    assert_eq!(r.status, 200);
    // The tag of the compressed copy revalidates a plain request too.
    let br = get(&app, "/", &[("Accept-Encoding", "br")]);
    let br_tag = br.header("etag").unwrap().to_string();
    assert_ne!(br_tag, get(&app, "/", &[]).header("etag").unwrap());
    assert_eq!(get(&app, "/", &[("If-None-Match", &br_tag)]).status, 304);
}

#[test]
fn single_ranges() {
    let app = in_process();
    let full = file("about.html");
    let r = get(&app, "/about", &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()).as_str())
    );
    let r = get(
        &app,
        "/about",
        &[("Range", "bytes=-5"), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full[full.len() - 5..]);
    assert_eq!(r.header("content-encoding"), None);
    let r = get(
        &app,
        "/about",
        &[("Range", &format!("bytes={}-", full.len()))],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", full.len()).as_str())
    );
    // A stale If-Range gets the whole file.
    let r = get(
        &app,
        "/about",
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
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

#[test]
fn large_files_are_sent_whole_in_ranges_and_pipelined_by_sendfile() {
    let root = root();
    let big = noise(3 << 20, 7);
    let css = "body { color: red; }\n".repeat(10_000);
    root.write_bytes("sites/main/public/big.bin", &big)
        .write("sites/main/public/assets/large.css", &css);
    let s = Server::start(root.path());
    let before = s.metric("outpost_sendfile_bytes_total");

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
    assert!(second.as_bytes().ends_with(&file("about.html")), "{second}");

    // The large bodies went out by sendfile (the small page did not need to),
    // all but maybe a tail under 64 KiB that a partial send left, per body.
    let sent = s.metric("outpost_sendfile_bytes_total") - before;
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
    assert_eq!(s.get("main.localhost", "/about").body, file("about.html"));
}

#[test]
fn precompressed_copies_follow_accept_encoding() {
    let app = in_process();
    let plain = get(&app, "/", &[]);
    assert_eq!(plain.body, file("index.html"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let br = get(&app, "/", &[("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut br.body.as_slice(), &mut out).unwrap();
    assert_eq!(out, plain.body);

    let gz = get(&app, "/", &[("Accept-Encoding", "gzip;q=1, br;q=0")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), plain.body);
    assert!(gz.body.len() < plain.body.len() / 3);

    // Images are not compressed, and do not vary.
    let png = get(&app, "/assets/logo.png", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
}

#[test]
fn not_found_dotfiles_and_site_headers() {
    // Git keeps no .git folder in a fixture: that one is added to a copy.
    let root = root();
    root.write("sites/main/public/.git/config", "[core]");
    let app = InProcess::load(root.path());
    let r = get(&app, "/missing", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>Not here</h1>");
    for path in ["/.env", "/.git/config", "/site.toml"] {
        let r = get(&app, path, &[]);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(
            !r.text().contains("SECRET")
                && !r.text().contains("[core]")
                && !r.text().contains("hosts")
        );
    }
    assert_eq!(
        get(&app, "/.well-known/security.txt", &[]).text(),
        "Contact: a@b.c"
    );
    assert_eq!(
        get(&app, "/assets/site.css", &[]).header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(get(&app, "/about", &[]).header("cache-control"), None);
    // A site without a 404.html gets a plain one.
    assert_eq!(app.get("http://other.localhost/nope", &[]).status, 404);
}

#[test]
fn hosts_route_to_sites() {
    let app = in_process();
    let text = |url: &str| app.get(url, &[]).body;
    assert_eq!(text("http://other.localhost/"), b"<p>other site</p>");
    assert_eq!(text("http://other.localhost./"), b"<p>other site</p>");
    assert_eq!(text("http://deep.sub.wild.test/"), file("index.html"));
    // Unknown hosts go to the default site.
    assert_eq!(text("http://unknown.example/"), file("index.html"));
}

/// What a URL would normalize before the pipeline sees it: a host in
/// capitals with a port, a path climbing out of the site.
#[test]
fn hosts_and_paths_are_read_as_sent() {
    let root = root();
    let s = Server::start(root.path());
    assert_eq!(
        s.get("OTHER.localhost:8080", "/").text(),
        "<p>other site</p>"
    );
    let r = s.get("main.localhost", "/../site.toml");
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
    assert!(
        !r.text().contains("SECRET") && !r.text().contains("[core]") && !r.text().contains("hosts"),
        "{}",
        r.text()
    );
}

#[test]
fn unknown_host_without_default_is_404() {
    let root = Root::new();
    root.site("only", &["only.localhost"], false)
        .write("sites/only/public/index.html", "only");
    let app = InProcess::load(root.path());
    assert_eq!(app.get("http://only.localhost/", &[]).text(), "only");
    let r = app.get("http://elsewhere.localhost/", &[]);
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
    assert_eq!(v["bytes"], file("about.html").len());
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["version"], 1);
    for key in ["time", "micros", "country", "rules", "variant"] {
        assert!(v.get(key).is_some(), "{key} missing in {line}");
    }
}
