//! Country lookup on the full public-domain country database
//! (../shared/geo/ip-location-db, ~400,000 networks), falling back to the
//! MaxMind test database when it is absent; and a visitor's whole place
//! (country, continent, EU, region) from the MaxMind City test database,
//! for `region` (the bar: under 1 µs). Run with `cargo bench --bench geo`.

use std::net::IpAddr;
use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use outpost::context::Geo;

fn database() -> std::path::PathBuf {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/geo/ip-location-db/iptoasn-country.mmdb");
    if full.exists() {
        full
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/GeoIP2-Country-Test.mmdb")
    }
}

fn lookups(c: &mut Criterion) {
    let path = database();
    let geo = Geo::open(Some(&path)).expect("the database opens");
    // A spread of real addresses, v4 and v6, known and unknown.
    let addresses: Vec<IpAddr> = [
        "81.2.69.142",
        "2.56.8.1",
        "8.8.8.8",
        "151.101.1.1",
        "89.160.20.112",
        "193.0.0.1",
        "212.77.0.1",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "10.0.0.1",
        "203.0.113.9",
        "::ffff:81.2.69.142",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    println!("database: {}", path.display());
    let mut i = 0;
    c.bench_function("country lookup", |b| {
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(geo.country(black_box(addresses[i])))
        })
    });
}

/// Where a visitor is, region included, from a City database: addresses
/// with one subdivision, two, none, and none in the database.
fn regions(c: &mut Criterion) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo/GeoIP2-City-Test.mmdb");
    let geo = Geo::open(Some(&path)).expect("the database opens");
    let addresses: Vec<IpAddr> = [
        "216.160.83.56",
        "2.125.160.216",
        "81.2.69.142",
        "89.160.20.112",
        "8.8.8.8",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert!(geo.locate(addresses[0]).and_then(|p| p.region).is_some());
    let mut i = 0;
    c.bench_function("place lookup with region (City database)", |b| {
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(geo.locate(black_box(addresses[i])))
        })
    });
}

criterion_group!(benches, lookups, regions);
criterion_main!(benches);
