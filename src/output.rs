//! What commands print on stdout: every result is written either as one JSON
//! document (`--output json`) or for people, through [`emit`]. The report of
//! a sync has its own module ([`crate::report`]); the smaller results are here.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::cli::Output;
use crate::mapping::User;
use crate::source::{Fetched, Skipped};
use crate::state::journal::Entry;

/// A result that can be printed both ways: its JSON is its `Serialize` form.
pub(crate) trait Render: Serialize {
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Print `value` on stdout in the chosen format.
pub(crate) fn emit(format: Output, value: &impl Render) -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match format {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        }
        Output::Human => value.human(&mut out)?,
    }
    out.flush()
}

/// `fetch`: the mapped users, `{"pages", "users", "skipped"}` in JSON.
#[derive(Serialize)]
pub(crate) struct FetchView<'a> {
    pages: u64,
    users: &'a [User],
    skipped: &'a [Skipped],
    #[serde(skip)]
    fetched: &'a Fetched,
}

impl<'a> FetchView<'a> {
    pub(crate) fn new(fetched: &'a Fetched) -> Self {
        FetchView {
            pages: fetched.pages,
            users: &fetched.users,
            skipped: &fetched.skipped,
            fetched,
        }
    }
}

impl Render for FetchView<'_> {
    /// A two-column table of the users, then a summary.
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = self
            .users
            .iter()
            .map(|u| u.id.chars().count())
            .max()
            .unwrap_or(0)
            .max(2);
        writeln!(out, "{:<width$}  EMAIL", "ID")?;
        for u in self.users {
            writeln!(out, "{:<width$}  {}", u.id, u.email)?;
        }
        for s in self.skipped {
            writeln!(
                out,
                "skipped: page {} record {}: {}",
                s.page, s.index, s.reason
            )?;
        }
        writeln!(
            out,
            "{}{}",
            self.fetched.summary(),
            if self.fetched.sampled {
                " (sample: more pages left)"
            } else {
                ""
            }
        )
    }
}

/// `history`: the runs of a journal, oldest first.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct HistoryView<'a> {
    entries: &'a [Entry],
    #[serde(skip)]
    journal: &'a Path,
}

impl<'a> HistoryView<'a> {
    pub(crate) fn new(entries: &'a [Entry], journal: &'a Path) -> Self {
        HistoryView { entries, journal }
    }
}

impl Render for HistoryView<'_> {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.entries.is_empty() {
            writeln!(out, "no runs in {}", self.journal.display())?;
        }
        for e in self.entries {
            writeln!(
                out,
                "{}  {}  {:<24}  {:<13}  {} link, {} update, {} unlink, {} failed",
                e.run,
                e.time,
                e.kind,
                e.ending.as_str(),
                e.summary.link,
                e.summary.update,
                e.summary.unlink,
                e.summary.failed
            )?;
        }
        Ok(())
    }
}
