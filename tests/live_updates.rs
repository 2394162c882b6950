//! Live updates: changes are served within a second, atomically, never half
//! written; sites that move or vanish, symlinks and unreadable files.

mod common;
use std::io::Write;
use std::time::Duration;

use common::{eventually, Root, Server};

fn root() -> Root {
    let root = Root::new();
    root.site("main", &["main.localhost"], true)
        .write("sites/main/public/index.html", "version one");
    root.site("other", &["other.localhost"], false)
        .write("sites/other/public/index.html", "other one");
    root
}

/// A large body that changes while a slow client is still reading it: the
/// client gets the old bytes whole, the next request the new ones. The old
/// bytes live in a memory file sent by sendfile, which must outlive its
/// version for as long as a response still sends from it.
#[test]
fn a_large_file_changed_while_being_sent_is_sent_whole() {
    let root = root();
    // Larger than loopback's socket buffers, so most of it waits in the server.
    let len = 24 << 20;
    let old: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let new: Vec<u8> = (0..len).map(|i| (i % 241 + 1) as u8).collect();
    root.write_bytes("sites/main/public/big.bin", &old);
    let s = Server::start(root.path());

    let mut slow = std::net::TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: main.localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut start = vec![0; 64 * 1024];
    std::io::Read::read_exact(&mut slow, &mut start).unwrap();

    root.write_bytes("sites/main/public/big.bin", &new);
    let first_byte = |s: &Server| {
        s.request(
            "GET",
            "main.localhost",
            "/big.bin",
            &[("Range", "bytes=0-0")],
        )
        .body
    };
    assert!(eventually(Duration::from_secs(10), || first_byte(&s) == [1]));
    // Versions come and go while the slow client still reads.
    root.write_bytes("sites/main/public/big.bin", &old);
    assert!(eventually(Duration::from_secs(10), || first_byte(&s) == [0]));

    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut slow, &mut rest).unwrap();
    start.extend_from_slice(&rest);
    let head_end = start.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(start[..head_end].starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        start[head_end..] == old[..],
        "the slow client got other bytes"
    );
    assert!(s.get("main.localhost", "/big.bin").body == old);
}

/// A change goes live by itself, as one new version of its site that
/// reads the changed file only; so do a new file and a deletion.
#[test]
fn a_changed_file_goes_live_as_one_new_version() {
    let root = root();
    root.write("sites/main/public/a.html", "a")
        .write("sites/main/public/b.html", "b");
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "version one");
    let versions = s.log_count("serving new version");
    let one_file_read = || {
        s.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.contains("reading changed files") && l.contains("main") && l.contains("files=1")
            })
            .count()
    };
    let reads = one_file_read();
    root.write("sites/main/public/index.html", "version two");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/")
        .text()
        == "version two"));
    s.wait_for_log_count("serving new version", versions + 1);
    assert_eq!(s.log_count("serving new version"), versions + 1);
    assert_eq!(one_file_read(), reads + 1);
    // A new file and a deletion, too.
    root.write("sites/main/public/new.html", "new");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/new")
        .text()
        == "new"));
    std::fs::remove_file(root.join("sites/main/public/new.html")).unwrap();
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/new")
        .status
        == 404));
}

#[test]
fn a_slowly_written_file_is_never_served_partially() {
    let root = root();
    let s = Server::start(root.path());
    let chunks: Vec<String> = (0..5)
        .map(|i| format!("chunk {i} {}\n", "x".repeat(2000)))
        .collect();
    let whole: String = chunks.concat();
    let path = root.join("sites/main/public/index.html");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(path).unwrap();
        for c in &chunks {
            f.write_all(c.as_bytes()).unwrap();
            f.flush().unwrap();
            // Longer than the watcher's quiet period, on purpose.
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let mut seen_new = false;
    while !writer.is_finished() || !seen_new {
        let body = s.get("main.localhost", "/").text();
        assert!(
            body == "version one" || body == whole,
            "partial body served: {} bytes",
            body.len()
        );
        seen_new |= body == whole;
        if writer.is_finished() && !seen_new {
            assert!(eventually(Duration::from_secs(10), || s
                .get("main.localhost", "/")
                .text()
                == whole));
            seen_new = true;
        }
    }
    writer.join().unwrap();
}

#[test]
fn every_request_sees_one_whole_version() {
    let root = root();
    root.write("sites/main/public/a.html", "1")
        .write("sites/main/public/b.html", "1");
    let s = Server::start(root.path());
    // A site-wide change: a.html and b.html always agree.
    for gen in 2..6 {
        root.write("sites/main/public/a.html", &gen.to_string())
            .write("sites/main/public/b.html", &gen.to_string());
        assert!(eventually(Duration::from_secs(10), || s
            .get("main.localhost", "/b")
            .text()
            == gen.to_string()));
        assert_eq!(s.get("main.localhost", "/a").text(), gen.to_string());
    }
}

#[test]
fn site_folders_renamed_or_deleted_while_served() {
    let root = root();
    let s = Server::start(root.path());
    std::fs::rename(root.join("sites/other"), root.join("sites/renamed")).unwrap();
    root.write("sites/renamed/public/index.html", "renamed one");
    assert!(
        eventually(Duration::from_secs(10), || s
            .get("other.localhost", "/")
            .text()
            == "renamed one"),
        "{}",
        s.stderr.lock().unwrap().join("\n")
    );
    std::fs::remove_dir_all(root.join("sites/renamed")).unwrap();
    // Its host now falls to the default site; the server lives on.
    assert!(eventually(Duration::from_secs(10), || s
        .get("other.localhost", "/")
        .text()
        == "version one"));
    assert_eq!(s.get("main.localhost", "/").text(), "version one");
}

#[test]
fn symlinks_outside_the_site_are_not_followed() {
    let root = root();
    root.write("outside.txt", "OUTSIDE");
    root.write("sites/main/public/inside.txt", "inside");
    std::os::unix::fs::symlink(
        root.join("outside.txt"),
        root.join("sites/main/public/leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("sites/main/public/passwd")).unwrap();
    std::os::unix::fs::symlink(
        root.join("sites/main/public/inside.txt"),
        root.join("sites/main/public/alias.txt"),
    )
    .unwrap();
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/leak.txt").status, 404);
    assert_eq!(s.get("main.localhost", "/passwd").status, 404);
    assert_eq!(s.get("main.localhost", "/alias.txt").text(), "inside");
    assert!(s.log_count("symlink leads outside the site") >= 2);
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn an_unreadable_file_is_logged_and_the_rest_served() {
    use std::os::unix::fs::PermissionsExt;
    let root = root();
    root.write("sites/main/public/locked.html", "locked");
    let locked = root.join("sites/main/public/locked.html");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let cmd = unprivileged(&root, &[&locked]);
    let s = Server::start_with(root.path(), cmd);
    assert_eq!(s.get("main.localhost", "/").text(), "version one");
    assert_eq!(s.get("main.localhost", "/locked.html").status, 404);
    s.wait_for_log("cannot read file", Duration::from_secs(5));
}

/// The outpost command, run as nobody when the tests run as root (who reads
/// anything), owning everything under `root` but `locked`.
fn unprivileged(root: &Root, locked: &[&std::path::Path]) -> std::process::Command {
    if !running_as_root() {
        return common::outpost();
    }
    for entry in walk(root.path()) {
        if !locked.contains(&entry.as_path()) {
            std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
        }
    }
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_outpost"));
    c
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// One site's entry in the admin `/status`.
fn site_status(s: &Server, name: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_slice(&s.admin("GET", "/status", &[]).body).unwrap();
    status["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// Text that compresses, but slowly enough that a few megabytes of it keep
/// a first scan busy for a while.
fn prose(seed: u64, words: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = String::with_capacity(words * 7);
    for _ in 0..words {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 2 + (x >> 60) as usize % 8;
        out.extend((0..len).map(|i| (b'a' + ((x >> (i * 5)) % 12) as u8) as char));
        out.push(' ');
    }
    out
}

/// A cold start (nothing in the store yet): until the first scan ends, a
/// site on disk but not loaded yet answers 503 with Retry-After, never a 404
/// a CDN would keep nor the default site's page, and /ready says 503. Rules
/// naming such a site load without an error.
#[test]
fn a_site_not_loaded_yet_answers_503_until_the_first_scan_ends() {
    let root = root();
    for i in 0..40 {
        root.write(
            &format!("sites/main/public/page{i}.html"),
            &prose(i, 16_000),
        );
    }
    root.write(
        "rules/10-block.toml",
        "[[rule]]\nname = \"block-kp\"\nsites = [\"other\"]\nwhen = { country = \"KP\" }\naction = \"block\"\n",
    );
    let s = Server::spawn(root.path(), &mut common::outpost());
    let mut before_ready = 0;
    loop {
        let page = s.get("other.localhost", "/");
        let missing = s.get("main.localhost", "/page39.html");
        // Still not ready after both answers: both came before the scan ended.
        if s.admin("GET", "/ready", &[]).status == 200 {
            break;
        }
        // Loaded already, or asked to come back.
        for (r, loaded) in [
            (&page, "other one".to_string()),
            (&missing, prose(39, 16_000)),
        ] {
            if r.status == 503 {
                assert_eq!(r.header("Retry-After"), Some("1"));
                before_ready += 1;
            } else {
                assert_eq!(r.status, 200);
                assert!(r.text() == loaded, "a page of another site was served");
            }
        }
    }
    assert!(before_ready > 0, "the first scan ended before any request");
    assert_eq!(s.get("other.localhost", "/").text(), "other one");
    s.wait_for_log("sites scanned", Duration::from_secs(60));
    let log = s.stderr.lock().unwrap().join("\n");
    assert!(!log.contains(" ERROR ") && !log.contains(" WARN "), "{log}");
    assert_eq!(site_status(&s, "other")["problem"], serde_json::Value::Null);
}

/// Moving a site's site.toml away (an editor saving by rename, a checkout)
/// keeps the site serving its last good version, with the problem in
/// /status; putting it back clears it. Removing the whole folder removes the
/// site, and putting it back serves it again. The store never errs.
#[test]
fn a_site_whose_site_toml_goes_away_keeps_serving() {
    let root = root();
    let s = Server::start(root.path());
    let toml = root.join("sites/other/site.toml");
    let aside = root.join("site.toml.aside");
    std::fs::rename(&toml, &aside).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || site_status(&s, "other")
            ["problem"]
            .as_str()
            .is_some_and(|p| p.contains("site.toml: not found"))),
        "{}",
        s.stderr.lock().unwrap().join("\n")
    );
    assert_eq!(s.get("other.localhost", "/").text(), "other one");
    std::fs::rename(&aside, &toml).unwrap();
    assert!(eventually(Duration::from_secs(5), || site_status(
        &s, "other"
    )["problem"]
        .is_null()));
    root.write("sites/other/public/index.html", "other two");
    assert!(eventually(Duration::from_secs(5), || s
        .get("other.localhost", "/")
        .text()
        == "other two"));

    let folder_aside = root.join("other.aside");
    std::fs::rename(root.join("sites/other"), &folder_aside).unwrap();
    // Its host falls to the default site.
    assert!(eventually(Duration::from_secs(5), || s
        .get("other.localhost", "/")
        .text()
        == "version one"));
    std::fs::rename(&folder_aside, root.join("sites/other")).unwrap();
    assert!(eventually(Duration::from_secs(5), || s
        .get("other.localhost", "/")
        .text()
        == "other two"));
    assert_eq!(s.log_count("cannot forget site"), 0);
    assert_eq!(
        s.log_count("already opened"),
        0,
        "{}",
        s.stderr.lock().unwrap().join("\n")
    );
}

/// How many inotify watches process `pid` holds.
fn inotify_watches(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// Symlinks never cross sites or the root: a link to another site's folder
/// does not freeze that site, a link outside the root adds no watch there,
/// a link to a folder above it is no loop, all three are listed in /status,
/// and a new symlink goes live like any change instead of stalling its site.
#[test]
fn symlinks_cross_no_site_and_stall_nothing() {
    let root = root();
    let ln = |target: &std::path::Path, link: &str| {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap()
    };
    // Each site links to the other's folder, so whichever path the watcher
    // saw last, one of them would lose its events.
    ln("../../main/public".as_ref(), "sites/other/public/mainlink");
    ln("../../other/public".as_ref(), "sites/main/public/otherlink");
    root.write("sites/main/public/sub/a.txt", "a");
    ln("..".as_ref(), "sites/main/public/sub/loop");
    let outside = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::create_dir_all(outside.path().join(format!("d{i}"))).unwrap();
    }
    ln(outside.path(), "sites/main/public/outside");
    let s = Server::start(root.path());
    let watches = inotify_watches(s.pid());
    assert!(watches < 50, "{watches} inotify watches");

    root.write("sites/main/public/new.html", "new main")
        .write("sites/other/public/new.html", "new other");
    for (host, text) in [
        ("main.localhost", "new main"),
        ("other.localhost", "new other"),
    ] {
        assert!(
            eventually(Duration::from_secs(5), || s.get(host, "/new").text()
                == text),
            "{host} did not publish"
        );
    }
    assert_eq!(s.get("other.localhost", "/mainlink/new").status, 404);
    assert_eq!(s.get("main.localhost", "/sub/loop/index.html").status, 404);
    let skipped = site_status(&s, "main")["skipped"].to_string();
    for why in [
        "otherlink: symlink leads outside the site",
        "outside: symlink leads outside the site",
        "loop: symlink loops back",
    ] {
        assert!(skipped.contains(why), "{why} not in {skipped}");
    }

    ln("index.html".as_ref(), "sites/main/public/alias.html");
    assert!(eventually(Duration::from_secs(10), || s
        .get("main.localhost", "/alias.html")
        .text()
        == "version one"));
}

/// An unreadable folder (and file) under public/ stops neither the start
/// nor the other sites nor its own site's other changes; /status lists both.
#[test]
fn an_unreadable_folder_stops_nothing_and_shows_in_status() {
    use std::os::unix::fs::PermissionsExt;
    let root = root();
    root.write("sites/main/public/locked/page.html", "locked")
        .write("sites/main/public/secret.html", "secret");
    let folder = root.join("sites/main/public/locked");
    let file = root.join("sites/main/public/secret.html");
    for path in [&folder, &file] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let cmd = unprivileged(&root, &[&folder, &file]);
    let s = Server::start_with(root.path(), cmd);
    assert_eq!(s.get("other.localhost", "/").text(), "other one");
    assert_eq!(s.get("main.localhost", "/secret.html").status, 404);
    let skipped = site_status(&s, "main")["skipped"].to_string();
    for why in [
        "locked: cannot list folder",
        "secret.html: cannot read file",
    ] {
        assert!(skipped.contains(why), "{why} not in {skipped}");
    }
    root.write("sites/main/public/index.html", "version two");
    assert!(eventually(Duration::from_secs(5), || s
        .get("main.localhost", "/")
        .text()
        == "version two"));
    // Readable again: served, and followed from then on.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(eventually(Duration::from_secs(5), || s
        .get("main.localhost", "/locked/page.html")
        .text()
        == "locked"));
    root.write("sites/main/public/locked/new.html", "new inside");
    assert!(eventually(Duration::from_secs(5), || s
        .get("main.localhost", "/locked/new.html")
        .text()
        == "new inside"));
}

/// A file rewritten more often than the quiet period still goes live, and
/// keeps going live while the writes last.
#[test]
fn constant_writes_still_go_live() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = root();
    let s = Server::start(root.path());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = root.join("sites/main/public/tick.txt");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(&path, n.to_string()).unwrap();
                n += 1;
                // Well inside the quiet period, so it never comes.
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let tick = || s.get("main.localhost", "/tick.txt");
    let live = eventually(Duration::from_secs(10), || tick().status == 200);
    let first = tick().text();
    let moved = live && eventually(Duration::from_secs(10), || tick().text() != first);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(live, "nothing published while the writes lasted");
    assert!(
        moved,
        "published once, then no more while the writes lasted"
    );
}

/// The atomic publish of docs/operations.md: `public` is a symlink to a
/// release folder inside the site, switched in one rename.
#[test]
fn a_release_switched_by_renaming_the_public_link_goes_live_whole() {
    let root = root();
    std::fs::remove_dir_all(root.join("sites/main/public")).unwrap();
    root.write("sites/main/releases/1/index.html", "release one");
    std::os::unix::fs::symlink("releases/1", root.join("sites/main/public")).unwrap();
    let s = Server::start(root.path());
    assert_eq!(s.get("main.localhost", "/").text(), "release one");
    root.write("sites/main/releases/2/index.html", "release two")
        .write("sites/main/releases/2/more.html", "more");
    std::os::unix::fs::symlink("releases/2", root.join("sites/main/public.new")).unwrap();
    std::fs::rename(
        root.join("sites/main/public.new"),
        root.join("sites/main/public"),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || s
        .get("main.localhost", "/")
        .text()
        == "release two"));
    assert_eq!(s.get("main.localhost", "/more").text(), "more");
}

/// A file kept open and written to without end holds back only itself: the
/// site's other changes go live, and the file keeps the copy taken before
/// it was opened, never a part of what is being written.
#[test]
fn a_file_written_without_end_holds_back_only_itself() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = root();
    root.write("sites/main/public/log.txt", "before");
    let s = Server::start(root.path());
    let mut log = std::fs::File::create(root.join("sites/main/public/log.txt")).unwrap();
    log.write_all(b"line\n").unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                log.write_all(b"line\n").unwrap();
                // Well inside the quiet period, so it never comes.
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    root.write("sites/main/public/index.html", "version two");
    let live = eventually(Duration::from_secs(10), || {
        s.get("main.localhost", "/").text() == "version two"
    });
    let held = s.get("main.localhost", "/log.txt").text();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(live, "the site's other change did not go live");
    assert_eq!(held, "before");
}
