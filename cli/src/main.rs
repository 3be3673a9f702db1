//! The `strata` command: parses arguments, opens the engine, runs one
//! command, and maps errors to documented exit codes.

mod args;
mod commands;
mod config;
mod mount;
mod output;
mod progress;
mod validate;

use std::process::ExitCode;

use clap::Parser;
use strata_engine::{Engine, Error};

use args::{CatalogCommand, Cli, Command};

/// Exit codes, documented in `--help` and the README.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
    }
    match e.downcast_ref::<Error>() {
        Some(Error::NotFound { .. }) => 4,
        Some(Error::Busy(_) | Error::InvalidState(_) | Error::Precondition { .. }) => 5,
        Some(Error::Quota(_)) => 6,
        Some(Error::Cancelled) => 9,
        Some(Error::NotPermitted(_)) => 10,
        Some(Error::Corrupt { .. }) => 7,
        Some(Error::Io { .. } | Error::NoSpace { .. }) => 8,
        Some(Error::InvalidArgument(_) | Error::Unsupported(_)) => 2,
        _ => 1,
    }
}

/// The error and its causes, each said once: an engine error's text already
/// holds its source's.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    validate::arguments(cli)?;
    // A configuration that cannot be read or makes no sense is a usage error.
    let config = config::load(&cli.global).map_err(|e| Error::InvalidArgument(format!("{e:#}")))?;
    if let Command::Bench(args) = &cli.command {
        // Needs no catalog, and creates no repository.
        return commands::bench::run(&config, &cli.global, args).map(|()| 0);
    }
    if let Command::Catalog(CatalogCommand::Rebuild { force }) = &cli.command {
        // Makes the catalog: nothing may open it first.
        return commands::upkeep::rebuild(&config, &cli.global, *force);
    }
    let engine = Engine::open(config)?;
    if let Command::Serve(args) = &cli.command {
        return commands::serve::run(engine, args).map(|()| 0);
    }
    if let Command::Mount { mountpoint } = &cli.command {
        return mount::run(engine, mountpoint).map(|()| 0);
    }
    if !matches!(cli.command, Command::Check { .. }) {
        // Whatever a dead process left running is put right before anything
        // else looks at the catalog; `check` reports it instead.
        engine.cleanup(None)?;
    }
    match &cli.command {
        Command::Share(cmd) => commands::share::run(&engine, &cli.global, cmd).map(|()| 0),
        Command::Backup(cmd) => commands::backup::run(&engine, &cli.global, cmd),
        Command::Quota(cmd) => commands::quota::run(&engine, &cli.global, cmd).map(|()| 0),
        Command::Check {
            read_data,
            read_data_subset,
        } => commands::upkeep::check(
            &engine,
            &cli.global,
            *read_data || read_data_subset.is_some(),
            read_data_subset.as_deref(),
        ),
        Command::Bench(_) | Command::Catalog(_) => {
            Err(Error::Bug("bench and catalog rebuild run without the engine".into()).into())
        }
        Command::Cleanup { wait } => {
            commands::upkeep::cleanup(&engine, &cli.global, *wait).map(|()| 0)
        }
        Command::Repack {
            max_unused,
            dry_run,
            wait,
        } => commands::repack::run(&engine, &cli.global, max_unused, *dry_run, *wait),
        Command::Serve(_) | Command::Mount { .. } => {
            Err(Error::Bug("serve and mount run on an engine of their own".into()).into())
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
                eprintln!("error: {}", message(&e));
            }
            ExitCode::from(code)
        }
    }
}
