//! agentsync links contact-center agents to their IDs in another system.
//!
//! One TOML file declares the pipeline, and the runner applies it in order:
//! **config** (`config`, `template`) → **source** pages over HTTP (`request`,
//! `http`, `pages`, `paginate`, `source`) → **mapping** of each record to
//! `{id, email}` with jq (`mapping`) → **match and plan** against the agent
//! directory (`plan`) → **apply** through a sink (`engine`, `sink`) →
//! **journal** (`state`) → **report** (`report`, `output`, `progress`).
//! `commands` turns each subcommand into those calls; [`main`] turns how it
//! ended into an exit code (`exit`).

mod action;
mod cli;
mod commands;
mod config;
mod contested;
mod describe;
mod engine;
mod exit;
mod http;
mod mapping;
mod mock;
mod output;
mod pages;
mod paginate;
mod plan;
mod progress;
mod redact;
mod report;
mod request;
mod sink;
mod source;
mod state;
mod template;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run the command, and map how it ended to the exit
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
    let result = commands::dispatch(cli);
    match &result {
        Ok(exit::Ending::Refused(why)) => {
            eprintln!(
                "agentsync: error: {}",
                redact::redact(&exit::refusal_message(why))
            );
        }
        Err(err) => eprintln!("agentsync: error: {}", redact::redact(&format!("{err:#}"))),
        Ok(_) => {}
    }
    ExitCode::from(exit::code(&result))
}
