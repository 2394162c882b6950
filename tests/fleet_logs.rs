//! Logs in one place: boxes ship their access-log lines to the fleet's
//! stream `outpost-logs` and `outpost fleet logs` reads them, with its
//! filters and `--follow`. With the hub down a box serves and logs locally
//! as before, and sends the lines of the outage when the hub is back, or
//! drops the oldest past `[fleet] logs_buffer` and counts them; a hub that
//! never answers keeps no box from serving.

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, outpost, run, Root, Server};
use nats::{free_port, Nats};
use serde_json::Value;

/// Long enough for a debug build on a busy machine; the bar is 1 s.
const WAIT: Duration = Duration::from_secs(20);

/// A box `id` serving sites `main` (the default) and `other`, with `extra`
/// in its outpost.toml.
fn a_box(url: &str, id: &str, extra: &str) -> (Root, Server) {
    let root = Root::new();
    root.write(
        "outpost.toml",
        &format!("admin_listen = \"127.0.0.1:0\"\n{extra}"),
    )
    .site("main", &["main.localhost"], true)
    .write("sites/main/public/index.html", "home")
    .site("other", &["other.localhost"], false)
    .write("sites/other/public/index.html", "other home");
    let server = Server::start_serving_with(root.path(), &["--fleet", url, "--box-id", id]);
    (root, server)
}

/// What `outpost fleet logs` with `flags` prints, or why it failed.
fn try_fleet_logs(nats: &Nats, flags: &[&str]) -> Result<String, String> {
    let url = nats.url();
    let mut args = vec!["fleet", "logs", "--fleet", &url];
    args.extend_from_slice(flags);
    let out = run(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).unwrap())
}

fn fleet_logs_text(nats: &Nats, flags: &[&str]) -> String {
    try_fleet_logs(nats, flags).unwrap_or_else(|e| panic!("{e}"))
}

/// `outpost fleet logs` with `flags`: its lines, parsed.
fn fleet_logs(nats: &Nats, flags: &[&str]) -> Vec<Value> {
    fleet_logs_text(nats, flags)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Whether `lines` hold one of box `id` for `path`.
fn has(lines: &[Value], id: &str, path: &str) -> bool {
    lines.iter().any(|l| l["box"] == id && l["path"] == path)
}

/// Waits until `fleet logs` with `flags` shows box `id`'s line for `path`
/// (the stream may not be there yet: the box makes it once connected).
fn arrives(nats: &Nats, flags: &[&str], id: &str, path: &str) -> bool {
    eventually(WAIT, || {
        try_fleet_logs(nats, flags).is_ok_and(|text| {
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            has(&lines, id, path)
        })
    })
}

/// NATS and box `box0` (with `extra` in its outpost.toml), whose line for
/// `/before` has reached the stream.
fn shipping(extra: &str) -> (tempfile::TempDir, Nats, Root, Server) {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let (root, server) = a_box(&nats.url(), "box0", extra);
    server.get("main.localhost", "/before");
    assert!(arrives(&nats, &[], "box0", "/before"));
    (js, nats, root, server)
}

/// Whether the box's local log (stdout) has a line for `path`.
fn logged_locally(server: &Server, path: &str) -> bool {
    let needle = format!("\"path\":\"{path}\"");
    eventually(WAIT, || {
        server
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&needle))
    })
}

#[test]
fn lines_from_three_boxes_are_read_and_filtered() {
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let url = nats.url();
    let b0 = a_box(&url, "box0", "");
    let b1 = a_box(&url, "box1", "");
    // Fleet logs do not need the local log.
    let b2 = a_box(&url, "box2", "access_log = \"off\"\n");
    assert_eq!(b0.1.get("main.localhost", "/").status, 200);
    assert_eq!(b1.1.get("main.localhost", "/missing").status, 404);
    assert_eq!(b2.1.get("other.localhost", "/").status, 200);

    assert!(arrives(&nats, &[], "box0", "/"));
    assert!(arrives(&nats, &[], "box1", "/missing"));
    assert!(arrives(&nats, &[], "box2", "/"));
    let text = fleet_logs_text(&nats, &[]);
    assert!(
        text.lines().all(|l| l.starts_with("{\"box\":\"box")),
        "the box comes first, for jq: {text}"
    );

    let one = fleet_logs(&nats, &["--box", "box1"]);
    assert!(!one.is_empty() && one.iter().all(|l| l["box"] == "box1"));
    let other = fleet_logs(&nats, &["--site", "other"]);
    assert!(has(&other, "box2", "/"));
    assert!(other.iter().all(|l| l["site"] == "other"));
    for status in ["404", "4xx", "5xx,404"] {
        let missing = fleet_logs(&nats, &["--status", status]);
        assert!(has(&missing, "box1", "/missing"), "{status}");
        assert!(missing.iter().all(|l| l["status"] == 404), "{status}");
    }
    assert!(fleet_logs(&nats, &["--status", "5xx"]).is_empty());
    // Lines stored before the window are left out.
    assert!(fleet_logs(&nats, &["--since", "1ms"]).is_empty());
    assert!(has(&fleet_logs(&nats, &["--since", "1h"]), "box0", "/"));

    let out = run(&["fleet", "logs", "--fleet", &url, "--status", "5x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`5x` is not a status"), "{err}");
}

/// `outpost fleet logs --follow`, its output lines gathered as they come.
struct Follow {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follow {
    fn start(nats: &Nats) -> Follow {
        let mut child = outpost()
            .args(["fleet", "logs", "--follow", "--fleet", &nats.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let gathered = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                gathered.lock().unwrap().push(line);
            }
        });
        Follow { child, lines }
    }

    fn shows(&self, path: &str) -> bool {
        let needle = format!("\"path\":\"{path}\"");
        eventually(WAIT, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(&needle))
        })
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_new_lines_as_they_come() {
    let (_js, nats, _root, server) = shipping("");
    let follow = Follow::start(&nats);
    assert!(follow.shows("/before"));
    server.get("main.localhost", "/second");
    assert!(follow.shows("/second"));
}

#[test]
fn lines_served_while_the_hub_is_down_arrive_when_it_is_back() {
    let (_js, mut nats, _root, server) = shipping("");

    nats.stop();
    assert_eq!(server.get("main.localhost", "/").text(), "home");
    assert_eq!(server.get("main.localhost", "/during").status, 404);
    assert!(logged_locally(&server, "/during"));

    nats.restart();
    assert!(arrives(&nats, &[], "box0", "/during"));
    // Sent once, though the box may have tried more than once.
    let lines = fleet_logs(&nats, &["--since", "1h"]);
    let during = lines.iter().filter(|l| l["path"] == "/during").count();
    assert_eq!(during, 1, "{lines:?}");
}

#[test]
fn a_full_buffer_drops_the_oldest_lines_and_counts_them() {
    let (_js, mut nats, _root, server) = shipping("[fleet]\nlogs_buffer = \"600B\"\n");

    nats.stop();
    // Every request is answered though nothing can be sent.
    for i in 0..30 {
        let path = format!("/during-{i}");
        assert_eq!(server.get("main.localhost", &path).status, 404);
    }
    assert!(logged_locally(&server, "/during-29"));
    let dropped = "outpost_fleet_log_lines_dropped_total";
    assert!(eventually(WAIT, || server.metric(dropped) > 0));

    // The newest lines were held and go out; the box reports its count.
    nats.restart();
    assert!(arrives(&nats, &[], "box0", "/during-29"));
    let lines = fleet_logs(&nats, &[]);
    let during = lines.iter().filter(|l| {
        l["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/during-"))
    });
    assert!(during.count() < 30, "some lines were dropped: {lines:?}");
    assert!(eventually(WAIT, || {
        let out = run(&["fleet", "status", "--json", "--fleet", &nats.url()]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status[0]["report"]["log_lines_dropped"].as_u64() > Some(0)
    }));
}

#[test]
fn a_box_whose_hub_never_answers_serves_and_logs_locally() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (_root, server) = a_box(&url, "box0", "");
    assert_eq!(server.get("main.localhost", "/").text(), "home");
    assert!(logged_locally(&server, "/"));
}

#[test]
fn a_box_with_other_limits_sets_them_and_says_so() {
    let (_js, nats, _r0, _b0) = shipping("");
    let limits = "[fleet]\nlogs_max_size = \"10MiB\"\nlogs_max_age = \"1h\"\n";
    let (_r1, b1) = a_box(&nats.url(), "box1", limits);
    let said = b1.wait_for_log("the fleet's log stream had other limits", WAIT);
    assert!(said.contains("new_max_size=10485760"), "{said}");
    assert!(said.contains("new_max_age=1h"), "{said}");
    assert!(said.contains("old_max_age=7days"), "{said}");
    b1.get("main.localhost", "/after");
    assert!(arrives(&nats, &[], "box1", "/after"));
}
