//! The report of a sync or a revert: the contract's JSON document, and the
//! human diff of the plan (in the spirit of `terraform plan`).

use std::io::{self, Write};

use serde::Serialize;

use crate::contested::Contested;
use crate::output::Render;
use crate::plan::{Change, ChangeKind, Conflict, Plan, Status, Unmatched};
use crate::source::write_skipped;
use crate::source::{Fetched, Skipped};
use crate::term::{Cell, Paint, Table, count, escape, style, width};

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

/// The report's counts. `link`, `update` and `unlink` count the changes
/// applied (planned, in a dry run or a refused run, where nothing is
/// written); `failed`, `skipped`, `stale` and `unknown` count the rest, so
/// that every change is counted once.
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
    pub skipped: usize,
    pub stale: usize,
    pub unknown: usize,
}

/// The report of a sync, as the contract spells it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub dry_run: bool,
    /// Why the plan is not (or would not be) applied: a safety limit.
    pub refusal: Option<String>,
    /// The saved plan this run applied (`agentsync apply`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::saved::PlanRef>,
    pub source: SourceReport,
    pub sink: SinkReport,
    pub summary: Summary,
    /// The changes as the contract spells them (a saved plan also keeps each
    /// agent's version; the report does not).
    #[serde(serialize_with = "contract_changes")]
    pub changes: Vec<Change>,
    pub unmatched: Vec<Unmatched>,
    pub conflicts: Vec<Conflict>,
    /// Agents whose external ID someone else changed since agentsync set it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contested: Vec<Contested>,
    /// The signal that stopped the writes, if one did.
    #[serde(skip)]
    pub interrupted: Option<&'static str>,
    /// Directory agents no source user has, left as they are (told to
    /// people; the JSON counts the plan's records).
    #[serde(skip)]
    pub not_in_source: usize,
    /// The columns the human summary wraps at (stdout's, when a terminal).
    #[serde(skip)]
    pub columns: Option<usize>,
}

/// `changes` without their versions: the contract's change object.
fn contract_changes<S: serde::Serializer>(changes: &[Change], ser: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        action: ChangeKind,
        email: &'a str,
        agent_id: &'a str,
        old_external_id: Option<&'a str>,
        new_external_id: Option<&'a str>,
        status: Status,
        error: Option<&'a str>,
    }
    ser.collect_seq(changes.iter().map(|c| Shown {
        action: c.kind,
        email: &c.email,
        agent_id: &c.agent_id,
        old_external_id: c.old_external_id.as_deref(),
        new_external_id: c.new_external_id.as_deref(),
        status: c.status,
        error: c.error.as_deref(),
    }))
}

impl Report {
    /// The report of a plan before anything is applied.
    pub(crate) fn new(dry_run: bool, fetched: &Fetched, agents: usize, plan: Plan) -> Self {
        let summary = Summary {
            unchanged: plan.unchanged,
            unmatched: plan.unmatched.len(),
            conflict: plan.conflicts.len(),
            ..Summary::default()
        };
        let mut report = Report {
            dry_run,
            refusal: None,
            plan: None,
            source: SourceReport {
                pages: fetched.pages,
                records: fetched.records,
                users: fetched.user_count(),
                skipped: fetched.skipped.clone(),
            },
            sink: SinkReport { agents },
            summary,
            changes: plan.changes,
            unmatched: plan.unmatched,
            conflicts: plan.conflicts,
            contested: Vec::new(),
            interrupted: None,
            not_in_source: plan.not_in_source,
            columns: crate::term::stdout_columns(),
        };
        report.count_outcomes();
        report
    }

    /// Count the changes by outcome into the summary: applied (or planned,
    /// where nothing is written) by kind, and the rest by status.
    pub(crate) fn count_outcomes(&mut self) {
        let s = &mut self.summary;
        (s.link, s.update, s.unlink) = (0, 0, 0);
        (s.failed, s.skipped, s.stale, s.unknown) = (0, 0, 0, 0);
        for c in &self.changes {
            let slot = match c.status {
                Status::Planned | Status::Applied => match c.kind {
                    ChangeKind::Link => &mut s.link,
                    ChangeKind::Update => &mut s.update,
                    ChangeKind::Unlink => &mut s.unlink,
                },
                Status::Failed => &mut s.failed,
                Status::Skipped => &mut s.skipped,
                Status::Stale => &mut s.stale,
                Status::Unknown => &mut s.unknown,
            };
            *slot += 1;
        }
    }

    /// The contested agents whose change was applied (planned, where nothing
    /// is written): overwritten by this run.
    pub(crate) fn contested_overwritten(&self) -> usize {
        if self.contested.is_empty() {
            return 0;
        }
        let ids: std::collections::HashSet<&str> =
            self.contested.iter().map(|c| c.agent_id.as_str()).collect();
        self.changes
            .iter()
            .filter(|c| matches!(c.status, Status::Applied | Status::Planned))
            .filter(|c| ids.contains(c.agent_id.as_str()))
            .count()
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
    /// then one summary line. Every value from the source or the directory is
    /// escaped; columns line up across the groups of changes.
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        self.human_changes(out)?;
        self.human_left_out(out)?;
        self.human_summary(out)
    }
}

impl Report {
    /// The changes, a table per kind.
    fn human_changes(&self, out: &mut dyn Write) -> io::Result<()> {
        let email_width = self
            .changes
            .iter()
            .map(|c| width(&escape(&c.email)))
            .max()
            .unwrap_or(0);
        for kind in [ChangeKind::Link, ChangeKind::Update, ChangeKind::Unlink] {
            let group: Vec<_> = self.changes.iter().filter(|c| c.kind == kind).collect();
            if group.is_empty() {
                continue;
            }
            let (sign, paint) = match kind {
                ChangeKind::Link => ('+', style::ADD),
                ChangeKind::Update => ('~', style::CHANGE),
                ChangeKind::Unlink => ('-', style::REMOVE),
            };
            writeln!(
                out,
                "{} ({}):",
                Paint(style::HEADING, kind.as_str()),
                group.len()
            )?;
            let mut table = Table::new()
                .min_width(1, email_width)
                .gap(1, " ")
                .gap(3, " ")
                .gap(4, " ");
            for c in group {
                let outcome = match c.status {
                    Status::Failed => Some(("FAILED", style::FAILED)),
                    Status::Skipped => Some(("SKIPPED", style::WARN)),
                    Status::Stale => Some(("STALE", style::WARN)),
                    Status::Unknown => Some(("UNKNOWN", style::ATTENTION)),
                    Status::Planned | Status::Applied => None,
                };
                let outcome = match (outcome, &c.error) {
                    (Some((word, paint)), Some(e)) => {
                        Cell::plain(format!("{word}: {}", escape(e))).styled(paint)
                    }
                    (Some((word, paint)), None) => Cell::plain(word).styled(paint),
                    (None, _) => Cell::plain(""),
                };
                table.row([
                    Cell::plain(sign.to_string()).styled(paint),
                    Cell::value(&c.email),
                    id_cell(c.old_external_id.as_deref()),
                    Cell::plain("->"),
                    id_cell(c.new_external_id.as_deref()).styled(paint),
                    outcome,
                ]);
            }
            table.write(out, "  ")?;
        }
        Ok(())
    }

    /// What the plan left out: unmatched users, conflicts, contested agents,
    /// skipped source records.
    fn human_left_out(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.unmatched.is_empty() {
            writeln!(
                out,
                "{} ({}):",
                Paint(style::HEADING, "unmatched, no agent with this email"),
                self.unmatched.len()
            )?;
            let mut table = Table::new().gap(1, " ");
            for u in &self.unmatched {
                table.row([
                    Cell::plain("?").styled(style::DIM),
                    Cell::value(&u.email),
                    Cell::value(&u.external_id),
                ]);
            }
            table.write(out, "  ")?;
        }
        if !self.conflicts.is_empty() {
            writeln!(
                out,
                "{} ({}):",
                Paint(style::ATTENTION, "conflict, left untouched"),
                self.conflicts.len()
            )?;
            let mut table = Table::new().gap(1, " ");
            for c in &self.conflicts {
                table.row([
                    Cell::plain("!").styled(style::ATTENTION),
                    Cell::value(&c.email),
                    Cell::value(&c.reason),
                ]);
            }
            table.write(out, "  ")?;
        }
        if !self.contested.is_empty() {
            writeln!(
                out,
                "{} ({}):",
                Paint(
                    style::ATTENTION,
                    "contested, someone else changed the external ID since agentsync set it"
                ),
                self.contested.len()
            )?;
            let mut table = Table::new().gap(1, " ");
            for c in &self.contested {
                table.row([
                    Cell::plain("!").styled(style::ATTENTION),
                    Cell::value(&c.email),
                    Cell::plain("now"),
                    id_cell(c.external_id.as_deref()),
                    Cell::plain("set to"),
                    id_cell(c.set_by_us.as_deref()),
                    Cell::plain("by run"),
                    Cell::value(&c.run),
                ]);
            }
            table.write(out, "  ")?;
        }
        if !self.source.skipped.is_empty() {
            writeln!(
                out,
                "{} ({}):",
                Paint(style::HEADING, "skipped source records"),
                self.source.skipped.len()
            )?;
            write_skipped(out, &self.source.skipped, "  ")?;
        }
        Ok(())
    }

    /// Why the run was refused (if it was), then the one summary line.
    fn human_summary(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.summary;
        let written = self
            .changes
            .iter()
            .any(|c| matches!(c.status, Status::Applied | Status::Failed | Status::Unknown));
        let verb = match self.interrupted {
            _ if self.dry_run => "Plan".to_owned(),
            Some(signal) => format!(
                "Interrupted by {signal}, {} not attempted",
                count(s.skipped as u64, "change")
            ),
            None if written => "Applied".to_owned(),
            None if self.refusal.is_some() => "Nothing applied, planned".to_owned(),
            None => "Nothing applied".to_owned(),
        };
        if let Some(why) = &self.refusal {
            writeln!(out, "Refused: {why}")?;
        }
        if self.changes.is_empty() && self.dry_run {
            writeln!(out, "No changes: the directory matches the source.")?;
        }
        // The counts are named as in the JSON summary; those of outcomes
        // other than applied are shown when there are any.
        let plain = |n: usize, what: &str| (format!("{n} {what}"), style::PLAIN);
        let mut items = vec![
            plain(s.link, "link"),
            plain(s.update, "update"),
            plain(s.unlink, "unlink"),
            plain(s.unchanged, "unchanged"),
            plain(s.unmatched, "unmatched"),
            plain(s.conflict, "conflict"),
            (
                format!("{} failed", s.failed),
                if s.failed > 0 {
                    style::FAILED
                } else {
                    style::PLAIN
                },
            ),
        ];
        for (n, what) in [
            (s.skipped, "skipped"),
            (s.stale, "stale"),
            (s.unknown, "unknown"),
        ] {
            if n > 0 {
                items.push(plain(n, what));
            }
        }
        if s.contested > 0 {
            let overwritten = self.contested_overwritten();
            items.push(plain(
                s.contested,
                &match overwritten {
                    0 => "contested (left as they are)".to_owned(),
                    n if self.dry_run || !written => format!("contested ({n} to overwrite)"),
                    n => format!("contested ({n} overwritten)"),
                },
            ));
        }
        // A saved plan read no source: only the directory is told.
        let agents = count(self.sink.agents as u64, "agent");
        let not_in_source = match self.not_in_source {
            0 => String::new(),
            n => format!(", {n} not in the source"),
        };
        let tail = if self.plan.is_some() {
            format!("({agents})")
        } else {
            format!(
                "({} from {}, {agents}{not_in_source})",
                count(self.source.users as u64, "user"),
                count(self.source.pages, "page"),
            )
        };
        let head = format!("{verb}:");
        let paint = |style, text: &str| Paint(style, text).to_string();
        let line = crate::term::wrapped_list(&head, &items, &tail, self.columns, paint);
        // The head painted apart: its width was counted without colour.
        let line = line.replacen(&head, &format!("{}:", Paint(style::HEADING, &verb)), 1);
        writeln!(out, "{line}")
    }
}

/// An external ID in a table, `(none)` dimmed where there is none.
fn id_cell(v: Option<&str>) -> Cell {
    match v {
        Some(v) => Cell::value(v),
        None => Cell::plain("(none)").styled(style::DIM),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Conflict, Unmatched};

    fn change(kind: ChangeKind, email: &str, old: Option<&str>, new: Option<&str>) -> Change {
        Change {
            kind,
            email: email.into(),
            agent_id: "a".into(),
            old_external_id: old.map(Into::into),
            new_external_id: new.map(Into::into),
            status: Status::Planned,
            error: None,
            version: None,
        }
    }

    fn human(report: &Report) -> String {
        let mut out = Vec::new();
        report.human(&mut out).unwrap();
        anstream::adapter::strip_str(&String::from_utf8(out).unwrap()).to_string()
    }

    fn report(changes: Vec<Change>) -> Report {
        Report {
            dry_run: true,
            refusal: None,
            plan: None,
            source: SourceReport {
                pages: 1,
                records: 1,
                users: 1,
                skipped: Vec::new(),
            },
            sink: SinkReport { agents: 1 },
            summary: Summary::default(),
            changes,
            unmatched: vec![
                Unmatched {
                    email: "b@x.com".into(),
                    external_id: "1".into(),
                },
                Unmatched {
                    email: "longer@x.com".into(),
                    external_id: "22".into(),
                },
            ],
            conflicts: vec![Conflict {
                email: "c@x.com".into(),
                reason: "2 ids in the source: 7, 9".into(),
            }],
            contested: Vec::new(),
            interrupted: None,
            not_in_source: 0,
            columns: None,
        }
    }

    #[test]
    fn the_summary_fits_the_columns_and_tells_agents_not_in_the_source() {
        let mut r = report(vec![change(ChangeKind::Link, "a@x.com", None, Some("1"))]);
        r.summary.link = 13;
        r.summary.update = 3;
        r.summary.unchanged = 7;
        r.summary.contested = 2;
        r.source.users = 1234;
        r.sink.agents = 26;
        r.not_in_source = 3;
        let one_line = human(&r);
        let last = one_line.lines().last().unwrap();
        assert_eq!(
            last,
            "Plan: 13 link, 3 update, 0 unlink, 7 unchanged, 0 unmatched, 0 conflict, 0 failed, 2 contested (left as they are) (1234 users from 1 page, 26 agents, 3 not in the source)"
        );
        r.columns = Some(80);
        let text = human(&r);
        let summary: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Plan:"))
            .collect();
        assert!(summary.len() > 1, "{text}");
        for line in &summary {
            assert!(width(line) <= 80, "{} columns: {line:?}", width(line));
        }
        assert!(summary.join(" ").contains("3 not in the source)"), "{text}");
        // A saved plan read no source: no "0 users from 0 pages".
        r.plan = Some(crate::saved::PlanRef {
            path: "plan.json".into(),
            made: "t".into(),
        });
        let text = human(&r);
        assert!(text.contains("(26 agents)"), "{text}");
        assert!(!text.contains("users from"), "{text}");
    }

    #[test]
    fn columns_line_up_and_counts_agree_with_their_nouns() {
        let text = human(&report(vec![
            change(ChangeKind::Link, "a@x.com", None, Some("1")),
            change(ChangeKind::Update, "longer@x.com", Some("old-2"), Some("2")),
            change(ChangeKind::Update, "u@x.com", Some("7"), Some("3")),
        ]));
        assert!(text.contains("  + a@x.com       (none) -> 1\n"), "{text}");
        assert!(text.contains("  ~ longer@x.com  old-2 -> 2\n"), "{text}");
        assert!(text.contains("  ~ u@x.com       7     -> 3\n"), "{text}");
        assert!(
            text.contains("  ? b@x.com       1\n  ? longer@x.com  22\n"),
            "{text}"
        );
        assert!(text.contains("(1 user from 1 page, 1 agent)"), "{text}");
    }

    #[test]
    fn values_from_servers_cannot_forge_lines_or_escape_codes() {
        let mut forged = change(
            ChangeKind::Link,
            "\u{1b}[2Ja@x.com",
            None,
            Some("7\nApplied: 0 link (all good)"),
        );
        forged.status = Status::Failed;
        forged.error = Some("HTTP 400: \u{1b}]0;title\u{7}".into());
        let text = human(&report(vec![forged]));
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(!text.contains('\u{7}'), "{text:?}");
        assert!(
            text.contains("\\u{1b}[2Ja@x.com  (none) -> 7\\nApplied: 0 link (all good)  FAILED: HTTP 400: \\u{1b}]0;title\\u{7}\n"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("Applied")), "{text}");
    }
}
