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
    /// Agents of the directory whose email no user of the source has, left
    /// as they are (without `unlink_missing`).
    pub not_in_source: usize,
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

/// The order of two emails' keys ([`key`]), without making the keys.
fn key_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim(), b.trim());
    if a == b {
        return Ordering::Equal;
    }
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Natural order: digit runs compare as numbers (`user+2` before `user+11`),
/// everything else byte by byte; strings equal that way fall back to byte
/// order, so the order is total and deterministic.
pub(crate) fn natural_cmp(left: &str, right: &str) -> Ordering {
    natural_cmp_bytes(left.as_bytes(), right.as_bytes(), false)
}

/// [`natural_cmp`] of two emails' keys ([`key`]), without making the keys.
fn key_natural_cmp(left: &str, right: &str) -> Ordering {
    natural_cmp_bytes(left.trim().as_bytes(), right.trim().as_bytes(), true)
}

/// [`natural_cmp`] of `x` and `y`, their ASCII letters lower-cased with
/// `fold` (digits are not letters: the runs compare the same).
fn natural_cmp_bytes(x: &[u8], y: &[u8], fold: bool) -> Ordering {
    let at = |s: &[u8], i: usize| {
        if fold {
            s[i].to_ascii_lowercase()
        } else {
            s[i]
        }
    };
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
            match at(x, i).cmp(&at(y, j)) {
                Ordering::Equal => (i, j) = (i + 1, j + 1),
                other => return other,
            }
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| {
        (0..x.len())
            .map(|i| at(x, i))
            .cmp((0..y.len()).map(|j| at(y, j)))
    })
}

/// Match `users` to `agents` and compute the plan.
///
/// Both sides are sorted by email key and walked side by side: besides the
/// plan, this holds one (key, index) pair per user and per agent, where hash
/// maps of emails cost several times that at a million users. The users are
/// let go before the changes are made: the IDs the changes set move into
/// them.
pub(crate) fn plan(mut users: Vec<User>, agents: &[Agent], unlink_missing: bool) -> Plan {
    // Users by (key, id): one email's users are adjacent, their ids sorted.
    let mut source: Vec<usize> = (0..users.len()).collect();
    source.sort_unstable_by(|&a, &b| {
        key_cmp(&users[a].email, &users[b].email).then_with(|| users[a].id.cmp(&users[b].id))
    });
    // Agents by (key, listing order).
    let mut directory: Vec<usize> = (0..agents.len()).collect();
    directory
        .sort_unstable_by(|&a, &b| key_cmp(&agents[a].email, &agents[b].email).then(a.cmp(&b)));

    let mut plan = Plan {
        linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
        ..Plan::default()
    };
    // The changes, as (kind, agent, the user whose ID it is to get or
    // `NO_USER`), made into records once sorted.
    const NO_USER: usize = usize::MAX;
    let mut pending: Vec<(ChangeKind, usize, usize)> = Vec::new();
    let (mut s, mut d) = (0, 0);
    loop {
        let first = match (source.get(s), directory.get(d)) {
            (Some(&u), Some(&a)) if key_cmp(&users[u].email, &agents[a].email).is_le() => {
                users[u].email.as_str()
            }
            (_, Some(&a)) => agents[a].email.as_str(),
            (Some(&u), None) => users[u].email.as_str(),
            (None, None) => break,
        };
        let s_end = s + source[s..]
            .iter()
            .take_while(|&&u| key_cmp(&users[u].email, first).is_eq())
            .count();
        let d_end = d + directory[d..]
            .iter()
            .take_while(|&&a| key_cmp(&agents[a].email, first).is_eq())
            .count();
        // The distinct ids this email carries in the source.
        let mut ids: Vec<&str> = source[s..s_end]
            .iter()
            .map(|&u| users[u].id.as_str())
            .collect();
        ids.dedup();
        if ids.len() > 1 {
            plan.conflicts.push(Conflict {
                email: normalize(first),
                reason: format!("{} ids in the source: {}", ids.len(), ids.join(", ")),
            });
        }
        match &directory[d..d_end] {
            [] => {
                if let [id] = ids[..] {
                    plan.unmatched.push(Unmatched {
                        email: normalize(first),
                        external_id: id.to_owned(),
                    });
                }
            }
            &[i] if ids.len() <= 1 => {
                let agent = &agents[i];
                let wanted = ids.first().copied();
                let kind = match (agent.external_id.as_deref(), wanted) {
                    (None, Some(_)) => Some(ChangeKind::Link),
                    // Sinks trim what they read back: an ID that differs only
                    // in its surrounding spaces is already there.
                    (Some(old), Some(new)) if old.trim() != new.trim() => Some(ChangeKind::Update),
                    (Some(_), None) if unlink_missing => Some(ChangeKind::Unlink),
                    (Some(_), Some(_)) => {
                        plan.unchanged += 1;
                        None
                    }
                    (_, None) => {
                        plan.not_in_source += 1;
                        None
                    }
                };
                if let Some(kind) = kind {
                    let user = if s < s_end { source[s] } else { NO_USER };
                    pending.push((kind, i, user));
                }
            }
            [_] => {} // the source's conflict, reported above
            many => {
                let list: Vec<&str> = many.iter().map(|&a| agents[a].id.as_str()).collect();
                plan.conflicts.push(Conflict {
                    email: normalize(first),
                    reason: format!("{} agents have this email: {}", list.len(), list.join(", ")),
                });
            }
        }
        (s, d) = (s_end, d_end);
    }
    drop((source, directory));
    // Each user gives its ID to one change at most (its email has one agent);
    // the users are let go before the sort, the changes made after it.
    let mut pending: Vec<(ChangeKind, usize, Option<String>)> = pending
        .into_iter()
        .map(|(kind, agent, user)| {
            let wanted = (user != NO_USER).then(|| std::mem::take(&mut users[user].id));
            (kind, agent, wanted)
        })
        .collect();
    drop(users);
    // Keys are distinct (two agents with one email are a conflict), so the
    // order is fully decided by (kind, email key).
    pending.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| key_natural_cmp(&agents[a.1].email, &agents[b.1].email))
    });
    plan.changes = pending
        .into_iter()
        .map(|(_, i, wanted)| Change::setting(&agents[i], wanted))
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
