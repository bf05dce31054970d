//! agentsync links contact-center agents to their IDs in another system.
//!
//! One TOML file declares the pipeline, and the runner applies it in order:
//! **config** (`config`, `template`) → **source** pages over HTTP (`http`,
//! `source`, `paginate`) → **mapping** of each record to `{id, email}` with jq
//! (`mapping`) → **match and plan** against the agent directory (`plan`) →
//! **apply** through a sink (`sink`) → **report** (`report`, `progress`).
//! `run` holds the commands; [`main`] turns their result into an exit code.

mod action;
mod cli;
mod config;
mod describe;
mod http;
mod journal;
mod lock;
mod mapping;
mod mock;
mod paginate;
mod plan;
mod prefetch;
mod progress;
mod redact;
mod report;
mod run;
mod sink;
mod source;
mod template;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run the command, and map the result to the exit
/// codes of the contract.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    progress::set_verbosity(if cli.global.quiet {
        0
    } else if cli.global.verbose {
        2
    } else {
        1
    });
    match run::dispatch(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) => {
            eprintln!("agentsync: error: {}", redact::redact(&format!("{err:#}")));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The exit code of an error: every exit code is decided here.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<config::ConfigError>().is_some()
        || err.downcast_ref::<run::UsageError>().is_some()
    {
        2
    } else if err.downcast_ref::<run::Refused>().is_some() {
        4
    } else {
        1
    }
}
