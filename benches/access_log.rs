//! Writing one access-log line, the cost a request pays for the local log
//! and for the fleet's: a static page (no rule applies) and a page rules
//! changed. Run with `cargo bench --bench access_log`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use outpost::access_log::Entry;

fn write(c: &mut Criterion) {
    let rules: Vec<Arc<str>> = vec!["security-headers".into(), "hero-test-uk".into()];
    let static_page = Entry {
        time: SystemTime::now(),
        site: Some("casino-uk"),
        method: "GET",
        path: "/",
        status: 200,
        bytes: 4708,
        micros: 38,
        country: None,
        rules: &[],
        variant: &[],
        version: Some(1),
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        cache: None,
    };
    let ruled_page = Entry {
        path: "/en/promotions/welcome-bonus/",
        country: Some("GB"),
        rules: &rules,
        client: IpAddr::V4(Ipv4Addr::new(81, 2, 69, 160)),
        ..static_page
    };
    let mut out = Vec::with_capacity(1024);
    c.bench_function("line of a static page", |b| {
        b.iter(|| {
            out.clear();
            black_box(&static_page).write(&mut out);
            black_box(out.len())
        })
    });
    c.bench_function("line of a page rules changed", |b| {
        b.iter(|| {
            out.clear();
            black_box(&ruled_page).write(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, write);
criterion_main!(benches);
