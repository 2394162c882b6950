//! The fleet: Debian's nats-server with JetStream and three outpost boxes on
//! loopback. Publish reaches every box, rollback too; without NATS the boxes
//! keep serving, and a publish made while they were cut off arrives when
//! NATS is back, and a box that was down catches up. A corrupt file or
//! pack is refused.

mod common;
#[path = "common/nats.rs"]
mod nats;
use std::time::Duration;

use common::{eventually, run, run_on, Root, Server};
use nats::{free_port, with_jetstream, Nats};

fn publish(source: &Root, nats: &Nats) -> String {
    let out = run_on(source.path(), &["publish", "main", "--fleet", &nats.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn boxes(nats: &Nats) -> Vec<(Root, Server)> {
    (0..3)
        .map(|i| {
            let root = Root::new();
            std::fs::create_dir_all(root.join("sites")).unwrap();
            let s = Server::start_serving_with(
                root.path(),
                &["--fleet", &nats.url(), "--box-id", &format!("box{i}")],
            );
            (root, s)
        })
        .collect()
}

fn all_serve(boxes: &[(Root, Server)], text: &str) -> bool {
    eventually(Duration::from_secs(10), || {
        boxes
            .iter()
            .all(|(_, s)| s.get("main.localhost", "/").text() == text)
    })
}

#[test]
fn publish_rollback_and_a_network_split() {
    let js = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(js.path(), free_port());
    let source = Root::new();
    source
        .site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "v1")
        .write("sites/main/public/about.html", "about")
        .write(
            "rules/h.toml",
            "[[rule]]\nname = \"h\"\naction = \"headers\"\nset = { X-Fleet = \"yes\" }\n",
        );
    let boxes = boxes(&nats);
    let report = publish(&source, &nats);
    assert!(report.contains("main: version"), "{report}");
    assert!(all_serve(&boxes, "v1"));
    assert!(
        boxes
            .iter()
            .all(|(_, s)| s.get("main.localhost", "/about").header("x-fleet") == Some("yes")),
        "rules travel too"
    );

    source.write("sites/main/public/index.html", "v2");
    let report = publish(&source, &nats);
    assert!(
        report.contains("(1 of 2 files new to the fleet)"),
        "only what changed is uploaded: {report}"
    );
    assert!(all_serve(&boxes, "v2"));

    let out = run(&["rollback", "main", "--fleet", &nats.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all_serve(&boxes, "v1"));

    let out = run(&["fleet", "status", "--fleet", &nats.url()]);
    let status = String::from_utf8_lossy(&out.stdout);
    for i in 0..3 {
        assert!(status.contains(&format!("box{i}")), "{status}");
    }

    // NATS goes away: every box keeps serving.
    nats.stop();
    for (_, s) in &boxes {
        assert_eq!(s.get("main.localhost", "/").text(), "v1");
    }
    // It comes back; a publish made then arrives everywhere.
    nats.restart();
    source.write("sites/main/public/index.html", "v3");
    publish(&source, &nats);
    assert!(all_serve(&boxes, "v3"));
}

/// NATS, a source root whose site `main` says `text`, published, and three
/// boxes serving it.
fn serving(text: &str) -> (tempfile::TempDir, Nats, Root, Vec<(Root, Server)>) {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let source = Root::new();
    source
        .site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", text);
    let boxes = boxes(&nats);
    publish(&source, &nats);
    assert!(all_serve(&boxes, text));
    (js, nats, source, boxes)
}

/// Runs `f` against the fleet's JetStream.
/// Overwrites the object `name` in the fleet's file store with `bytes`.
fn tamper(nats: &Nats, name: &str, bytes: &[u8]) {
    with_jetstream(nats, async |js| {
        let files = js.get_object_store("outpost-files").await.unwrap();
        files.put(name, &mut &bytes[..]).await.unwrap();
    });
}

/// The pack holding `path` in the latest manifest of site `main`.
fn pack_of(nats: &Nats, path: &str) -> String {
    with_jetstream(nats, async |js| {
        let sites = js.get_key_value("outpost-sites").await.unwrap();
        let raw = sites.get("main").await.unwrap().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let files = manifest["files"].as_array().unwrap();
        let file = files.iter().find(|f| f["path"] == path).unwrap();
        file["pack"].as_str().unwrap().to_string()
    })
}

/// Starts the boxes again over their roots (stores and sites kept).
fn restart(nats: &Nats, roots: Vec<Root>) -> Vec<(Root, Server)> {
    roots
        .into_iter()
        .enumerate()
        .map(|(i, root)| {
            let s = Server::start_serving_with(
                root.path(),
                &["--fleet", &nats.url(), "--box-id", &format!("box{i}")],
            );
            (root, s)
        })
        .collect()
}

/// Every box refuses the latest version, keeps serving `kept`, and reports
/// `why` in `fleet status`.
fn all_refuse(boxes: &[(Root, Server)], nats: &Nats, kept: &str, why: &str) {
    for (_, s) in boxes {
        s.wait_for_log(
            "published version refused; keeping the current one",
            Duration::from_secs(10),
        );
        assert_eq!(s.get("main.localhost", "/").text(), kept);
    }
    let out = run(&["fleet", "status", "--fleet", &nats.url()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(why));
}

#[test]
fn a_corrupt_pack_is_refused_and_the_box_keeps_its_version() {
    let (_js, nats, source, boxes) = serving("good");

    // The boxes are down while the next version is published and its pack
    // is damaged; they catch up when they come back.
    let roots: Vec<Root> = boxes.into_iter().map(|(root, _)| root).collect();
    source.write("sites/main/public/index.html", "next version");
    publish(&source, &nats);
    tamper(&nats, &pack_of(&nats, "index.html"), b"damaged");
    let boxes = restart(&nats, roots);
    all_refuse(&boxes, &nats, "good", "does not match its hash");
}

#[test]
fn a_corrupt_older_pack_is_refused_and_the_box_keeps_its_version() {
    let (_js, nats, source, boxes) = serving("good");

    // The boxes are down for two versions: the second's manifest sends them
    // to the first's pack for the home page, and that pack is damaged.
    let roots: Vec<Root> = boxes.into_iter().map(|(root, _)| root).collect();
    source.write("sites/main/public/index.html", "next version");
    publish(&source, &nats);
    let first = pack_of(&nats, "index.html");
    source.write("sites/main/public/about.html", "about");
    publish(&source, &nats);
    assert_eq!(pack_of(&nats, "index.html"), first);
    assert_ne!(pack_of(&nats, "about.html"), first);
    tamper(&nats, &first, b"damaged");
    let boxes = restart(&nats, roots);
    all_refuse(&boxes, &nats, "good", "does not match its hash");
}

#[test]
fn a_box_that_was_down_catches_up_with_what_was_published_meanwhile() {
    let (_js, nats, source, boxes) = serving("v1");

    // Each version brings a file of its own, so the boxes need both packs.
    let roots: Vec<Root> = boxes.into_iter().map(|(root, _)| root).collect();
    source.write("sites/main/public/about.html", "about v2");
    publish(&source, &nats);
    source.write("sites/main/public/index.html", "v3");
    publish(&source, &nats);
    let boxes = restart(&nats, roots);
    assert!(all_serve(&boxes, "v3"));
    for (_, s) in &boxes {
        assert_eq!(s.get("main.localhost", "/about.html").text(), "about v2");
    }
}
