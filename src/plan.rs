//! Matching by email and the plan: which agents get linked, updated, unlinked
//! or left alone, which source users have no agent, and which emails are in
//! conflict. Pure data in, pure data out; applying it is someone else's job.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::mapping::User;

/// One agent as the directory holds it: what a sink lists and the plan
/// matches on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agent {
    /// The directory's own identifier (SCIM `id`, or the row number of a file).
    pub id: String,
    /// The email as the directory holds it (not normalised).
    pub email: String,
    pub external_id: Option<String>,
}

/// What one change does to an agent's external ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChangeKind {
    Link,
    Update,
    Unlink,
}

impl ChangeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Link => "link",
            ChangeKind::Update => "update",
            ChangeKind::Unlink => "unlink",
        }
    }
}

/// Where a change stands: planned, then applied, failed, or not attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Planned,
    Applied,
    /// The write was sent and refused or lost; `error` says why.
    Failed,
    /// Not attempted: the directory refused writes, or the run was interrupted.
    Skipped,
    /// A saved plan's agent changed since the plan; not written.
    Stale,
    /// The write's answer was lost and reading the agent back could not
    /// tell whether it landed; `error` says what was read.
    Unknown,
}

/// One write: planned here, applied by the engine, printed in the report and
/// kept in the journal, as this one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    #[serde(rename = "action")]
    pub kind: ChangeKind,
    /// The agent's email as the directory holds it.
    pub email: String,
    pub agent_id: String,
    pub old_external_id: Option<String>,
    pub new_external_id: Option<String>,
    pub status: Status,
    /// Why the write failed.
    pub error: Option<String>,
    /// The agent's `meta.version` when the change was planned, where the
    /// directory has versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Change {
    /// The planned change that sets `agent`'s external ID to `new_external_id`
    /// (`None` clears it).
    pub(crate) fn setting(agent: &Agent, new_external_id: Option<String>) -> Self {
        let kind = match (&agent.external_id, &new_external_id) {
            (None, _) => ChangeKind::Link,
            (Some(_), None) => ChangeKind::Unlink,
            (Some(_), Some(_)) => ChangeKind::Update,
        };
        Change {
            kind,
            email: agent.email.clone(),
            agent_id: agent.id.clone(),
            old_external_id: agent.external_id.clone(),
            new_external_id,
            status: Status::Planned,
            error: None,
            version: None,
        }
    }

    /// Mark the change failed with `err`, secrets masked.
    pub(crate) fn fail(&mut self, err: &anyhow::Error) {
        self.status = Status::Failed;
        self.error = Some(crate::redact::redact(&format!("{err:#}")));
    }

    /// Mark the change's outcome unknown, with what was read back.
    pub(crate) fn unknown(&mut self, err: &anyhow::Error) {
        self.status = Status::Unknown;
        self.error = Some(crate::redact::redact(&format!("{err:#}")));
    }

    /// Mark the change not attempted, and why.
    pub(crate) fn skip(&mut self, why: &str) {
        self.status = Status::Skipped;
        self.error = Some(why.to_owned());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Unmatched {
    pub email: String,
    pub external_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Conflict {
    pub email: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Grouped by action (link, update, unlink), then by email.
    pub changes: Vec<Change>,
    pub unchanged: usize,
    pub unmatched: Vec<Unmatched>,
    pub conflicts: Vec<Conflict>,
    /// Agents that had an external ID before the run.
    pub linked_agents: usize,
}

impl Plan {
    pub(crate) fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    /// Unlinks as a share of the agents that are linked now, in percent.
    pub(crate) fn unlink_percent(&self) -> f64 {
        let unlinks = self.count(ChangeKind::Unlink);
        if unlinks == 0 {
            0.0
        } else if self.linked_agents == 0 {
            100.0
        } else {
            percent(unlinks as u64, self.linked_agents as u64)
        }
    }
}

/// `part` of `whole`, in percent (for the safety limits and their messages).
#[allow(clippy::cast_precision_loss)] // a count is exact in f64 below 2^53, far beyond any run
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// The key emails are matched on: trimmed, ASCII letters lower-cased. Other
/// letters are compared exactly: a Unicode case fold would match the KELVIN
/// SIGN in `\u{212A}ate@x.com` to `kate@x.com`, two different mailboxes.
pub(crate) fn normalize(email: &str) -> String {
    key(email).into_owned()
}

/// [`normalize`], borrowing the email when it is already normal.
fn key(email: &str) -> Cow<'_, str> {
    let email = email.trim();
    if email.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(email.to_ascii_lowercase())
    } else {
        Cow::Borrowed(email)
    }
}

/// Natural order: digit runs compare as numbers (`user+2` before `user+11`),
/// everything else byte by byte; strings equal that way fall back to byte
/// order, so the order is total and deterministic.
pub(crate) fn natural_cmp(left: &str, right: &str) -> Ordering {
    let (x, y) = (left.as_bytes(), right.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let run = |s: &[u8], from: usize| {
                let end = s[from..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(s.len(), |p| from + p);
                let zeros = s[from..end].iter().take_while(|&&b| b == b'0').count();
                (from + zeros, end)
            };
            let ((xs, xe), (ys, ye)) = (run(x, i), run(y, j));
            // Without leading zeros, a longer run is a larger number.
            let by_value = (xe - xs)
                .cmp(&(ye - ys))
                .then_with(|| x[xs..xe].cmp(&y[ys..ye]));
            if by_value != Ordering::Equal {
                return by_value;
            }
            (i, j) = (xe, ye);
        } else {
            match x[i].cmp(&y[j]) {
                Ordering::Equal => (i, j) = (i + 1, j + 1),
                other => return other,
            }
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

/// The distinct IDs one source email carries: nearly always one.
enum Ids<'a> {
    One(&'a str),
    /// Sorted, distinct: a conflict.
    Many(Vec<&'a str>),
}

/// The agents with one email: nearly always one.
enum Agents {
    One(usize),
    Many(Vec<usize>),
}

/// Match `users` to `agents` and compute the plan.
pub(crate) fn plan(users: &[User], agents: &[Agent], unlink_missing: bool) -> Plan {
    // Keys are emails from servers: a seeded fast hash (foldhash), not SipHash.
    let mut source: HashMap<Cow<'_, str>, Ids<'_>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(users.len(), foldhash::fast::RandomState::default());
    for user in users {
        let id = user.id.as_str();
        source
            .entry(key(&user.email))
            .and_modify(|ids| match ids {
                Ids::One(first) if *first == id => {}
                Ids::One(first) => {
                    let mut all = vec![*first, id];
                    all.sort_unstable();
                    *ids = Ids::Many(all);
                }
                Ids::Many(all) => {
                    if let Err(at) = all.binary_search(&id) {
                        all.insert(at, id);
                    }
                }
            })
            .or_insert(Ids::One(id));
    }
    let mut directory: HashMap<Cow<'_, str>, Agents, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(agents.len(), foldhash::fast::RandomState::default());
    for (i, agent) in agents.iter().enumerate() {
        directory
            .entry(key(&agent.email))
            .and_modify(|at| match at {
                Agents::One(first) => *at = Agents::Many(vec![*first, i]),
                Agents::Many(all) => all.push(i),
            })
            .or_insert(Agents::One(i));
    }

    let mut plan = Plan {
        linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
        ..Plan::default()
    };

    for (email, ids) in &source {
        match ids {
            Ids::Many(all) => plan.conflicts.push(Conflict {
                email: email.to_string(),
                reason: format!("{} ids in the source: {}", all.len(), all.join(", ")),
            }),
            Ids::One(id) if !directory.contains_key(email) => plan.unmatched.push(Unmatched {
                email: email.to_string(),
                external_id: (*id).to_owned(),
            }),
            Ids::One(_) => {}
        }
    }

    // The changes, as (kind, email key, agent, new ID), made into records once sorted.
    let mut pending: Vec<(ChangeKind, &str, usize, Option<&str>)> = Vec::new();
    for (email, at) in &directory {
        let i = match at {
            Agents::One(i) => *i,
            Agents::Many(all) => {
                let list: Vec<&str> = all.iter().map(|&i| agents[i].id.as_str()).collect();
                plan.conflicts.push(Conflict {
                    email: email.to_string(),
                    reason: format!("{} agents have this email: {}", all.len(), list.join(", ")),
                });
                continue;
            }
        };
        let agent = &agents[i];
        let wanted = match source.get(email) {
            Some(Ids::Many(_)) => continue, // conflict, reported above
            Some(Ids::One(id)) => Some(*id),
            None => None,
        };
        let kind = match (agent.external_id.as_deref(), wanted) {
            (None, Some(_)) => ChangeKind::Link,
            // Sinks trim what they read back: an ID that differs only in its
            // surrounding spaces is already there.
            (Some(old), Some(new)) if old.trim() != new.trim() => ChangeKind::Update,
            (Some(_), None) if unlink_missing => ChangeKind::Unlink,
            (Some(_), Some(_)) => {
                plan.unchanged += 1;
                continue;
            }
            (_, None) => continue,
        };
        pending.push((kind, email, i, wanted));
    }
    drop(source);
    // Keys are distinct (two agents with one email are a conflict), so the
    // order is fully decided by (kind, email key).
    pending.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| natural_cmp(a.1, b.1)));
    plan.changes = pending
        .into_iter()
        .map(|(_, _, i, wanted)| Change::setting(&agents[i], wanted.map(str::to_owned)))
        .collect();
    plan.unmatched
        .sort_unstable_by(|a, b| natural_cmp(&a.email, &b.email));
    plan.conflicts
        .sort_by(|a, b| natural_cmp(&a.email, &b.email));
    plan
}

/// The plan that undoes run `run`, whose journaled changes are `changes`: each
/// applied change is set back, unless its agent is gone or changed since (a
/// conflict, left alone) or holds its old value already (set back before).
pub(crate) fn revert(run: &str, changes: &[Change], agents: &[Agent]) -> Plan {
    let by_id: HashMap<&str, &Agent> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut plan = Plan {
        linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
        ..Plan::default()
    };
    for change in changes.iter().filter(|c| c.status == Status::Applied) {
        let conflict = |reason: String| Conflict {
            email: change.email.clone(),
            reason,
        };
        let agent = by_id
            .get(change.agent_id.as_str())
            .filter(|a| normalize(&a.email) == normalize(&change.email));
        let Some(agent) = agent else {
            plan.conflicts.push(conflict(format!(
                "agent {} is no longer in the directory",
                change.agent_id
            )));
            continue;
        };
        if agent.external_id == change.old_external_id {
            plan.unchanged += 1;
            continue;
        }
        if agent.external_id != change.new_external_id {
            plan.conflicts.push(conflict(format!(
                "changed since run {run}: external ID is now {}, not {}",
                agent.external_id.as_deref().unwrap_or("(none)"),
                change.new_external_id.as_deref().unwrap_or("(none)")
            )));
            continue;
        }
        plan.changes
            .push(Change::setting(agent, change.old_external_id.clone()));
    }
    plan
}

#[cfg(test)]
mod tests;
