//! `outpost stats`: the experiments' figures as a table or JSON, from the
//! store, or from the running server's admin listener while that server
//! holds the store; with `--fleet`, the whole fleet's totals from the
//! boxes' reports, and each box's own.

use std::net::SocketAddr;

use crate::config::{Overrides, Settings};
use crate::experiments::{designs, report, ExperimentReport};
use crate::rules::Rules;
use crate::store::{Store, StoreError};

use super::admin_client::{AdminClient, AdminError};

#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    root: super::RootArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The fleet at this NATS server: the sum of every box's counts, then
    /// each box's.
    #[arg(long)]
    fleet: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Settings(#[from] super::SettingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot ask the running server at {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: AdminError,
    },
    #[error("cannot start a runtime to ask the running server")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
}

/// What the admin listener's `/status` holds for this command.
#[derive(serde::Deserialize)]
struct Status {
    experiments: Vec<ExperimentReport>,
}

pub fn run(args: StatsArgs) -> Result<(), StatsError> {
    if let Some(url) = &args.fleet {
        return fleet(url, args.json);
    }
    let settings =
        Settings::load(&args.root.root, &Overrides::default()).map_err(super::SettingsError)?;
    let reports = read_reports(&settings)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for e in &reports {
        print_table(e, "this box");
    }
    if reports.is_empty() {
        println!("no experiments");
    }
    Ok(())
}

fn fleet(url: &str, json: bool) -> Result<(), StatsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StatsError::Runtime)?;
    let results = runtime.block_on(crate::fleet::report::read(url))?.results();
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    for e in &results.experiments {
        print_table(e, "the fleet");
        for (id, own) in &results.boxes {
            if let Some(own) = own.iter().find(|o| o.experiment == e.experiment) {
                print_split(id, own);
            }
        }
    }
    if results.experiments.is_empty() {
        println!("no experiments");
    }
    Ok(())
}

/// One box's share of an experiment, under the fleet's table.
fn print_split(id: &str, e: &ExperimentReport) {
    let figures: Vec<String> = e
        .variants
        .iter()
        .map(|v| format!("{} {}/{}", v.variant, v.conversions, v.exposures))
        .collect();
    println!("  box {id:<12} {}", figures.join("  "));
}

fn print_table(e: &ExperimentReport, whose: &str) {
    println!("experiment {} ({whose})", e.experiment);
    println!(
        "  {:<16} {:>10} {:>11} {:>11} {:>8} {:>7} {:>8}",
        "variant", "exposures", "not applied", "conversions", "rate", "z", "p"
    );
    for v in &e.variants {
        let (z, p) = match (v.z, v.p_value) {
            (Some(z), Some(p)) => (format!("{z:.2}"), format!("{p:.4}")),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "  {:<16} {:>10} {:>11} {:>11} {:>7.2}% {:>7} {:>8}",
            v.variant,
            v.exposures,
            v.not_applied,
            v.conversions,
            v.rate * 100.0,
            z,
            p
        );
    }
    for line in &e.warnings {
        println!("  warning: {line}");
    }
}

/// The reports for a root folder: from the running server's admin listener
/// when one holds the store, else from the store itself.
fn read_reports(settings: &Settings) -> Result<Vec<ExperimentReport>, StatsError> {
    match Store::open_existing(&settings.store) {
        Ok(store) => {
            let rows = store.experiments()?;
            let names: Vec<String> = store
                .current_versions()?
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            let rules =
                crate::rules::load(&settings.root, &names).unwrap_or_else(|_| Rules::empty());
            Ok(report(&rows, &designs(&rules)))
        }
        Err(StoreError::Open { source, .. })
            if matches!(*source, redb::DatabaseError::DatabaseAlreadyOpen) =>
        {
            admin_reports(settings)
        }
        Err(e) => Err(e.into()),
    }
}

fn admin_reports(settings: &Settings) -> Result<Vec<ExperimentReport>, StatsError> {
    let addr = settings.admin_listen;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StatsError::Runtime)?;
    let status: Status = runtime
        .block_on(async {
            let client = AdminClient::new(addr, settings.admin_token.clone());
            client.get("/status").await
        })
        .map_err(|source| StatsError::Admin { addr, source })?;
    Ok(status.experiments)
}
