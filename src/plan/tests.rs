//! Matching, planning and revert planning on made-up directories.

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
        p.count(ChangeKind::Link),
        p.count(ChangeKind::Update),
        p.count(ChangeKind::Unlink),
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
    let p = plan(users.to_vec(), &agents, true);
    assert_eq!(summary(&p), (1, 1, 1, 1, 1, 2));
    let change = |a| p.changes.iter().find(|c| c.kind == a).unwrap();
    assert_eq!(change(ChangeKind::Link).agent_id, "a1");
    assert_eq!(
        change(ChangeKind::Link).new_external_id.as_deref(),
        Some("1")
    );
    assert_eq!(
        change(ChangeKind::Update).old_external_id.as_deref(),
        Some("old")
    );
    assert_eq!(
        change(ChangeKind::Update).new_external_id.as_deref(),
        Some("2")
    );
    assert_eq!(change(ChangeKind::Unlink).agent_id, "a8");
    assert_eq!(change(ChangeKind::Unlink).new_external_id, None);
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
fn emails_match_on_ascii_case_only() {
    assert_eq!(normalize("  Kate@X.com "), "kate@x.com");
    // KELVIN SIGN: Unicode lower-cases it to `k`, but it is another mailbox.
    let kelvin = "\u{212A}ate@x.com";
    assert_eq!(normalize(kelvin), kelvin);
    let p = plan(
        vec![user("1", kelvin), user("2", "ÉVE@x.com")],
        &[
            agent("a", "kate@x.com", None),
            agent("e", "éve@x.com", None),
        ],
        false,
    );
    assert_eq!(summary(&p), (0, 0, 0, 0, 2, 0));
    assert_eq!(p.unmatched[0].email, "ÉVE@x.com".replace("VE", "ve"));
}

#[test]
fn natural_order_compares_digit_runs_as_numbers() {
    let mut emails = vec![
        "user+11@x",
        "user+2@x",
        "user+1@x",
        "user+02@x",
        "user@x",
        "a@x",
    ];
    emails.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        emails,
        [
            "a@x",
            "user+1@x",
            "user+02@x",
            "user+2@x",
            "user+11@x",
            "user@x"
        ]
    );
    assert_eq!(
        natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
        Ordering::Less
    );
    let users: Vec<User> = (1..=12)
        .map(|n| user(&n.to_string(), &format!("user+{n}@x")))
        .collect();
    let agents: Vec<Agent> = (1..=12)
        .rev()
        .map(|n| agent(&format!("a{n}"), &format!("user+{n}@x"), None))
        .collect();
    let p = plan(users.to_vec(), &agents, false);
    let order: Vec<_> = p.changes.iter().map(|c| c.agent_id.as_str()).collect();
    let expected: Vec<String> = (1..=12).map(|n| format!("a{n}")).collect();
    assert_eq!(order, expected);
}

#[test]
fn no_unlink_unless_asked() {
    let p = plan(Vec::new(), &[agent("a", "a@x", Some("1"))], false);
    assert!(p.changes.is_empty());
}

#[test]
fn keys_compare_as_the_normalised_emails_do() {
    let emails = [
        "a@x.com",
        " A@x.com",
        "b@x.com\t",
        "B@X.COM",
        "ab@x.com",
        "a@x.co",
        "",
        " ",
        "\u{212A}ate@x.com",
        "kate@x.com",
        "Z@x.com",
        "_@x.com",
        "U+2@x",
        "u+11@X",
        "u+011@x",
        "u+2a@x",
    ];
    for a in emails {
        for b in emails {
            assert_eq!(
                key_cmp(a, b),
                normalize(a).cmp(&normalize(b)),
                "{a:?} vs {b:?}"
            );
            assert_eq!(
                key_natural_cmp(a, b),
                natural_cmp(&normalize(a), &normalize(b)),
                "{a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn same_user_twice_is_not_a_conflict() {
    let p = plan(
        vec![user("1", "a@x"), user("1", "A@x")],
        &[agent("a", "a@x", None)],
        false,
    );
    assert_eq!(summary(&p), (1, 0, 0, 0, 0, 0));
}

#[test]
fn converged_plan_is_empty() {
    let users = [user("1", "a@x"), user("2", "b@x")];
    let agents = [agent("a", "a@x", Some("1")), agent("b", "b@x", Some("2"))];
    let p = plan(users.to_vec(), &agents, true);
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
    let p = plan(users.to_vec(), &agents, false);
    let order: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.kind, c.email.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (ChangeKind::Link, "a@x"),
            (ChangeKind::Link, "b@x"),
            (ChangeKind::Update, "c@x")
        ]
    );
}

#[test]
fn revert_sets_back_what_was_applied_and_refuses_what_moved() {
    let applied = |kind, email: &str, id: &str, old: Option<&str>, new: Option<&str>| Change {
        kind,
        email: email.into(),
        agent_id: id.into(),
        old_external_id: old.map(str::to_owned),
        new_external_id: new.map(str::to_owned),
        status: Status::Applied,
        error: None,
        version: None,
    };
    let mut failed = applied(ChangeKind::Link, "f@x", "f", None, Some("9"));
    failed.status = Status::Failed;
    let journaled = [
        applied(ChangeKind::Link, "a@x", "a", None, Some("1")),
        applied(ChangeKind::Update, "b@x", "b", Some("old"), Some("2")),
        applied(ChangeKind::Unlink, "c@x", "c", Some("3"), None),
        applied(ChangeKind::Link, "d@x", "d", None, Some("4")),
        applied(ChangeKind::Link, "gone@x", "g", None, Some("5")),
        applied(ChangeKind::Link, "e@x", "e", None, Some("6")),
        failed,
    ];
    let agents = [
        agent("a", "A@x", Some("1")),
        agent("b", "b@x", Some("2")),
        agent("c", "c@x", None),
        agent("d", "d@x", Some("changed")),
        agent("e", "e@x", None), // set back already: nothing to do
        agent("f", "f@x", None),
    ];
    let p = revert("R1", &journaled, &agents);
    assert_eq!(p.unchanged, 1, "e was set back already");
    let undo: Vec<_> = p
        .changes
        .iter()
        .map(|c| {
            (
                c.kind,
                c.agent_id.as_str(),
                c.old_external_id.as_deref(),
                c.new_external_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        undo,
        [
            (ChangeKind::Unlink, "a", Some("1"), None),
            (ChangeKind::Update, "b", Some("2"), Some("old")),
            (ChangeKind::Link, "c", None, Some("3")),
        ]
    );
    assert!(p.changes.iter().all(|c| c.status == Status::Planned));
    let reasons: Vec<_> = p.conflicts.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "changed since run R1: external ID is now changed, not 4",
            "agent g is no longer in the directory"
        ]
    );
}
