//! The view of `history`: the runs of a journal, oldest first, as a table
//! or as the journal's entries in JSON.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::journal::Entry;
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
                "RUN", "TIME", "KIND", "ENDING", "LINK", "UPDATE", "UNLINK", "FAILED",
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
            ]);
        }
        table.write(out, "")
    }
}
