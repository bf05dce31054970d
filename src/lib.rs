//! agentsync links contact-center agents to their IDs in another system.
//!
//! One TOML file declares the pipeline, and the runner applies it in order:
//! **config** (`config`, `template`) → **source** pages over HTTP (`request`,
//! `http`, `pages`, `paginate`, `source`) → **mapping** of each record to
//! `{id, email}` with jq (`mapping`) → **match and plan** against the agent
//! directory (`plan`) → **apply** through a sink (`engine`, `sink`) →
//! **journal** (`state`) → **report** (`report`, printed through `output`).
//! Everything prints through the ground floor (`term`, `redact`) and logging
//! (`progress`); docs/architecture.md has the floors.
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
mod jq_budget;
mod listen;
mod mapping;
#[cfg(feature = "mock")]
mod mock;
mod output;
mod pages;
mod paginate;
mod plan;
mod progress;
mod redact;
mod report;
mod request;
mod saved;
mod signals;
mod sink;
mod source;
mod state;
mod template;
mod term;

use std::process::ExitCode;

/// Parse the command line, run the command, and map how it ended to the exit
/// codes of the contract. A reader that closed stdout early is no failure:
/// every write of data goes through `exit::stdout`, which ends the output
/// quietly (no `println!`, which would panic).
#[must_use]
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse_args() {
        Ok(cli) => cli,
        // A usage error as a JSON line when JSON lines were asked for.
        Err(err) if err.use_stderr() && asks_for_json_log(std::env::args_os()) => {
            progress::set_log_format(progress::LogFormat::Json);
            progress::error(err.render().to_string().trim_end(), 2);
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    progress::set_verbosity(if cli.global.quiet {
        0
    } else if cli.global.verbose {
        2
    } else {
        1
    });
    progress::set_log_format(cli.global.log_format);
    term::set_color(cli.global.color);
    let result = commands::dispatch(cli);
    let code = exit::code(&result);
    match &result {
        Ok(exit::Ending::Refused(why)) => progress::error(&exit::refusal_message(why), code),
        Err(err) => match err.downcast_ref::<exit::Error>() {
            Some(exit::Error::Invalid(invalid)) => invalid.report(code),
            _ => {
                let (message, lines) = exit::message(err);
                progress::error_listed(&message, &lines, code);
            }
        },
        Ok(_) => {}
    }
    ExitCode::from(code)
}

/// Does a command line clap could not parse ask for `--log-format json`?
fn asks_for_json_log(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<_> = args.collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}
