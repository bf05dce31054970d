//! Matching by email and the plan: which agents get linked, updated, unlinked
//! or left alone, which source users have no agent, and which emails are in
//! conflict. Pure data in, pure data out; applying it is someone else's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::mapping::User;
use crate::sink::Agent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    Link,
    Update,
    Unlink,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Link => "link",
            Action::Update => "update",
            Action::Unlink => "unlink",
        }
    }
}

/// One write the plan calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub action: Action,
    /// The agent's email as the directory holds it.
    pub email: String,
    pub agent_id: String,
    pub old_external_id: Option<String>,
    pub new_external_id: Option<String>,
    /// Index of the agent in the listing the plan was made from.
    pub agent: usize,
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
    pub(crate) fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Unlinks as a share of the agents that are linked now, in percent.
    pub(crate) fn unlink_percent(&self) -> f64 {
        let unlinks = self.count(Action::Unlink);
        if unlinks == 0 {
            0.0
        } else if self.linked_agents == 0 {
            100.0
        } else {
            unlinks as f64 * 100.0 / self.linked_agents as f64
        }
    }
}

/// The key emails are matched on: trimmed and lower-cased.
pub(crate) fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Match `users` to `agents` and compute the plan.
pub(crate) fn plan(users: &[User], agents: &[Agent], unlink_missing: bool) -> Plan {
    // Every distinct ID each source email carries.
    let mut source: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for user in users {
        source
            .entry(normalize(&user.email))
            .or_default()
            .insert(&user.id);
    }
    let mut directory: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, agent) in agents.iter().enumerate() {
        directory
            .entry(normalize(&agent.email))
            .or_default()
            .push(i);
    }

    let mut plan = Plan {
        linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
        ..Plan::default()
    };

    for (email, ids) in &source {
        if ids.len() > 1 {
            let list = ids.iter().copied().collect::<Vec<_>>().join(", ");
            plan.conflicts.push(Conflict {
                email: email.clone(),
                reason: format!("{} ids in the source: {list}", ids.len()),
            });
        } else if !directory.contains_key(email) {
            plan.unmatched.push(Unmatched {
                email: email.clone(),
                external_id: ids.first().map(|s| s.to_string()).unwrap_or_default(),
            });
        }
    }

    for (email, indices) in &directory {
        if indices.len() > 1 {
            let list = indices
                .iter()
                .map(|&i| agents[i].id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            plan.conflicts.push(Conflict {
                email: email.clone(),
                reason: format!("{} agents have this email: {list}", indices.len()),
            });
            continue;
        }
        let index = indices[0];
        let agent = &agents[index];
        let wanted = match source.get(email) {
            Some(ids) if ids.len() > 1 => continue, // conflict, reported above
            Some(ids) => ids.first().copied(),
            None => None,
        };
        let current = agent.external_id.as_deref();
        let action = match (current, wanted) {
            (None, Some(_)) => Action::Link,
            (Some(old), Some(new)) if old != new => Action::Update,
            (Some(_), None) if unlink_missing => Action::Unlink,
            (Some(_), Some(_)) => {
                plan.unchanged += 1;
                continue;
            }
            (_, None) => continue,
        };
        plan.changes.push(Change {
            action,
            email: agent.email.clone(),
            agent_id: agent.id.clone(),
            old_external_id: current.map(str::to_owned),
            new_external_id: wanted.map(str::to_owned),
            agent: index,
        });
    }
    plan.changes
        .sort_by_key(|c| (c.action, normalize(&c.email)));
    plan.conflicts.sort_by(|a, b| a.email.cmp(&b.email));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, email: &str) -> User {
        User {
            id: id.into(),
            email: email.into(),
        }
    }

    fn agent(id: &str, email: &str, ext: Option<&str>) -> Agent {
        Agent {
            id: id.into(),
            email: email.into(),
            external_id: ext.map(str::to_owned),
        }
    }

    fn summary(p: &Plan) -> (usize, usize, usize, usize, usize, usize) {
        (
            p.count(Action::Link),
            p.count(Action::Update),
            p.count(Action::Unlink),
            p.unchanged,
            p.unmatched.len(),
            p.conflicts.len(),
        )
    }

    #[test]
    fn every_kind_of_outcome() {
        let users = [
            user("1", "one@x.com"),
            user("2", " Two@X.com "),
            user("3", "three@x.com"),
            user("4", "four@x.com"),
            user("5", "dup@x.com"),
            user("6", "dup@x.com"),
            user("7", "twice@x.com"),
        ];
        let agents = [
            agent("a1", "ONE@x.com", None),
            agent("a2", "two@x.com", Some("old")),
            agent("a3", "three@x.com", Some("3")),
            agent("a5", "dup@x.com", None),
            agent("a7", "twice@x.com", None),
            agent("a7b", "Twice@x.com", Some("9")),
            agent("a8", "gone@x.com", Some("8")),
            agent("a9", "never@x.com", None),
        ];
        let p = plan(&users, &agents, true);
        assert_eq!(summary(&p), (1, 1, 1, 1, 1, 2));
        let change = |a| p.changes.iter().find(|c| c.action == a).unwrap();
        assert_eq!(change(Action::Link).agent_id, "a1");
        assert_eq!(change(Action::Link).new_external_id.as_deref(), Some("1"));
        assert_eq!(
            change(Action::Update).old_external_id.as_deref(),
            Some("old")
        );
        assert_eq!(change(Action::Update).new_external_id.as_deref(), Some("2"));
        assert_eq!(change(Action::Unlink).agent_id, "a8");
        assert_eq!(change(Action::Unlink).new_external_id, None);
        assert_eq!(
            p.unmatched,
            [Unmatched {
                email: "four@x.com".into(),
                external_id: "4".into()
            }]
        );
        assert_eq!(p.conflicts[0].reason, "2 ids in the source: 5, 6");
        assert_eq!(p.conflicts[1].reason, "2 agents have this email: a7, a7b");
        assert_eq!(p.linked_agents, 4);
        assert_eq!(p.unlink_percent(), 25.0);
    }

    #[test]
    fn no_unlink_unless_asked() {
        let p = plan(&[], &[agent("a", "a@x", Some("1"))], false);
        assert!(p.changes.is_empty());
    }

    #[test]
    fn same_user_twice_is_not_a_conflict() {
        let p = plan(
            &[user("1", "a@x"), user("1", "A@x")],
            &[agent("a", "a@x", None)],
            false,
        );
        assert_eq!(summary(&p), (1, 0, 0, 0, 0, 0));
    }

    #[test]
    fn converged_plan_is_empty() {
        let users = [user("1", "a@x"), user("2", "b@x")];
        let agents = [agent("a", "a@x", Some("1")), agent("b", "b@x", Some("2"))];
        let p = plan(&users, &agents, true);
        assert!(p.changes.is_empty());
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn changes_are_grouped_by_action_then_email() {
        let users = [user("1", "b@x"), user("2", "a@x"), user("3", "c@x")];
        let agents = [
            agent("b", "b@x", None),
            agent("c", "c@x", Some("x")),
            agent("a", "a@x", None),
        ];
        let p = plan(&users, &agents, false);
        let order: Vec<_> = p
            .changes
            .iter()
            .map(|c| (c.action, c.email.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (Action::Link, "a@x"),
                (Action::Link, "b@x"),
                (Action::Update, "c@x")
            ]
        );
    }
}
