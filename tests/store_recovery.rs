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
