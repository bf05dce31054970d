//! The view of `history`: the runs of a journal, oldest first, as a table
//! or as the journal's entries in JSON; and of a `revert last` that found
//! nothing to undo.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::journal::Entry;
use super::runs::NothingToUndo;
use crate::output::Render;
use crate::term::{Cell, Table, style};

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
            return Ok(());
        }
        let mut table = Table::new().right(4).right(5).right(6).right(7);
        table.row(
            [
                "RUN", "TIME", "KIND", "ENDING", "LINK", "UPDATE", "UNLINK", "FAILED", "REVERTED",
            ]
            .map(|h| Cell::plain(h).styled(style::HEADING)),
        );
        for e in self.entries {
            let s = &e.summary;
            let failed = Cell::plain(s.failed.to_string());
            table.row([
                Cell::value(&e.run),
                Cell::value(&e.time),
                Cell::value(&e.kind),
                Cell::plain(e.ending.as_str()),
                Cell::plain(s.link.to_string()),
                Cell::plain(s.update.to_string()),
                Cell::plain(s.unlink.to_string()),
                if s.failed > 0 {
                    failed.styled(style::FAILED)
                } else {
                    failed
                },
                match (&e.reverted_by, e.reverted) {
                    (Some(by), Some("whole")) => Cell::value(&format!("by {by}")),
                    (Some(by), _) => Cell::value(&format!("in part, by {by}")),
                    (None, _) => Cell::plain("-"),
                },
            ]);
        }
        table.write(out, "")
    }
}

/// `revert last` with nothing to undo: why, and the run to give instead.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct NothingView<'a>(pub &'a NothingToUndo);

impl Render for NothingView<'_> {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.0.message())
    }
}
