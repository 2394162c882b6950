//! A small live-scores and odds API for the demo, started beside the
//! server when outpost.toml sets `demo_upstream`. Scores and odds follow
//! the clock, so every reload after a cache's lifetime shows new data.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query};
use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Params {
    site: Option<String>,
}

/// Serves `/scores.json?site=<host>` and `/odds/<match>` on `addr` until
/// the process ends.
pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "demo scores upstream listening");
    let app = Router::new()
        .route(
            "/scores.json",
            get(|Query(p): Query<Params>| async move {
                Json(scores(p.site.as_deref().unwrap_or(""), now()))
            }),
        )
        .route(
            "/odds/{*event}",
            get(|Path(event): Path<String>| async move {
                // Shared caches may keep odds as long as they hold.
                let cache = [(header::CACHE_CONTROL, "public, max-age=5")];
                (cache, Json(odds(&event, now())))
            }),
        );
    axum::serve(listener, app).await
}

/// Decimal odds for `event` (like `premier-league/arsenal-chelsea`),
/// moving every 5 seconds.
fn odds(event: &str, t: u64) -> Value {
    let seed = event
        .bytes()
        .fold(t / 5, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let price = |salt: u64| (120 + (seed.wrapping_mul(salt) >> 7) % 400) as f64 / 100.0;
    json!({
        "event": event,
        "home": price(2_654_435_761),
        "draw": price(40_503),
        "away": price(2_246_822_519),
        "updated": t,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Matches of the site's league at time `t`: a goal every so often.
fn scores(site: &str, t: u64) -> Value {
    let (league, teams): (&str, [&str; 8]) = if site.starts_with("casino-it") {
        (
            "Serie A",
            [
                "Inter",
                "Milan",
                "Juventus",
                "Napoli",
                "Roma",
                "Lazio",
                "Atalanta",
                "Fiorentina",
            ],
        )
    } else if site.starts_with("casino-de") {
        (
            "Bundesliga",
            [
                "Bayern München",
                "Borussia Dortmund",
                "RB Leipzig",
                "Bayer Leverkusen",
                "VfB Stuttgart",
                "Eintracht Frankfurt",
                "SC Freiburg",
                "Werder Bremen",
            ],
        )
    } else {
        (
            "Premier League",
            [
                "Arsenal",
                "Chelsea",
                "Liverpool",
                "Manchester City",
                "Newcastle",
                "Tottenham",
                "Aston Villa",
                "Brighton",
            ],
        )
    };
    // A match lasts 100 "minutes" of 6 seconds; goals at pseudo-random minutes.
    let minute = (t / 6) % 100;
    let matches: Vec<Value> = (0..4u64)
        .map(|i| {
            let goals = |side: u64| {
                (0..minute)
                    .filter(|m| (m * 7919 + i * 104_729 + side * 15_485_863).is_multiple_of(37))
                    .count()
            };
            json!({
                "home": teams[(i * 2) as usize],
                "away": teams[(i * 2 + 1) as usize],
                "home_goals": goals(1),
                "away_goals": goals(2),
                "minute": minute.min(90),
                "status": if minute >= 90 { "FT" } else { "LIVE" },
            })
        })
        .collect();
    json!({ "league": league, "updated": t, "matches": matches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_change_with_time() {
        assert_ne!(
            scores("casino-uk.localhost", 0),
            scores("casino-uk.localhost", 6 * 60)
        );
        assert_eq!(scores("casino-it.localhost:8080", 60)["league"], "Serie A");
    }

    #[test]
    fn odds_move_every_five_seconds() {
        let event = "premier-league/arsenal-chelsea";
        assert_eq!(odds(event, 10)["home"], odds(event, 14)["home"]);
        assert_ne!(odds(event, 10)["home"], odds(event, 15)["home"]);
        assert_eq!(odds(event, 10)["event"], event);
    }
}
