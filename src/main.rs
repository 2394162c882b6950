//! The `outpost` command line: parses arguments and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use outpost::config::{Overrides, Settings};

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
    /// Check settings and sites; print `file:line:col: message` per problem.
    Check(RootArg),
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check(args)) => return check(&args.root),
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
    let settings = Settings::load(&args.root.root, &overrides).map_err(|errs| {
        anyhow::anyhow!(errs
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(outpost::server::serve(settings))?;
    Ok(())
}

fn check(root: &std::path::Path) -> ExitCode {
    let problems = outpost::check::check(root);
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}
