//! The view of `fetch`: the mapped users as a table, or `{"pages", "users",
//! "skipped"}` in JSON; and the skipped records, which the report shows too.

use std::io::{self, Write};

use serde::Serialize;

use super::{Fetched, Skipped};
use crate::mapping::User;
use crate::output::Render;
use crate::term::{Cell, Table, style};

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
        let mut table = Table::new();
        table.row([
            Cell::plain("ID").styled(style::HEADING),
            Cell::plain("EMAIL").styled(style::HEADING),
        ]);
        for u in self.users {
            table.row([Cell::value(&u.id), Cell::value(&u.email)]);
        }
        table.write(out, "")?;
        write_skipped(out, self.skipped, "skipped: ")?;
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

/// Skipped source records, one a line after `indent`, page and record aligned.
pub(crate) fn write_skipped(
    out: &mut dyn Write,
    skipped: &[Skipped],
    indent: &str,
) -> io::Result<()> {
    let mut table = Table::new();
    for s in skipped {
        table.row([
            Cell::plain(format!("page {}", s.page)),
            Cell::plain(format!("record {}:", s.index)),
            Cell::value(&s.reason).styled(style::WARN),
        ]);
    }
    table.write(out, indent)
}
