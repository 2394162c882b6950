//! The store: versions kept and rolled back, kills mid-ingest, a damaged or
//! missing store file, a quick restart over a warm store, what a large
//! file costs in memory, and a slow reader of a file replaced meanwhile.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::time::Duration;

use common::{eventually, Root, Server};
use outpost::live::Live;
use outpost::store::Store;

fn site(root: &Root) {
    root.site("main", &["main.localhost"], true);
}

#[test]
fn five_versions_are_kept_and_rollback_switches_back() {
    let root = Root::new();
    site(&root);
    let store = Store::open(&root.join("cache/outpost.redb")).unwrap();
    let live = Live::from_store(store, root.path().to_path_buf()).unwrap();
    for n in 1..=7 {
        root.write("sites/main/public/index.html", &format!("v{n}"));
        // Same size, same second: the content hash still tells them apart
        // because the scan compares nanosecond mtimes.
        live.refresh("main").unwrap();
    }
    let store = live.store();
    assert_eq!(store.versions("main").unwrap(), vec![3, 4, 5, 6, 7]);
    let served = |live: &Live| {
        let sites = live.sites();
        let v = sites.get("main").unwrap();
        let f = v.file("index.html").unwrap();
        (v.number, String::from_utf8(f.identity().to_vec()).unwrap())
    };
    assert_eq!(served(&live), (7, "v7".into()));
    assert_eq!(live.rollback("main").unwrap(), 6);
    assert_eq!(served(&live), (6, "v6".into()));
    // The folder still holds v7; a rescan does not undo the rollback.
    live.refresh("main").unwrap();
    assert_eq!(served(&live).0, 6);
    for expected in [5, 4, 3] {
        assert_eq!(live.rollback("main").unwrap(), expected);
    }
    assert!(
        live.rollback("main").is_err(),
        "no version older than 3 is kept"
    );
    assert_eq!(served(&live), (3, "v3".into()));
    // A change on disk makes a new version on top.
    root.write("sites/main/public/index.html", "v8");
    live.refresh("main").unwrap();
    assert_eq!(served(&live), (8, "v8".into()));
}

#[test]
fn a_damaged_store_is_rebuilt_with_a_warning() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    root.write_bytes("cache/outpost.redb", &vec![0xA5; 64 * 1024]);
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    s.wait_for_log("rebuilding it from sites/", Duration::from_secs(10));
}

fn status(s: &Server) -> serde_json::Value {
    serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap()
}

/// Truncated at several lengths, a block zeroed or garbled where a page is
/// listed, a garbage header: redb panics on most of these, or would read
/// the damaged bytes. Each start sets the file aside, rebuilds the store
/// from sites/ and serves the pages as they are on disk.
#[test]
fn every_kind_of_store_damage_is_set_aside_and_rebuilt() {
    let root = Root::new();
    site(&root);
    let page = |i: usize| -> String {
        (0..2000)
            .map(|j| format!("{} ", (i * 7919 + j * 104729) % 100003))
            .collect()
    };
    for i in 0..20 {
        root.write(&format!("sites/main/public/p{i}.html"), &page(i));
    }
    let path = root.join("cache/outpost.redb");
    let live = Live::from_store(Store::open(&path).unwrap(), root.path().to_path_buf()).unwrap();
    live.refresh("main").unwrap();
    live.store().close();
    drop(live);
    let good = std::fs::read(&path).unwrap();
    let len = good.len();
    // The 4 KiB block holding a page's entry in the version's manifest
    // (bodies are in pack files, beside the store).
    let block_of = |i: usize| {
        let needle = format!("\"path\":\"p{i}.html\"");
        let at = good
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap();
        at / 4096 * 4096
    };
    let mut damaged: Vec<(String, Vec<u8>)> = [4096, len / 3, len / 2, len - 4096]
        .into_iter()
        .map(|cut| (format!("truncated to {cut} bytes"), good[..cut].to_vec()))
        .collect();
    let mut zeroed = good.clone();
    let at = block_of(3);
    zeroed[at..at + 4096].fill(0);
    damaged.push((format!("block at {at} zeroed"), zeroed));
    let mut garbled = good.clone();
    let at = block_of(11);
    for (k, b) in garbled[at..at + 4096].iter_mut().enumerate() {
        *b = (k * 31 % 251) as u8;
    }
    damaged.push((format!("block at {at} garbled"), garbled));
    let mut header = good.clone();
    header[..512].fill(0x5A);
    damaged.push(("garbage header".into(), header));

    for (damage, bytes) in damaged {
        std::fs::write(&path, &bytes).unwrap();
        let _ = std::fs::remove_file(root.join("cache/outpost.redb.damaged"));
        let s = Server::start(root.path());
        for i in [0, 3, 11, 19] {
            let r = s.get("main.localhost", &format!("/p{i}"));
            assert_eq!((r.status, r.text()), (200, page(i)), "{damage}: /p{i}");
        }
        s.wait_for_log(
            "store unreadable; rebuilding it from sites/",
            Duration::from_secs(5),
        );
        assert_eq!(
            s.log_count("thread '"),
            0,
            "{damage}: a bare panic in the log"
        );
        // Not byte for byte: opening it, redb marks the file as in use.
        assert!(
            root.join("cache/outpost.redb.damaged").exists(),
            "{damage}: not set aside"
        );
        let store = &status(&s)["store"];
        assert!(
            store["rebuilt"].as_str().unwrap().contains("set aside"),
            "{damage}: {store}"
        );
        assert!(store["problem"].is_null(), "{damage}: {store}");
    }
}

/// Deleting cache/ under a running server: the store is made again from
/// the one still open (versions and a rollback kept), pages go on being
/// served and changing, and the next start serves from the new store.
#[test]
fn a_store_deleted_while_running_is_made_again() {
    let root = Root::new();
    site(&root);
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"t\"\n",
    );
    root.write("sites/main/public/index.html", "v1");
    root.write("sites/main/public/other.html", "other");
    let mut s = Server::start(root.path());
    root.write("sites/main/public/index.html", "v2");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/")
        .text()
        == "v2"));
    let rollback = s.admin(
        "POST",
        "/sites/main/rollback",
        &[("Authorization", "Bearer t")],
    );
    assert_eq!(rollback.status, 200);
    assert_eq!(s.get("main.localhost", "/").text(), "v1");

    std::fs::remove_dir_all(root.join("cache")).unwrap();
    s.wait_for_log("store made again", Duration::from_secs(10));
    assert!(root.join("cache/outpost.redb").exists());
    assert!(s.log_count("deleted or replaced while running") > 0);
    let status = status(&s);
    assert!(
        status["store"]["rebuilt"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{status}"
    );
    assert_eq!(status["sites"][0]["version"], 1, "still rolled back");
    assert_eq!(status["sites"][0]["versions"], serde_json::json!([1, 2]));
    assert_eq!(s.get("main.localhost", "/").text(), "v1");

    root.write("sites/main/public/other.html", "other, changed");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/other")
        .text()
        == "other, changed"));
    assert!(s.terminate().success());

    let s = Server::spawn(root.path(), &mut common::outpost());
    // Served straight from the new store, which has every file's scan.
    s.wait_for_log("sites=1", Duration::from_secs(5));
    assert_eq!(s.get("main.localhost", "/").text(), "v2");
    assert_eq!(s.get("main.localhost", "/other").text(), "other, changed");
    s.wait_for_log("sites scanned", Duration::from_secs(10));
    assert_eq!(s.log_count("reading changed files"), 0);
    assert_eq!(s.log_count("rebuilding"), 0);
}

/// When the store cannot be made again (here a file stands where cache/
/// was), changes are still served, /status says so, and the store is made
/// once that is put right.
#[test]
fn a_store_that_cannot_be_made_again_shows_in_status_until_it_can() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "v1");
    let s = Server::start(root.path());
    std::fs::remove_dir_all(root.join("cache")).unwrap();
    root.write("cache", "not a folder");
    let problem = || status(&s)["store"]["problem"].as_str().map(str::to_string);
    assert!(eventually(Duration::from_secs(10), || problem()
        .is_some_and(|p| p.contains("cannot make the store again"))));
    root.write("sites/main/public/index.html", "v2");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/")
        .text()
        == "v2"));
    assert_eq!(s.log_count("cannot make the store again"), 1, "logged once");
    std::fs::remove_file(root.join("cache")).unwrap();
    assert!(eventually(Duration::from_secs(10), || problem().is_none()));
    s.wait_for_log("store made again", Duration::from_secs(10));
    assert!(root.join("cache/outpost.redb").exists());
}

/// `outpost stats` only reads the store: on a damaged one it says so,
/// without a bare panic, and leaves the file as it is.
#[test]
fn stats_on_a_truncated_store_says_it_is_damaged() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    drop(Server::start(root.path()));
    let path = root.join("cache/outpost.redb");
    let truncated = std::fs::read(&path).unwrap()[..8192].to_vec();
    std::fs::write(&path, &truncated).unwrap();
    let out = common::run_on(root.path(), &["stats"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(!stderr.contains("thread '"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), truncated);
}

#[test]
fn a_missing_store_is_created() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    std::fs::write(
        root.join("outpost.toml"),
        "admin_listen = \"127.0.0.1:0\"\nstore = \"deep/new/dir/s.redb\"\n",
    )
    .unwrap();
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    assert!(root.join("deep/new/dir/s.redb").exists());
}

#[test]
fn a_warm_restart_serves_from_the_store_before_scanning() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    drop(Server::start(root.path()));
    let s = Server::spawn(root.path(), &mut common::outpost());
    // Served straight from the store: the log shows the site was there at
    // start, and nothing needed reading again.
    s.wait_for_log("sites=1", Duration::from_secs(5));
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    s.wait_for_log("sites scanned", Duration::from_secs(5));
    assert_eq!(s.log_count("reading changed files"), 0);
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/")
        .status
        == 200));
}

/// The bodies in cache/'s packs, damaged two ways: bytes changed in place
/// while running (found when first sent: a 503, never the changed bytes
/// with a 200) and a pack deleted while stopped (found at start). Each time
/// the files are read again from sites/ and served whole, and the damage is
/// counted.
#[test]
fn damaged_or_missing_packs_are_read_again_from_sites() {
    let root = Root::new();
    site(&root);
    let page: String = (0..4000)
        .map(|i| format!("{} ", i * 7919 % 10007))
        .collect();
    root.write("sites/main/public/page.html", &page);
    root.write("sites/main/public/other.txt", "other");
    let s = Server::start(root.path());
    let packs = root.join("cache/outpost.packs");
    let pack_files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&packs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    assert_eq!(pack_files().len(), 1);
    let pack = pack_files().remove(0);
    let bytes = std::fs::read(&pack).unwrap();
    let needle = &page.as_bytes()[100..200];
    let at = bytes.windows(100).position(|w| w == needle).unwrap();
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    assert!(perms.readonly(), "packs are read-only once written");
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).unwrap();
    // Changed in place, as disk damage would: same length.
    let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"XXXXX", at as u64).unwrap();
    drop(file);

    let identity = [("accept-encoding", "identity")];
    let first = s.request("GET", "main.localhost", "/page.html", &identity);
    assert_eq!(first.status, 503, "the damaged body is not sent");
    assert_eq!(first.header("retry-after"), Some("1"));
    assert!(eventually(Duration::from_secs(10), || {
        let r = s.request("GET", "main.localhost", "/page.html", &identity);
        r.status == 200 && r.text() == page
    }));
    s.wait_for_log("stored body damaged", Duration::from_secs(10));
    let metrics = s.admin("GET", "/metrics", &[]).text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "outpost_store_damaged_bodies_total 1"),
        "{metrics}"
    );
    drop(s);

    // Every pack deleted while stopped: found at start, read again.
    for pack in pack_files() {
        std::fs::remove_file(pack).unwrap();
    }
    let s = Server::start(root.path());
    s.wait_for_log("stored bodies missing from cache/", Duration::from_secs(5));
    assert!(eventually(Duration::from_secs(10), || {
        s.get("main.localhost", "/page.html").text() == page
            && s.get("main.localhost", "/other.txt").text() == "other"
    }));
    let metrics = s.admin("GET", "/metrics", &[]).text();
    // Both files' bodies, each counted once.
    assert!(
        metrics
            .lines()
            .any(|l| l == "outpost_store_damaged_bodies_total 2"),
        "{metrics}"
    );
    assert!(!pack_files().is_empty());
}

// Crash safety and memory, seen only from outside (HTTP, the access log,
// /status, /proc), so they hold whatever the store keeps inside.

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ren", "tas", "vor", "ul", "pe", "dri", "son", "ab", "el", "qui", "nor",
    "fe", "ga", "hu", "ist", "jo", "mar", "bel", "cu", "dan", "ot",
];

/// `len` bytes of made-up prose: it compresses about as pages do, so
/// compressing it is real work.
fn prose(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        for _ in 0..rng.usize(1..4) {
            out.extend_from_slice(SYLLABLES[rng.usize(..SYLLABLES.len())].as_bytes());
        }
        out.push(if rng.u8(..12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn seeded(what: &str) -> fastrand::Rng {
    let hash = blake3::hash(what.as_bytes());
    fastrand::Rng::with_seed(u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap()))
}

const SITES: [(&str, &str); 2] = [("main", "main.localhost"), ("docs", "docs.localhost")];
const PAGES: usize = 200;

/// A site's pages: name (served at `/{name}`) to body.
type Pages = BTreeMap<String, Vec<u8>>;

/// One generation of both sites, their pages in [`SITES`] order. Every
/// page changes from one generation to the next, a sixteenth of them is
/// left out in turn, and four pages exist in this one only.
fn generation(gen: u32) -> Vec<Pages> {
    let names: Vec<String> = (0..PAGES)
        .filter(|i| !(i + gen as usize).is_multiple_of(16))
        .map(|i| format!("p{i}"))
        .chain((0..4).map(|j| format!("new/g{gen}-{j}")))
        .collect();
    SITES
        .iter()
        .map(|(site, _)| {
            names
                .iter()
                .map(|name| {
                    let mut rng = seeded(&format!("{site} {gen} {name}"));
                    let mut body = format!(
                        "<!doctype html><title>{site} {name}, generation {gen}</title>\n<p>"
                    )
                    .into_bytes();
                    let len = rng.usize(2_000..5_000);
                    body.extend(prose(&mut rng, len));
                    (name.clone(), body)
                })
                .collect()
        })
        .collect()
}

/// Publishes `pages` as generation `gen` the way docs/operations.md
/// advises: written outside public/, then one rename of the `public`
/// symlink, so no scan ever sees half of it.
fn publish(root: &Root, gen: u32, pages: &[Pages]) {
    for ((site, _), pages) in SITES.iter().zip(pages) {
        let dir = root.join(&format!("sites/{site}"));
        for (name, body) in pages {
            root.write_bytes(&format!("sites/{site}/releases/g{gen}/{name}.html"), body);
        }
        let public = dir.join("public");
        if public.is_symlink() {
            let before = gen
                .checked_sub(2)
                .map(|g| dir.join(format!("releases/g{g}")));
            if let Some(before) = before {
                std::fs::remove_dir_all(before).unwrap();
            }
        } else {
            std::fs::remove_dir(&public).unwrap();
        }
        std::os::unix::fs::symlink(format!("releases/g{gen}"), dir.join("public.new")).unwrap();
        std::fs::rename(dir.join("public.new"), public).unwrap();
    }
}

/// A body as sent, decoded; `Err` says why it cannot be.
fn decoded(r: &common::Response) -> Result<Vec<u8>, String> {
    if let Some(len) = r.header("content-length") {
        if len != r.body.len().to_string() {
            return Err(format!("Content-Length {len}, {} bytes sent", r.body.len()));
        }
    }
    let mut out = Vec::new();
    let read = match r.header("content-encoding") {
        None => return Ok(r.body.clone()),
        Some("gzip") => flate2::read::GzDecoder::new(&r.body[..]).read_to_end(&mut out),
        Some("br") => brotli::Decompressor::new(&r.body[..], 4096).read_to_end(&mut out),
        Some(other) => return Err(format!("unasked encoding {other}")),
    };
    read.map(|_| out).map_err(|e| format!("undecodable: {e}"))
}

/// Which generation each (site, version) served, as narrowed by every
/// answer seen from one server.
type Served = BTreeMap<(&'static str, u64), BTreeSet<u32>>;

/// GETs every page that any of `gens` has, from every site, in identity,
/// gzip and brotli in turn. Each answer must be byte for byte one of
/// `gens` (the page, or a 404 or 503 where that generation has no such page), and
/// all answers that the access log ties to one version of a site must fit
/// one and the same generation. Returns, per site, the versions that
/// served this pass.
fn check_pass(s: &Server, gens: &[(u32, &[Pages])], served: &mut Served) -> Vec<BTreeSet<u64>> {
    let logged = || -> Vec<serde_json::Value> {
        s.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let log_before = logged().len();
    let mut asked = Vec::new();
    for (k, (site, host)) in SITES.iter().enumerate() {
        let names: BTreeSet<&String> = gens.iter().flat_map(|(_, g)| g[k].keys()).collect();
        for (n, name) in names.into_iter().enumerate() {
            let encoding = ["identity", "gzip", "br"][n % 3];
            let path = format!("/{name}");
            let r = s.request("GET", host, &path, &[("Accept-Encoding", encoding)]);
            let body = decoded(&r);
            let fits: BTreeSet<u32> = gens
                .iter()
                .filter(|(_, g)| match (r.status, &body, g[k].get(name)) {
                    (200, Ok(body), Some(want)) => body == want,
                    // Until its first scan ends, a server says a page it
                    // does not have may be coming (503), not a 404.
                    (404 | 503, _, None) => true,
                    _ => false,
                })
                .map(|(gen, _)| *gen)
                .collect();
            assert!(
                !fits.is_empty(),
                "{site} {path} ({encoding}) is none of generations {:?}: status {}, {}",
                gens.iter().map(|(g, _)| g).collect::<Vec<_>>(),
                r.status,
                match &body {
                    Ok(b) => format!(
                        "{} bytes: {:?}",
                        b.len(),
                        String::from_utf8_lossy(&b[..b.len().min(80)])
                    ),
                    Err(e) => e.clone(),
                }
            );
            asked.push((*site, path, fits));
        }
    }
    // The access log says which version answered each request; it is
    // written in request order, and these requests went one at a time.
    let mut log = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            log = logged();
            log.len() >= log_before + asked.len()
        }),
        "the access log has {} of {} requests",
        log.len() - log_before,
        asked.len()
    );
    let mut versions = vec![BTreeSet::new(); SITES.len()];
    for ((site, path, fits), entry) in asked.into_iter().zip(&log[log_before..]) {
        assert_eq!(
            (entry["site"].as_str(), entry["path"].as_str()),
            (Some(site), Some(path.as_str())),
            "{site} not served: {entry}"
        );
        let version = entry["version"].as_u64().unwrap();
        let gens = served
            .entry((site, version))
            .or_insert_with(|| fits.clone());
        let seen = gens.clone();
        gens.retain(|g| fits.contains(g));
        assert!(
            !gens.is_empty(),
            "{site} version {version} mixes generations: {path} is {fits:?}, earlier pages {seen:?}"
        );
        let k = SITES.iter().position(|(s, _)| *s == site).unwrap();
        versions[k].insert(version);
    }
    versions
}

/// Checks that `s` serves all of generation `gen` from every site, and goes
/// on doing so: a second pass is served by the same versions, which
/// /status reports, with no problem and the store not rebuilt.
fn check_settled(s: &Server, gen: u32, pages: &[Pages], served: &mut Served) {
    let first = check_pass(s, &[(gen, pages)], served);
    let again = check_pass(s, &[(gen, pages)], served);
    assert_eq!(first, again, "versions changed with nothing to ingest");
    let status = status(s);
    assert!(status["store"]["rebuilt"].is_null(), "{status}");
    for ((site, _), versions) in SITES.iter().zip(&first) {
        let row = status["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == *site)
            .unwrap_or_else(|| panic!("{site} not in {status}"));
        assert!(row["problem"].is_null(), "{status}");
        assert_eq!(
            versions.iter().collect::<Vec<_>>(),
            vec![&row["version"].as_u64().unwrap()],
            "{site}: {status}"
        );
    }
}

/// The log's lines for an ingest reading files, and for a new version of
/// a site going live.
const READING: &str = "reading changed files";
const SERVING: &str = "serving new version";

/// Waits for a server's first scan of sites/ to end; returns how long it took.
fn scan_time(s: &Server) -> Duration {
    let line = s.wait_for_log("sites scanned", Duration::from_secs(600));
    let ms = line
        .split_once("ms=")
        .and_then(|(_, ms)| ms.split(' ').next()?.parse().ok());
    Duration::from_millis(ms.unwrap_or_else(|| panic!("no ms= in {line}")))
}

/// SIGKILL lands at a different moment of an ingest of every page of two
/// sites each round (spread over the longest a full ingest took), in
/// turn an ingest at start and one a running server makes when the files
/// change. Each restart at once serves one whole version of each site,
/// older or newer, never a mix, never a truncated or damaged body in any
/// encoding; then it serves the newest files whole and goes on serving
/// them; and the versions kept from before the kills are whole too.
#[test]
fn kills_during_ingest_leave_one_whole_version_of_each_site() {
    let root = Root::new();
    root.write(
        "outpost.toml",
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"t\"\n",
    );
    for (site, host) in SITES {
        root.site(site, &[host], site == "main");
    }
    let mut old = generation(0);
    publish(&root, 0, &old);
    let mut s = Server::spawn(root.path(), &mut common::outpost());
    // The longest full ingest seen so far, which kills are spread over.
    let mut ingest = scan_time(&s);
    check_settled(&s, 0, &old, &mut Served::new());

    let mut mid_ingest = 0;
    let rounds = 8;
    for round in 0..rounds {
        let gen = round + 1;
        let at_start = round % 2 == 0;
        let new = generation(gen);
        let (mut doomed, logged) = if at_start {
            // A kill of an idle server must lose nothing either.
            s.kill();
            publish(&root, gen, &new);
            (Server::spawn(root.path(), &mut common::outpost()), (0, 0))
        } else {
            let logged = (s.log_count(READING), s.log_count(SERVING));
            publish(&root, gen, &new);
            (s, logged)
        };
        // Killing at this moment is the point, not waiting for something.
        let delay = ingest.mul_f64(f64::from(round / 2) * 0.4);
        std::thread::sleep(delay);
        doomed.kill();

        s = Server::spawn(root.path(), &mut common::outpost());
        let mut served = Served::new();
        let versions = check_pass(&s, &[(gen - 1, &old), (gen, &new)], &mut served);
        let at_once: Vec<String> = SITES
            .iter()
            .zip(&versions)
            .map(|((site, _), vs)| {
                let gens: BTreeSet<u32> = vs
                    .iter()
                    .flat_map(|v| served[&(*site, *v)].clone())
                    .collect();
                format!("{site} {vs:?} = generation {gens:?}")
            })
            .collect();
        // Read by now, the log shows whether the kill came mid-ingest: files
        // being read, not every site's new version committed.
        let reading = doomed.log_count(READING) > logged.0;
        let committed = doomed.log_count(SERVING) - logged.1;
        if reading && committed < SITES.len() {
            mid_ingest += 1;
        }
        eprintln!(
            "round {round}: killed {} ms after {} ({}, {committed} of 2 sites committed); at once served {}",
            delay.as_millis(),
            if at_start {
                "start"
            } else {
                "the files changed"
            },
            if reading { "reading" } else { "not reading yet" },
            at_once.join(", ")
        );
        ingest = ingest.max(scan_time(&s));
        check_settled(&s, gen, &new, &mut served);
        old = new;
    }
    // Otherwise the test tested little.
    assert!(mid_ingest > 0, "no kill landed mid-ingest");

    // The store keeps five versions, one per generation: rolled back to in
    // turn, each is one whole generation, the one before.
    let kept: Vec<(u32, Vec<Pages>)> = (rounds - 4..=rounds).map(|g| (g, generation(g))).collect();
    let kept: Vec<(u32, &[Pages])> = kept.iter().map(|(g, p)| (*g, &p[..])).collect();
    for gen in (rounds - 4..rounds).rev() {
        for (site, _) in SITES {
            let path = format!("/sites/{site}/rollback");
            let r = s.admin("POST", &path, &[("Authorization", "Bearer t")]);
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let mut served = Served::new();
        check_pass(&s, &kept, &mut served);
        for ((site, version), gens) in served {
            assert_eq!(
                gens,
                BTreeSet::from([gen]),
                "{site} rolled back to version {version}"
            );
        }
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Writes `size` bytes from `fill` (1 MiB at a time) beside sites/ and
/// moves them into main's public/ at once, as a deploy tool would; returns
/// their hash.
fn drop_file(
    root: &Root,
    name: &str,
    size: usize,
    mut fill: impl FnMut(&mut [u8]),
) -> blake3::Hash {
    let aside = root.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&aside).unwrap());
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0; 1 << 20];
    for _ in 0..size / chunk.len() {
        fill(&mut chunk);
        hasher.update(&chunk);
        out.write_all(&chunk).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&aside, root.join(&format!("sites/main/public/{name}"))).unwrap();
    hasher.finalize()
}

/// Sends a GET for `path` and reads the head: the status, the head, and
/// the stream, at the body's first byte.
fn send_get(s: &Server, path: &str) -> (u16, String, std::io::BufReader<std::net::TcpStream>) {
    let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(reader.read_line(&mut head).unwrap() > 0, "head cut: {head}");
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, reader)
}

/// GETs `path` hashing the body as it arrives, without holding it:
/// status, head, body length and hash.
fn get_hashed(s: &Server, path: &str) -> (u16, String, u64, blake3::Hash) {
    let (status, head, mut reader) = send_get(s, path);
    let mut hasher = blake3::Hasher::new();
    let len = std::io::copy(&mut reader, &mut hasher).unwrap();
    (status, head, len, hasher.finalize())
}

/// Serves a `size`-byte file dropped into public/ of a running server,
/// whole and in a range near its end, and asserts what that cost in
/// memory: the peak resident size (VmHWM) rises by less than 96 MiB, and
/// the anonymous memory (RssAnon) after is within 32 MiB of before.
fn large_file_costs_disk_not_memory(name: &str, size: usize, fill: impl FnMut(&mut [u8])) {
    const MIB: u64 = 1 << 20;
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    let (hwm, anon) = (
        status_kib(s.pid(), "VmHWM") * 1024,
        status_kib(s.pid(), "RssAnon") * 1024,
    );

    let hash = drop_file(&root, name, size, fill);
    let path = format!("/{name}");
    assert!(
        eventually(Duration::from_secs(600), || {
            let r = s.request("HEAD", "main.localhost", &path, &[]);
            r.status == 200 && r.header("content-length") == Some(&size.to_string())
        }),
        "{name} not served"
    );
    let (status, head, len, got) = get_hashed(&s, &path);
    assert_eq!((status, len), (200, size as u64), "{head}");
    assert_eq!(got, hash, "{name} served with other bytes");
    let (from, to) = (size - 3 * MIB as usize - 12_345, size - 1000);
    let r = s.request(
        "GET",
        "main.localhost",
        &path,
        &[("Range", &format!("bytes={from}-{to}"))],
    );
    assert_eq!(r.status, 206);
    let file = std::fs::File::open(root.join(&format!("sites/main/public/{name}"))).unwrap();
    let mut want = vec![0; to - from + 1];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut want, from as u64).unwrap();
    assert!(r.body == want, "range of {name} differs");

    let (hwm_after, anon_after) = (
        status_kib(s.pid(), "VmHWM") * 1024,
        status_kib(s.pid(), "RssAnon") * 1024,
    );
    eprintln!(
        "{name} ({} MiB): VmHWM {} -> {} MiB, RssAnon {} -> {} MiB",
        size as u64 / MIB,
        hwm / MIB,
        hwm_after / MIB,
        anon / MIB,
        anon_after / MIB
    );
    assert!(
        hwm_after.saturating_sub(hwm) < 96 * MIB,
        "{name}: peak RSS rose by {} MiB",
        hwm_after.saturating_sub(hwm) / MIB
    );
    assert!(
        anon_after.abs_diff(anon) < 32 * MIB,
        "{name}: anonymous RSS {} -> {} MiB",
        anon / MIB,
        anon_after / MIB
    );
}

#[test]
fn a_large_random_file_costs_its_size_on_disk_not_memory() {
    large_file_costs_disk_not_memory("big.bin", 256 << 20, random_fill(12));
}

#[test]
fn a_large_text_file_costs_its_size_on_disk_not_memory() {
    let mut rng = fastrand::Rng::with_seed(64);
    large_file_costs_disk_not_memory("big.txt", 64 << 20, |chunk| {
        chunk.copy_from_slice(&prose(&mut rng, chunk.len()))
    });
}

fn random_fill(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut rng = fastrand::Rng::with_seed(seed);
    move |chunk| rng.fill(chunk)
}

/// A client that reads a large body slowly gets the bytes it asked for,
/// whole, though the file was replaced six times meanwhile: its version is
/// no longer kept, and its bytes are garbage to the store.
#[test]
fn a_slow_reader_gets_a_replaced_file_whole() {
    const SIZE: usize = 16 << 20;
    let root = Root::new();
    site(&root);
    let s = Server::start(root.path());
    let etag = || {
        let r = s.request("HEAD", "main.localhost", "/big.bin", &[]);
        (r.status == 200).then(|| r.header("etag").unwrap().to_string())
    };
    let first = drop_file(&root, "big.bin", SIZE, random_fill(0));
    assert!(eventually(Duration::from_secs(600), || etag().is_some()));
    let (status, head, mut slow) = send_get(&s, "/big.bin");
    assert_eq!(status, 200, "{head}");
    let mut hasher = blake3::Hasher::new();
    let mut start = vec![0; 64 << 10];
    slow.read_exact(&mut start).unwrap();
    hasher.update(&start);

    for seed in 1..=6 {
        let before = etag();
        let hash = drop_file(&root, "big.bin", SIZE, random_fill(seed));
        assert!(
            eventually(Duration::from_secs(600), || etag() != before),
            "replacement {seed} not served"
        );
        let (status, head, len, got) = get_hashed(&s, "/big.bin");
        assert_eq!((status, len), (200, SIZE as u64), "{head}");
        assert_eq!(got, hash, "replacement {seed} served with other bytes");
    }
    let rest = std::io::copy(&mut slow, &mut hasher).unwrap();
    assert_eq!(
        start.len() as u64 + rest,
        SIZE as u64,
        "the slow read was cut"
    );
    assert_eq!(hasher.finalize(), first, "the slow read got other bytes");
}
