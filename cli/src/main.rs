//! The `strata` command: parses arguments, opens the engine, runs one
//! command, and maps errors to documented exit codes.

mod args;
mod commands;
mod config;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use strata_engine::{Engine, Error};

use args::{Cli, Command};

/// Exit codes, documented in `--help` and the README.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
    }
    match e.downcast_ref::<Error>() {
        Some(Error::NotFound { .. }) => 4,
        Some(Error::Busy(_) | Error::InvalidState(_)) => 5,
        Some(Error::Quota(_)) => 6,
        Some(Error::Cancelled) => 9,
        Some(Error::Corrupt { .. }) => 7,
        Some(Error::Io { .. } | Error::NoSpace { .. }) => 8,
        Some(Error::InvalidArgument(_) | Error::Unsupported(_)) => 2,
        _ => 1,
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let config = config::load(&cli.global)?;
    if let Command::Bench(args) = &cli.command {
        // Needs no catalog, and creates no repository.
        return commands::bench::run(&config, &cli.global, args).map(|()| 0);
    }
    let mut engine = Engine::open(config)?;
    match &cli.command {
        Command::Share(cmd) => commands::share::run(&engine, &cli.global, cmd).map(|()| 0),
        Command::Backup(cmd) => commands::backup::run(&mut engine, &cli.global, cmd),
        Command::Quota(cmd) => commands::quota::run(&engine, &cli.global, cmd).map(|()| 0),
        Command::Check => commands::quota::check(&engine, &cli.global),
        Command::Bench(_) => Err(Error::Bug("bench runs without the engine".into()).into()),
        Command::Cleanup { wait } => {
            commands::quota::cleanup(&mut engine, &cli.global, *wait).map(|()| 0)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            if code != 0 {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
