//! Classifying a visitor by User-Agent: crawler or not (the `bot`
//! condition, over the whole crawler list) and device class (`device`),
//! on typical user agents of people and crawlers. Run with
//! `cargo bench --bench visitor`; the bar is under 1 µs each.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use outpost::context::crawler::is_crawler;
use outpost::context::Device;

const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
];

fn classify(c: &mut Criterion) {
    // Compiles the list before timing.
    assert!(is_crawler(AGENTS[5].as_bytes()));
    c.bench_function("bot: one typical user agent (mean of 8)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % AGENTS.len();
            is_crawler(black_box(AGENTS[i].as_bytes()))
        })
    });
    c.bench_function("device: one typical user agent (mean of 8)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % AGENTS.len();
            Device::of(black_box(Some(AGENTS[i].as_bytes())), None)
        })
    });
}

criterion_group!(benches, classify);
criterion_main!(benches);
