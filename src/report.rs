//! The report of a sync or a revert: the contract's JSON document, and the
//! human diff of the plan (in the spirit of `terraform plan`).

use std::io::{self, Write};

use serde::Serialize;

use crate::contested::Contested;
use crate::output::Render;
use crate::plan::{Change, ChangeKind, Conflict, Plan, Status, Unmatched};
use crate::source::{Fetched, Skipped};

#[derive(Debug, Serialize)]
pub(crate) struct SourceReport {
    pub pages: u64,
    pub records: u64,
    pub users: usize,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SinkReport {
    pub agents: usize,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub link: usize,
    pub update: usize,
    pub unlink: usize,
    pub unchanged: usize,
    pub unmatched: usize,
    pub conflict: usize,
    pub contested: usize,
    pub failed: usize,
}

/// The report of a sync, as the contract spells it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub dry_run: bool,
    pub source: SourceReport,
    pub sink: SinkReport,
    pub summary: Summary,
    pub changes: Vec<Change>,
    pub unmatched: Vec<Unmatched>,
    pub conflicts: Vec<Conflict>,
    /// Agents whose external ID someone else changed since agentsync set it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contested: Vec<Contested>,
}

impl Report {
    /// The report of a plan before anything is applied.
    pub(crate) fn new(dry_run: bool, fetched: &Fetched, agents: usize, plan: Plan) -> Self {
        let summary = Summary {
            link: plan.count(ChangeKind::Link),
            update: plan.count(ChangeKind::Update),
            unlink: plan.count(ChangeKind::Unlink),
            unchanged: plan.unchanged,
            unmatched: plan.unmatched.len(),
            conflict: plan.conflicts.len(),
            contested: 0,
            failed: 0,
        };
        Report {
            dry_run,
            source: SourceReport {
                pages: fetched.pages,
                records: fetched.records,
                users: fetched.users.len(),
                skipped: fetched.skipped.clone(),
            },
            sink: SinkReport { agents },
            summary,
            changes: plan.changes,
            unmatched: plan.unmatched,
            conflicts: plan.conflicts,
            contested: Vec::new(),
        }
    }

    /// Add the contested agents (see [`crate::contested`]).
    pub(crate) fn with_contested(mut self, contested: Vec<Contested>) -> Self {
        self.summary.contested = contested.len();
        self.contested = contested;
        self
    }

    pub(crate) fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

impl Render for Report {
    /// The diff for people: changes grouped by kind, then what was left out,
    /// then one summary line.
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = self
            .changes
            .iter()
            .map(|c| c.email.chars().count())
            .max()
            .unwrap_or(0);
        let id = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        for kind in [ChangeKind::Link, ChangeKind::Update, ChangeKind::Unlink] {
            let group: Vec<_> = self.changes.iter().filter(|c| c.kind == kind).collect();
            if group.is_empty() {
                continue;
            }
            writeln!(out, "{} ({}):", kind.as_str(), group.len())?;
            let sign = match kind {
                ChangeKind::Link => '+',
                ChangeKind::Update => '~',
                ChangeKind::Unlink => '-',
            };
            for c in group {
                let outcome = match (&c.status, &c.error) {
                    (Status::Failed, Some(e)) => format!("  FAILED: {e}"),
                    (Status::Failed, None) => "  FAILED".into(),
                    (Status::Skipped, Some(e)) => format!("  SKIPPED: {e}"),
                    (Status::Skipped, None) => "  SKIPPED".into(),
                    (Status::Stale, Some(e)) => format!("  STALE: {e}"),
                    (Status::Stale, None) => "  STALE".into(),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "  {sign} {:<width$}  {} -> {}{outcome}",
                    c.email,
                    id(&c.old_external_id),
                    id(&c.new_external_id),
                )?;
            }
        }
        if !self.unmatched.is_empty() {
            writeln!(
                out,
                "unmatched, no agent with this email ({}):",
                self.unmatched.len()
            )?;
            for u in &self.unmatched {
                writeln!(out, "  ? {}  {}", u.email, u.external_id)?;
            }
        }
        if !self.conflicts.is_empty() {
            writeln!(out, "conflict, left untouched ({}):", self.conflicts.len())?;
            for c in &self.conflicts {
                writeln!(out, "  ! {}  {}", c.email, c.reason)?;
            }
        }
        if !self.contested.is_empty() {
            writeln!(
                out,
                "contested, someone else changed the external ID since agentsync set it ({}):",
                self.contested.len()
            )?;
            for c in &self.contested {
                writeln!(
                    out,
                    "  ! {}  now {}, set to {} by run {}",
                    c.email,
                    id(&c.external_id),
                    id(&c.set_by_us),
                    c.run
                )?;
            }
        }
        if !self.source.skipped.is_empty() {
            writeln!(
                out,
                "skipped source records ({}):",
                self.source.skipped.len()
            )?;
            for s in &self.source.skipped {
                writeln!(out, "  page {} record {}: {}", s.page, s.index, s.reason)?;
            }
        }
        let s = &self.summary;
        let verb = if self.dry_run {
            "Plan"
        } else if self
            .changes
            .iter()
            .any(|c| matches!(c.status, Status::Applied | Status::Failed))
        {
            "Applied"
        } else {
            "Nothing applied"
        };
        if self.changes.is_empty() && self.dry_run {
            writeln!(out, "No changes: the directory matches the source.")?;
        }
        writeln!(
            out,
            "{verb}: {} link, {} update, {} unlink, {} unchanged, {} unmatched, {} conflict, {} failed{} ({} users from {} pages, {} agents)",
            s.link,
            s.update,
            s.unlink,
            s.unchanged,
            s.unmatched,
            s.conflict,
            s.failed,
            if s.contested > 0 {
                format!(", {} contested", s.contested)
            } else {
                String::new()
            },
            self.source.users,
            self.source.pages,
            self.sink.agents
        )
    }
}
