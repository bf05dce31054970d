//! What commands print on stdout: every result is written either as one JSON
//! document (`--output json`) or for people, through [`emit`]. Each result's
//! view lives beside the code that makes it (the report in
//! [`crate::report`], fetched users in `source/view.rs`, the journal's runs in
//! `state/history.rs`); the pieces they share are in [`crate::term`].

use std::io::{self, Write};

use serde::Serialize;

use crate::redact::Writer;
use crate::term::color_stdout;

/// `--output`: how a command prints its result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

/// A result that can be printed both ways: its JSON is its `Serialize` form.
/// The human form may carry styles; [`emit`] drops them where colour is off.
pub(crate) trait Render: Serialize {
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Print `value` on stdout in the chosen format.
pub(crate) fn emit(format: Output, value: &impl Render) -> io::Result<()> {
    match format {
        Output::Json => {
            let mut out = io::BufWriter::new(Writer::new(io::stdout().lock()));
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
            out.flush()
        }
        Output::Human => {
            let mut out = io::BufWriter::new(stdout());
            value.human(&mut out)?;
            out.flush()
        }
    }
}

/// Stdout for people: styles pass through when colour is on, and are dropped
/// otherwise; secrets are masked.
pub(crate) fn stdout() -> Writer<anstream::AutoStream<io::StdoutLock<'static>>> {
    let choice = if color_stdout() {
        anstream::ColorChoice::AlwaysAnsi
    } else {
        anstream::ColorChoice::Never
    };
    Writer::new(anstream::AutoStream::new(io::stdout().lock(), choice))
}
