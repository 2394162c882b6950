//! The `outpost` command line: parses arguments and calls the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use outpost::cli::explain::ExplainArgs;
use outpost::cli::preview_link::PreviewLinkArgs;
use outpost::cli::serve::ServeArgs;
use outpost::cli::stats::StatsArgs;
use outpost::cli::{self, RootArg};
use outpost::config::Diagnostic;

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
    /// The fleet: which version each box serves.
    Fleet(FleetArgs),
}

#[derive(Args)]
struct PublishArgs {
    /// The sites to publish (or --all).
    sites: Vec<String>,
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    root: RootArg,
    /// The fleet's NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    fleet: String,
}

#[derive(Args)]
struct RollbackArgs {
    site: String,
    /// The fleet's NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    fleet: String,
}

#[derive(Args)]
struct FleetArgs {
    /// `status`
    #[arg(value_parser = ["status"])]
    what: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    fleet: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one-shot commands print their own report; only problems are logged.
    let quiet = !matches!(cli.command, None | Some(Command::Serve(_)));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
                .unwrap_or_else(|_| if quiet { "warn" } else { "info" }.into()),
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
        Some(Command::Publish(args)) => publish(args),
        Some(Command::Rollback(args)) => fleet_rollback(args),
        Some(Command::Fleet(args)) => fleet_status(args),
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

fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let mut sites = args.sites;
    if args.all {
        for entry in std::fs::read_dir(args.root.root.join("sites")).context("listing sites/")? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                sites.push(name);
            }
        }
        sites.sort();
    }
    anyhow::ensure!(!sites.is_empty(), "name the sites to publish, or --all");
    let problems = outpost::check::check(&args.root.root).problems;
    anyhow::ensure!(
        problems.is_empty(),
        "not published: `outpost check` finds problems:\n{}",
        Diagnostic::lines(&problems)
    );
    let report = runtime()?.block_on(outpost::fleet::publish(
        &args.fleet,
        &args.root.root,
        &sites,
    ))?;
    for (key, version, new, total) in report {
        println!("{key}: version {version} ({new} of {total} files new to the fleet)");
    }
    Ok(())
}

fn fleet_rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let version = runtime()?.block_on(outpost::fleet::rollback(&args.fleet, &args.site))?;
    println!("{}: every box now takes version {version}", args.site);
    Ok(())
}

fn fleet_status(args: FleetArgs) -> anyhow::Result<()> {
    let boxes = runtime()?.block_on(outpost::fleet::status(&args.fleet))?;
    for (name, report) in &boxes {
        println!("{name}");
        if let Some(served) = report["served"].as_object() {
            for (site, version) in served {
                println!("  {site}: {}", version.as_str().unwrap_or_default());
            }
        }
    }
    if boxes.is_empty() {
        println!("no boxes have reported");
    }
    Ok(())
}
