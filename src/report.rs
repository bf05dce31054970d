//! What a run prints on stdout: the human diff of the plan (in the spirit of
//! `terraform plan`) or the JSON report of the contract, and the mapped users of
//! `fetch`.

use std::io::{self, Write};

use serde::Serialize;

use crate::plan::{Action, Conflict, Plan, Unmatched};
use crate::source::{Fetched, Skipped};

/// The status of one change in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Planned,
    Applied,
    Failed,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChangeReport {
    pub action: Action,
    pub email: String,
    pub agent_id: String,
    pub old_external_id: Option<String>,
    pub new_external_id: Option<String>,
    pub status: Status,
    pub error: Option<String>,
}

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
    pub failed: usize,
}

/// The report of a sync, as the contract spells it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub dry_run: bool,
    pub source: SourceReport,
    pub sink: SinkReport,
    pub summary: Summary,
    pub changes: Vec<ChangeReport>,
    pub unmatched: Vec<Unmatched>,
    pub conflicts: Vec<Conflict>,
}

impl Report {
    /// The report of a plan before anything is applied.
    pub(crate) fn new(dry_run: bool, fetched: &Fetched, agents: usize, plan: Plan) -> Self {
        let summary = Summary {
            link: plan.count(Action::Link),
            update: plan.count(Action::Update),
            unlink: plan.count(Action::Unlink),
            unchanged: plan.unchanged,
            unmatched: plan.unmatched.len(),
            conflict: plan.conflicts.len(),
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
            changes: plan
                .changes
                .into_iter()
                .map(|c| ChangeReport {
                    action: c.action,
                    email: c.email,
                    agent_id: c.agent_id,
                    old_external_id: c.old_external_id,
                    new_external_id: c.new_external_id,
                    status: Status::Planned,
                    error: None,
                })
                .collect(),
            unmatched: plan.unmatched,
            conflicts: plan.conflicts,
        }
    }

    pub(crate) fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub(crate) fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// The diff for people: changes grouped by action, then what was left out,
    /// then one summary line.
    pub(crate) fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        let width = self
            .changes
            .iter()
            .map(|c| c.email.chars().count())
            .max()
            .unwrap_or(0);
        let id = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        for action in [Action::Link, Action::Update, Action::Unlink] {
            let group: Vec<_> = self.changes.iter().filter(|c| c.action == action).collect();
            if group.is_empty() {
                continue;
            }
            writeln!(out, "{} ({}):", action.as_str(), group.len())?;
            let sign = match action {
                Action::Link => '+',
                Action::Update => '~',
                Action::Unlink => '-',
            };
            for c in group {
                let outcome = match (&c.status, &c.error) {
                    (Status::Failed, Some(e)) => format!("  FAILED: {e}"),
                    (Status::Failed, None) => "  FAILED".into(),
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
        } else if self.changes.iter().any(|c| c.status != Status::Planned) {
            "Applied"
        } else {
            "Nothing applied"
        };
        if self.changes.is_empty() && self.dry_run {
            writeln!(out, "No changes: the directory matches the source.")?;
        }
        writeln!(
            out,
            "{verb}: {} link, {} update, {} unlink, {} unchanged, {} unmatched, {} conflict, {} failed ({} users from {} pages, {} agents)",
            s.link,
            s.update,
            s.unlink,
            s.unchanged,
            s.unmatched,
            s.conflict,
            s.failed,
            self.source.users,
            self.source.pages,
            self.sink.agents
        )
    }
}

/// `fetch --output json`: `{"pages", "users", "skipped"}`.
pub(crate) fn write_fetch_json(fetched: &Fetched, out: &mut impl Write) -> io::Result<()> {
    #[derive(Serialize)]
    struct FetchReport<'a> {
        pages: u64,
        users: &'a [crate::mapping::User],
        skipped: &'a [Skipped],
    }
    serde_json::to_writer_pretty(
        &mut *out,
        &FetchReport {
            pages: fetched.pages,
            users: &fetched.users,
            skipped: &fetched.skipped,
        },
    )?;
    writeln!(out)
}

/// `fetch` for people: a two-column table of the users, then a summary.
pub(crate) fn write_fetch_human(fetched: &Fetched, out: &mut impl Write) -> io::Result<()> {
    let width = fetched
        .users
        .iter()
        .map(|u| u.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(2);
    writeln!(out, "{:<width$}  EMAIL", "ID")?;
    for u in &fetched.users {
        writeln!(out, "{:<width$}  {}", u.id, u.email)?;
    }
    for s in &fetched.skipped {
        writeln!(
            out,
            "skipped: page {} record {}: {}",
            s.page, s.index, s.reason
        )?;
    }
    writeln!(
        out,
        "{} users from {} records in {} page{}{}{}",
        fetched.users.len(),
        fetched.records,
        fetched.pages,
        if fetched.pages == 1 { "" } else { "s" },
        if fetched.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", fetched.skipped.len())
        },
        if fetched.sampled {
            " (sample: more pages left)"
        } else {
            ""
        }
    )
}
