//! The `outpost` command line: parses arguments and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use outpost::config::{Diagnostic, Overrides, Settings};

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

#[derive(Args)]
struct StatsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExplainArgs {
    /// The URL to explain, like http://casino-uk.localhost/reviews/
    url: String,
    #[command(flatten)]
    root: RootArg,
    /// The visitor's country (ISO code), instead of a geo lookup.
    #[arg(long)]
    country: Option<String>,
    /// A cookie the visitor sends, NAME=VALUE (repeatable).
    #[arg(long = "cookie")]
    cookies: Vec<String>,
    /// A header the visitor sends, 'Name: value' (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Also print the HTML sent.
    #[arg(long)]
    body: bool,
}

#[derive(Args)]
struct PreviewLinkArgs {
    /// The URL of a gated page.
    url: String,
    #[command(flatten)]
    root: RootArg,
    /// How long the link works: 30m, 12h, 7d...
    #[arg(long, default_value = "7d")]
    ttl: humantime::Duration,
}

#[derive(Args, Clone)]
struct RootArg {
    /// The root folder, holding sites/ and rules/.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    root: RootArg,
    /// Address of the public listener (overrides outpost.toml).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// MaxMind-format country database (overrides outpost.toml).
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// Follow the fleet at this NATS server: take every published version.
    #[arg(long)]
    fleet: Option<String>,
    /// This box's name in the fleet (default: the host name).
    #[arg(long)]
    box_id: Option<String>,
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
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check(args)) => return check(&args.root),
        Some(Command::Test(args)) => return rule_tests(&args.root),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::PreviewLink(args)) => preview_link(args),
        Some(Command::Stats(args)) => stats(args),
        Some(Command::Publish(args)) => print_report(outpost::cli::publish::publish(
            &args.fleet,
            &args.root.root,
            args.sites,
            args.all,
        )),
        Some(Command::Rollback(args)) => {
            print_report(outpost::cli::publish::rollback(&args.fleet, &args.site))
        }
        Some(Command::Fleet(args)) => print_report(outpost::cli::status::status(&args.fleet)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        geoip: args.geoip,
    };
    let settings = Settings::load(&args.root.root, &overrides)
        .map_err(|errs| anyhow::anyhow!(Diagnostic::lines(&errs)))?;
    // Many idle keep-alive connections need many descriptors.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let fleet = args.fleet.map(|url| outpost::server::Follow {
        url,
        box_id: args.box_id.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or("box".into(), |h| h.trim().to_string())
        }),
    });
    runtime.block_on(outpost::server::serve(settings, fleet))?;
    Ok(())
}

fn check(root: &std::path::Path) -> ExitCode {
    let report = outpost::check::check(root);
    for p in &report.problems {
        println!("{p}");
    }
    for w in &report.warnings {
        println!(
            "{}:{}:{}: warning: {}",
            w.file.display(),
            w.line,
            w.col,
            w.message
        );
    }
    if report.problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s)", report.problems.len());
        ExitCode::FAILURE
    }
}

fn rule_tests(root: &std::path::Path) -> ExitCode {
    match outpost::rule_tests::run(root) {
        Ok(report) => {
            for f in &report.failures {
                println!("{f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let country = match &args.country {
        Some(c) => Some(
            outpost::context::Country::parse_written(&c.to_ascii_uppercase())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let split =
        |items: &[String], sep: char, what: &str| -> anyhow::Result<Vec<(String, String)>> {
            items
                .iter()
                .map(|i| {
                    i.split_once(sep)
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .with_context(|| format!("`{i}` is not {what}"))
                })
                .collect()
        };
    let visit = outpost::offline::Visit {
        url: args.url,
        method: None,
        country,
        cookies: split(&args.cookies, '=', "NAME=VALUE")?,
        headers: split(&args.headers, ':', "'Name: value'")?,
    };
    let offline = outpost::offline::Offline::load(&args.root.root)?;
    print!(
        "{}",
        outpost::explain::explain(&offline, &visit, args.body)?
    );
    Ok(())
}

fn preview_link(args: PreviewLinkArgs) -> anyhow::Result<()> {
    let offline = outpost::offline::Offline::load(&args.root.root)?;
    let link = outpost::cli::preview_link::link(&offline, &args.url, *args.ttl)?;
    println!("{link}");
    Ok(())
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.root.root, &Overrides::default())
        .map_err(|errs| anyhow::anyhow!(Diagnostic::lines(&errs)))?;
    let reports = outpost::experiments::read_reports(&settings)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for e in &reports {
        println!("experiment {}", e.experiment);
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
    if reports.is_empty() {
        println!("no experiments");
    }
    Ok(())
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
