//! The store: versions kept and rolled back, a crash mid-ingest, a damaged or
//! missing store file, and a quick restart over a warm store.

mod common;
use std::path::Path;
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

/// Content that takes a while to compress, so a kill lands mid-ingest.
fn heavy_site(root: &Root, tag: &str) {
    for i in 0..150 {
        let text: String = (0..4000)
            .map(|j| format!("{tag} {} ", (i * 7919 + j * 104729) % 100003))
            .collect();
        root.write(&format!("sites/main/public/p{i}.html"), &text);
    }
}

fn served_tags(store_path: &Path) -> Vec<String> {
    let store = Store::open(store_path).unwrap();
    let (site, number) = store
        .current_versions()
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let version = store.load_version(&site, number).unwrap();
    let mut tags: Vec<String> = version
        .files()
        .map(|(_, f)| String::from_utf8_lossy(&f.identity()[..4]).into_owned())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[test]
fn a_kill_during_ingest_leaves_a_complete_version() {
    let root = Root::new();
    site(&root);
    heavy_site(&root, "AAAA");
    drop(Server::start(root.path()));
    assert_eq!(served_tags(&root.join("cache/outpost.redb")), vec!["AAAA"]);

    heavy_site(&root, "BBBB");
    let mut s = Server::spawn(root.path(), &mut common::outpost());
    s.wait_for_log("reading changed files", Duration::from_secs(30));
    s.kill(); // SIGKILL, mid-ingest
              // The store opens and holds one whole version: all old or all new.
    let tags = served_tags(&root.join("cache/outpost.redb"));
    assert_eq!(tags.len(), 1, "mixed version: {tags:?}");

    let s = Server::start(root.path());
    assert!(s.get("main.localhost", "/p0").text().starts_with("BBBB"));
    assert!(s.get("main.localhost", "/p149").text().starts_with("BBBB"));
}

#[test]
fn a_damaged_store_is_rebuilt_with_a_warning() {
    let root = Root::new();
    site(&root);
    root.write("sites/main/public/index.html", "home");
    root.write_bytes("cache/outpost.redb", &vec![0xA5; 64 * 1024]);
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "home");
    s.wait_for_log("rebuilding it from sites/", Duration::from_secs(1));
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
    assert!(eventually(Duration::from_secs(1), || s
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
    s.wait_for_log("stored body damaged", Duration::from_secs(1));
    let metrics = s.admin("GET", "/metrics", &[]).text();
    assert!(
        metrics.contains("outpost_store_damaged_bodies_total 1"),
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
    assert!(
        !metrics.contains("outpost_store_damaged_bodies_total 0"),
        "{metrics}"
    );
    assert!(!pack_files().is_empty());
}
