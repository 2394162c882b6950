//! The `outpost` command line: parses arguments and calls the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use outpost::cli::explain::ExplainArgs;
use outpost::cli::fleet_logs::FleetLogsArgs;
use outpost::cli::preview_link::PreviewLinkArgs;
use outpost::cli::publish::{PublishArgs, RollbackArgs};
use outpost::cli::serve::ServeArgs;
use outpost::cli::stats::StatsArgs;
use outpost::cli::status::FleetStatusArgs;
use outpost::cli::{self, RootArg};

// Requests allocate many small, short-lived buffers from several threads;
// mimalloc's thread-local pages cost less per request than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Serves static sites, personalized at the edge"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sites of a root folder (the default command).
    Serve(ServeArgs),
    /// Check settings, sites, rules and templates, and run the rule cases;
    /// print `file:line:col: message` per problem.
    Check(RootArg),
    /// Show which site answers a URL and what each rule makes of it.
    Explain(ExplainArgs),
    /// Run the rule cases in rules/tests/*.toml.
    Test(RootArg),
    /// Make a signed, expiring link for a `preview` rule with a secret.
    PreviewLink(PreviewLinkArgs),
    /// Experiments: exposures, conversions, rates and significance.
    Stats(StatsArgs),
    /// Publish sites and rules to the fleet (NATS JetStream).
    Publish(PublishArgs),
    /// Point every box of the fleet back at a site's previous version.
    Rollback(RollbackArgs),
    /// The fleet: what each box serves and how it fares.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Per box: versions served, rules, the last minute's traffic,
    /// fragments, and when it last reported.
    Status(FleetStatusArgs),
    /// The boxes' access-log lines, one JSON line each with its box first.
    Logs(FleetLogsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one-shot commands print their own report; only problems are logged.
    let quiet = !matches!(cli.command, None | Some(Command::Serve(_)));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
                // The NATS client's own reports (a refused connection
                // every second while the hub is down) are outpost's to
                // make, once.
                .unwrap_or_else(|_| {
                    if quiet {
                        "warn"
                    } else {
                        "info,async_nats=warn"
                    }
                    .into()
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        None => cli::serve::run(cli.serve).map_err(Into::into),
        Some(Command::Serve(args)) => cli::serve::run(args).map_err(Into::into),
        Some(Command::Check(args)) => return cli::check::run(&args.root),
        Some(Command::Test(args)) => return cli::test::run(&args.root),
        Some(Command::Explain(args)) => cli::explain::run(args).map_err(Into::into),
        Some(Command::PreviewLink(args)) => cli::preview_link::run(args).map_err(Into::into),
        Some(Command::Stats(args)) => cli::stats::run(args).map_err(Into::into),
        Some(Command::Publish(args)) => print_report(cli::publish::publish(
            &args.fleet,
            &args.root.root,
            args.sites,
            args.all,
        )),
        Some(Command::Rollback(args)) => {
            print_report(cli::publish::rollback(&args.fleet, &args.site))
        }
        Some(Command::Fleet(FleetCommand::Status(args))) => print_report(cli::status::status(args)),
        Some(Command::Fleet(FleetCommand::Logs(args))) => {
            cli::fleet_logs::run(args).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Runs a fleet command and prints its report.
fn print_report<E>(
    command: impl std::future::Future<Output = Result<String, E>>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    print!("{}", runtime()?.block_on(command)?);
    Ok(())
}
