//! The fleet's figures: three boxes report experiment totals to Debian's
//! nats-server; `outpost stats --fleet` adds them up exactly through box
//! and hub restarts and an outage, two boxes given one id are never mixed,
//! a report edited by hand is put back, and `fleet status` shows each box.

mod common;
#[path = "common/nats.rs"]
mod nats;
use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, run, Root, Server};
use nats::{free_port, with_jetstream, Nats};
use serde_json::Value;

fn box_root() -> Root {
    let root = Root::new();
    // Peers are stale soon, so a takeover is quick to test.
    std::fs::write(
        root.join("outpost.toml"),
        "admin_listen = \"127.0.0.1:0\"\naccess_log = \"off\"\n[fleet]\nstale_after = \"2s\"\nlogs = false\n",
    )
    .unwrap();
    root.site("main", &["main.localhost"], true)
        .write(
            "sites/main/public/index.html",
            "<html><body><h1>Home</h1></body></html>",
        )
        .write(
            "sites/main/public/thanks.html",
            "<html><body>Thanks</body></html>",
        )
        .write(
            "rules/exp.toml",
            r#"
[[rule]]
name = "hero"
when = { path = "/" }
action = "variant"
experiment = "hero"
variants = [
  { name = "control", weight = 50 },
  { name = "bold", weight = 50, transforms = [{ selector = "h1", set_text = "Bold" }] },
]

[[rule]]
name = "signed-up"
when = { path = "/thanks.html" }
action = "goal"
experiment = "hero"
"#,
        );
    root
}

fn start_box(root: &Root, nats: &Nats, id: &str) -> Server {
    Server::start_serving_with(root.path(), &["--fleet", &nats.url(), "--box-id", id])
}

/// New visitors `range`, spread over `boxes` in turn; every third converts.
fn visitors(boxes: &[&Server], range: std::ops::Range<usize>) {
    for i in range {
        let s = boxes[i % boxes.len()];
        let r = s.get("main.localhost", "/");
        assert_eq!(r.status, 200);
        let variant = r
            .headers
            .iter()
            .find_map(|(k, v)| {
                let v = v.strip_prefix("outpost_exp_hero=")?;
                k.eq_ignore_ascii_case("set-cookie")
                    .then(|| v.split(';').next().unwrap().to_string())
            })
            .expect("a new visitor is drawn");
        if i % 3 == 0 {
            let cookie = format!("outpost_exp_hero={variant}");
            let r = s.request(
                "GET",
                "main.localhost",
                "/thanks.html",
                &[("Cookie", &cookie)],
            );
            assert_eq!(r.status, 200);
        }
    }
}

/// Per variant of `hero`: (exposures, conversions).
type Split = BTreeMap<String, (u64, u64)>;

fn split(experiments: &Value) -> Split {
    let hero = experiments
        .as_array()
        .and_then(|a| a.iter().find(|e| e["experiment"] == "hero"));
    let mut out = Split::new();
    for v in hero
        .and_then(|h| h["variants"].as_array())
        .into_iter()
        .flatten()
    {
        let n = |k: &str| v[k].as_u64().unwrap();
        out.insert(
            v["variant"].as_str().unwrap().to_string(),
            (n("exposures"), n("conversions")),
        );
    }
    out
}

/// What a box counted itself, from its admin listener.
fn own(s: &Server) -> Split {
    let status: Value = serde_json::from_str(&s.admin("GET", "/status", &[]).text()).unwrap();
    split(&status["experiments"])
}

fn fleet_stats(nats: &Nats) -> Value {
    let out = run(&["stats", "--fleet", &nats.url(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn all(boxes: &[Server]) -> Vec<&Server> {
    boxes.iter().collect()
}

fn total(s: &Split) -> (u64, u64) {
    s.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Waits until the fleet's totals are, variant by variant, the sum of the
/// boxes' own counts, and those are `visitors` and `converted`.
fn fleet_is_the_sum(nats: &Nats, boxes: &[&Server], visitors: u64, converted: u64) {
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(30), || {
        let mut sum = Split::new();
        for s in boxes {
            for (variant, (x, c)) in own(s) {
                let e = sum.entry(variant).or_default();
                e.0 += x;
                e.1 += c;
            }
        }
        let fleet = split(&fleet_stats(nats)["experiments"]);
        last = format!("fleet {fleet:?}, boxes {sum:?}");
        fleet == sum && total(&fleet) == (visitors, converted)
    });
    assert!(
        settled,
        "{visitors} visitors, {converted} converted: {last}"
    );
}

#[test]
fn fleet_totals_are_the_boxes_sum_through_restarts_and_an_outage() {
    let js = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(js.path(), free_port());
    let roots: Vec<Root> = (0..3).map(|_| box_root()).collect();
    let mut boxes: Vec<Server> = (0..3)
        .map(|i| start_box(&roots[i], &nats, &format!("box{i}")))
        .collect();
    visitors(&all(&boxes), 0..300);
    fleet_is_the_sum(&nats, &all(&boxes), 300, 100);

    // A box restarts, then the hub: the totals do not move.
    boxes[1].terminate();
    boxes[1] = start_box(&roots[1], &nats, "box1");
    fleet_is_the_sum(&nats, &all(&boxes), 300, 100);
    nats.restart();
    fleet_is_the_sum(&nats, &all(&boxes), 300, 100);

    // Visitors served while the hub is down are counted when it returns.
    nats.stop();
    visitors(&all(&boxes), 300..360);
    nats.restart();
    fleet_is_the_sum(&nats, &all(&boxes), 360, 120);

    // The other order: the hub goes, a box restarts without it (and
    // serves), the hub returns.
    nats.stop();
    boxes[2].terminate();
    boxes[2] = start_box(&roots[2], &nats, "box2");
    visitors(&[&boxes[2]], 360..363);
    nats.restart();
    fleet_is_the_sum(&nats, &all(&boxes), 363, 121);

    let stats = fleet_stats(&nats);
    for i in 0..3 {
        assert_eq!(
            split(&stats["boxes"][format!("box{i}")]),
            own(&boxes[i]),
            "each box's split is its own count"
        );
    }
    let hero = &stats["experiments"][0];
    assert!(hero["sample_ratio_p"].as_f64().is_some(), "{hero}");
    assert!(hero["variants"][1]["p_value"].as_f64().is_some(), "{hero}");

    let out = run(&["fleet", "status", "--fleet", &nats.url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 0..3 {
        assert!(text.contains(&format!("box{i}  ok, last seen")), "{text}");
    }
    assert!(text.contains(", 0 errors\n"), "{text}");
    assert!(text.contains(" req/s, 0.00% 5xx, p99 "), "{text}");
    boxes[0].terminate();
    assert!(eventually(Duration::from_secs(30), || {
        let out = run(&[
            "fleet",
            "status",
            "--fleet",
            &nats.url(),
            "--stale-after",
            "1s",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("box0  STALE, last seen")
    }));
}

#[test]
fn two_boxes_given_one_id_are_not_mixed() {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let (first_root, second_root) = (box_root(), box_root());
    let mut first = start_box(&first_root, &nats, "edge");
    visitors(&[&first], 0..30);
    fleet_is_the_sum(&nats, &[&first], 30, 10);
    let second = start_box(&second_root, &nats, "edge");
    second.wait_for_log("is held by another box", Duration::from_secs(30));
    visitors(&[&second], 30..45);
    // The fleet holds the first box's counts alone, never a mix.
    fleet_is_the_sum(&nats, &[&first], 30, 10);
    assert!(eventually(Duration::from_secs(30), || {
        let out = run(&["fleet", "status", "--fleet", &nats.url()]);
        String::from_utf8_lossy(&out.stdout).contains("  CONFLICT: another box (store ")
    }));
    let status: Value = serde_json::from_str(&second.admin("GET", "/fleet", &[]).text()).unwrap();
    assert!(
        status["conflict"]
            .as_str()
            .unwrap()
            .contains("give each box its own id"),
        "{status}"
    );
    // The first box stops for good: the second takes the id over, warned.
    first.terminate();
    second.wait_for_log("taking over a box id", Duration::from_secs(30));
    fleet_is_the_sum(&nats, &[&second], 15, 5);
}

#[test]
fn a_report_edited_smaller_by_hand_is_put_back() {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let root = box_root();
    let s = start_box(&root, &nats, "box0");
    visitors(&[&s], 0..30);
    fleet_is_the_sum(&nats, &[&s], 30, 10);
    with_jetstream(&nats, async |js| {
        let kv = js.get_key_value("outpost-boxes").await.unwrap();
        let mut report: Value =
            serde_json::from_slice(&kv.get("box0").await.unwrap().unwrap()).unwrap();
        for row in report["experiments"].as_array_mut().unwrap() {
            row["exposures"] = 1.into();
            row["conversions"] = 0.into();
        }
        kv.put("box0", serde_json::to_vec(&report).unwrap().into())
            .await
            .unwrap();
    });
    s.wait_for_log("changed by another hand", Duration::from_secs(30));
    fleet_is_the_sum(&nats, &[&s], 30, 10);
}

#[test]
fn the_dashboard_shows_the_fleet() {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let roots: Vec<Root> = (0..2).map(|_| box_root()).collect();
    let boxes: Vec<Server> = (0..2)
        .map(|i| start_box(&roots[i], &nats, &format!("box{i}")))
        .collect();
    visitors(&[&boxes[0], &boxes[1]], 0..12);
    fleet_is_the_sum(&nats, &[&boxes[0], &boxes[1]], 12, 4);
    let fleet: Value = serde_json::from_str(&boxes[1].admin("GET", "/fleet", &[]).text()).unwrap();
    assert_eq!(fleet["box"], "box1");
    assert_eq!(fleet["status"].as_array().unwrap().len(), 2, "{fleet}");
    let profile = tempfile::tempdir().unwrap();
    let out = common::chromium(
        &format!("http://{}/", boxes[1].admin),
        profile.path(),
        &["--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("Experiments, whole fleet"), "{dom}");
    assert!(dom.contains("<td>box0</td>"), "boxes listed: {dom}");
    assert!(dom.contains("conv. / exp."), "per-box split: {dom}");
    // Without a fleet the section stays hidden.
    let alone = Server::start(box_root().path());
    let r = alone.admin("GET", "/fleet", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn commands_name_an_unreachable_hub() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    for args in [
        vec!["fleet", "status", "--fleet", &url],
        vec!["stats", "--fleet", &url],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot reach the fleet's hub at {url}")),
            "{args:?}: {err}"
        );
    }
}
