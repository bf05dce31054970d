//! Contested agents: those whose external ID is no longer what agentsync's
//! own last applied run set it to. Someone else writes that field too (often
//! an identity provider that maps its own `externalId`), and a nightly sync
//! would only take turns with it. Found from the journal; reported, with
//! `on_contested = "skip"` left out of the plan, and with `"refuse"` a reason
//! to refuse the run as a safety limit does.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::OnContested;
use crate::plan::{Plan, Status};
use crate::sink::Agent;
use crate::state::journal::Entry;

/// An agent whose external ID someone else changed since agentsync set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Contested {
    pub email: String,
    pub agent_id: String,
    /// The external ID the agent has now.
    pub external_id: Option<String>,
    /// What agentsync last set it to, and in which run.
    pub set_by_us: Option<String>,
    pub run: String,
}

/// What one of our writes left an agent at: `value`, or `maybe` this one
/// when the write's outcome is not known.
struct Ours<'a> {
    value: &'a Option<String>,
    maybe: Option<&'a Option<String>>,
    run: &'a str,
}

/// The contested agents among `agents`, given the journal's `entries` (oldest
/// first); with `skip`, their changes are taken out of `plan`.
pub(crate) fn mark(
    plan: &mut Plan,
    agents: &[Agent],
    entries: &[Entry],
    policy: OnContested,
) -> Vec<Contested> {
    // The value each agent was last set to by an applied write of ours; a
    // write whose outcome is not known (in flight when its run was killed,
    // or its answer lost) left it at either its old or its new value.
    let mut ours: HashMap<&str, Ours<'_>> = HashMap::new();
    for entry in entries.iter().filter(|e| e.writing) {
        for change in &entry.changes {
            let maybe = match change.status {
                Status::Applied => None,
                Status::Planned | Status::Unknown => Some(&change.old_external_id),
                _ => continue,
            };
            let set = Ours {
                value: &change.new_external_id,
                maybe,
                run: &entry.run,
            };
            ours.insert(&change.agent_id, set);
        }
    }
    if ours.is_empty() {
        return Vec::new();
    }
    let mut contested: Vec<Contested> = agents
        .iter()
        .filter_map(|agent| {
            let Ours { value, maybe, run } = ours.get(agent.id.as_str())?;
            let ours = agent.external_id == **value || Some(&agent.external_id) == *maybe;
            (!ours).then(|| Contested {
                email: agent.email.clone(),
                agent_id: agent.id.clone(),
                external_id: agent.external_id.clone(),
                set_by_us: (*value).clone(),
                run: (*run).to_owned(),
            })
        })
        .collect();
    // By the email as matching reads it (case and spaces aside), then as
    // written: `Ann@` beside `ann@`, not after every lowercase address.
    contested.sort_by_cached_key(|c| (crate::plan::normalize(&c.email), c.email.clone()));
    if policy == OnContested::Skip && !contested.is_empty() {
        let ids: std::collections::HashSet<&str> =
            contested.iter().map(|c| c.agent_id.as_str()).collect();
        plan.changes.retain(|c| !ids.contains(c.agent_id.as_str()));
    }
    contested
}

/// How many of `plan`'s changes write a contested agent.
fn overwritten(contested: &[Contested], plan: &Plan) -> usize {
    if contested.is_empty() {
        return 0;
    }
    let ids: std::collections::HashSet<&str> =
        contested.iter().map(|c| c.agent_id.as_str()).collect();
    plan.changes
        .iter()
        .filter(|c| ids.contains(c.agent_id.as_str()))
        .count()
}

/// With `refuse`, why a plan that overwrites contested agents is held back
/// (exit 4; `--force` writes): another writer sets them too, and overwriting
/// them again only takes another turn.
pub(crate) fn refusal(policy: OnContested, contested: &[Contested], plan: &Plan) -> Option<String> {
    if policy != OnContested::Refuse {
        return None;
    }
    let n = overwritten(contested, plan);
    (n > 0).then(|| {
        format!(
            "the plan overwrites {} (someone else changed their external ID since agentsync set it; on_contested = \"refuse\"): settle which writer owns them, or --force",
            crate::term::count(n as u64, "contested agent")
        )
    })
}

/// What a run tells on stderr about the contested agents it found.
pub(crate) fn warning(policy: OnContested, contested: &[Contested], plan: &Plan) -> Option<String> {
    let n = overwritten(contested, plan);
    match policy {
        OnContested::Warn if n > 0 => Some(format!(
            "the plan sets {} back: someone else changed their external ID since agentsync set it, and two writers take turns on every run (on_contested = \"skip\" or \"refuse\" stops that)",
            crate::term::count(n as u64, "contested agent")
        )),
        OnContested::Skip if !contested.is_empty() => Some(format!(
            "{} left as another writer set them (on_contested = \"skip\"): the directory and the source disagree on them until one writer stops",
            crate::term::count(contested.len() as u64, "contested agent")
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, ChangeKind};

    fn agent(id: &str, ext: Option<&str>) -> Agent {
        Agent {
            id: id.into(),
            email: format!("{id}@x.com"),
            external_id: ext.map(str::to_owned),
        }
    }

    fn entry(run: &str, changes: &[(&str, Option<&str>, Status)]) -> Entry {
        Entry {
            run: run.into(),
            time: "t".into(),
            config: "c".into(),
            name: "n".into(),
            kind: "sync".into(),
            ending: crate::state::journal::Outcome::Success,
            summary: Default::default(),
            users: None,
            error: None,
            job: None,
            reverted_by: None,
            reverted: None,
            writing: true,
            ended: true,
            changes: changes
                .iter()
                .map(|(id, new, status)| {
                    let mut c = Change::setting(&agent(id, None), new.map(str::to_owned));
                    c.status = *status;
                    c
                })
                .collect(),
        }
    }

    #[test]
    fn the_last_applied_value_of_ours_is_compared() {
        let entries = [
            entry(
                "R1",
                &[
                    ("a", Some("1"), Status::Applied),
                    ("b", Some("2"), Status::Applied),
                ],
            ),
            entry(
                "R2",
                &[
                    ("a", Some("11"), Status::Applied),
                    ("c", Some("3"), Status::Failed),
                ],
            ),
        ];
        let agents = [
            agent("a", Some("11")),
            agent("b", Some("jdoe")),
            agent("c", Some("other")),
            agent("d", Some("x")),
        ];
        let plan_with = || Plan {
            changes: vec![
                Change::setting(&agents[1], Some("2".into())),
                Change::setting(&agents[3], Some("4".into())),
            ],
            ..Plan::default()
        };
        let mut plan = plan_with();
        let found = mark(&mut plan, &agents, &entries, OnContested::Warn);
        assert_eq!(
            found,
            [Contested {
                email: "b@x.com".into(),
                agent_id: "b".into(),
                external_id: Some("jdoe".into()),
                set_by_us: Some("2".into()),
                run: "R1".into(),
            }]
        );
        assert_eq!(plan.changes.len(), 2, "warn keeps the change");
        let mut plan = plan_with();
        mark(&mut plan, &agents, &entries, OnContested::Skip);
        let left: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.kind, c.agent_id.as_str()))
            .collect();
        assert_eq!(left, [(ChangeKind::Update, "d")]);
        let mut plan = plan_with();
        let found = mark(&mut plan, &agents, &entries, OnContested::Refuse);
        assert_eq!(plan.changes.len(), 2, "refuse plans as warn does");
        let why = refusal(OnContested::Refuse, &found, &plan).unwrap();
        assert!(why.contains("overwrites 1 contested agent "), "{why}");
        assert_eq!(refusal(OnContested::Warn, &found, &plan), None);
        // A plan that leaves the contested agent alone is not refused.
        plan.changes.retain(|c| c.agent_id != "b");
        assert_eq!(refusal(OnContested::Refuse, &found, &plan), None);
    }

    #[test]
    fn contested_agents_sort_by_email_whatever_its_case() {
        let ids = ["Zed", "amy", "Bob", "bea"];
        let ours: Vec<_> = ids
            .iter()
            .map(|id| (*id, Some("1"), Status::Applied))
            .collect();
        let entries = [entry("R1", &ours)];
        let agents: Vec<_> = ids.iter().map(|id| agent(id, Some("theirs"))).collect();
        let found = mark(&mut Plan::default(), &agents, &entries, OnContested::Warn);
        let emails: Vec<_> = found.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails, ["amy@x.com", "bea@x.com", "Bob@x.com", "Zed@x.com"]);
    }

    #[test]
    fn a_write_whose_outcome_is_not_known_left_either_value() {
        // A run killed with writes in flight: their intents have no result.
        let entries = [entry(
            "R1",
            &[
                ("a", Some("1"), Status::Planned),
                ("b", Some("2"), Status::Planned),
                ("c", Some("3"), Status::Unknown),
            ],
        )];
        let agents = [
            agent("a", Some("1")), // it landed
            agent("b", None),      // it did not (the old value)
            agent("c", Some("x")), // someone else's
        ];
        let found = mark(&mut Plan::default(), &agents, &entries, OnContested::Warn);
        let ids: Vec<_> = found.iter().map(|c| c.agent_id.as_str()).collect();
        assert_eq!(ids, ["c"]);
    }
}
