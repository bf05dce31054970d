//! Saved plans (`--dry-run --out`, `apply`), the global flags on either side of
//! the subcommand, a closed stdout, and the checks of an events file: each
//! run through the real binary against the bundled mock.
#![cfg(feature = "mock")]

mod common;

use std::collections::BTreeMap;

use common::{JobDir, Mock, agentsync};
use serde_json::Value;

/// Every agent's external ID, by SCIM id.
fn external_ids(mock: &Mock) -> BTreeMap<String, Option<String>> {
    let list = mock.get("/scim/v2/Users?startIndex=1&count=1000");
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["externalId"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Set an agent's external ID straight through the mock's SCIM API, as an
/// admin would by hand.
fn set_by_hand(mock: &Mock, id: &str, external_id: &str) {
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "externalId", "value": external_id}],
    });
    ureq::patch(&format!("{}/scim/v2/Users/{id}", mock.base))
        .header("Content-Type", "application/scim+json")
        .send(body.to_string())
        .unwrap();
}

/// `--dry-run --out NAME` of the job's sync; the saved plan's path and content.
fn save_plan(job: &JobDir, name: &str) -> (String, Value) {
    let path = job.path(name);
    let path = path.to_str().unwrap().to_owned();
    agentsync(&["sync", "--dry-run", "--out", &path])
        .config(job)
        .quiet()
        .expect(0);
    let plan = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (path, plan)
}

/// The agent IDs a plan changes.
fn planned(plan: &Value) -> BTreeMap<String, Option<String>> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["agent_id"].as_str().unwrap().to_owned(),
                c["new_external_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn a_saved_plan_is_applied_as_reviewed_leaving_agents_changed_since_stale() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    let (path, plan) = save_plan(&job, "plan.json");

    assert_eq!(plan["format"], 2);
    assert_eq!(plan["kind"], "sync");
    let config = std::fs::canonicalize(&job.config).unwrap();
    assert_eq!(plan["config"]["path"], config.to_str().unwrap());
    let sha = plan["config"]["sha256"].as_str().unwrap();
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sha}"
    );
    assert!(plan["made"].as_str().unwrap().ends_with('Z'), "{plan}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the plan holds emails");
    }
    let changes = planned(&plan);
    assert!(changes.len() > 2, "{plan}");
    assert_eq!(external_ids(&mock), before, "a dry run writes nothing");

    // Someone changes one of the planned agents before the plan is applied.
    let moved = changes.keys().next().unwrap().clone();
    set_by_hand(&mock, &moved, "set-by-hand");

    // The config comes from the plan: no --config.
    let out = agentsync(&["apply", &path])
        .state(&job)
        .quiet()
        .output_json()
        .expect(3);
    let report = out.json();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["plan"]["path"], path.as_str());
    assert_eq!(report["plan"]["made"], plan["made"]);
    let statuses: BTreeMap<&str, &str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["agent_id"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), changes.len(), "exactly the plan's changes");
    for (id, status) in &statuses {
        let expected = if **id == moved { "stale" } else { "applied" };
        assert_eq!(*status, expected, "{id}");
    }
    let stale = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["agent_id"] == moved.as_str())
        .unwrap();
    assert!(
        stale["error"].as_str().unwrap().contains("set-by-hand"),
        "the reason names what changed: {stale}"
    );

    let after = external_ids(&mock);
    for (id, was) in &before {
        let now = &after[id];
        match changes.get(id) {
            _ if *id == moved => assert_eq!(now.as_deref(), Some("set-by-hand")),
            Some(new) => assert_eq!(now, new, "{id} was planned"),
            None => assert_eq!(now, was, "{id} was not in the plan"),
        }
    }
    let journal = job.journal();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["kind"], format!("apply of {path}"));

    // Applied twice, the plan finds every agent changed: nothing is written.
    let again = agentsync(&["apply", &path])
        .state(&job)
        .quiet()
        .output_json()
        .expect(3);
    for change in again.json()["changes"].as_array().unwrap() {
        assert_eq!(change["status"], "stale", "{change}");
    }
    let journal = job.journal();
    assert_eq!(
        journal.len(),
        2,
        "every run is journaled, also one that wrote nothing"
    );
    assert_eq!(journal[1]["kind"], format!("apply of {path}"));

    // The newest run wrote nothing: `revert last` leaves it, naming the run
    // to give instead.
    let applied = external_ids(&mock);
    let first = journal[0]["run"].as_str().unwrap();
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(
        out.stdout.contains("wrote nothing")
            && out.stdout.contains(&format!("agentsync revert {first}")),
        "{}",
        out.stdout
    );
    assert_eq!(external_ids(&mock), applied, "nothing was written");
    // What the plan applied can be undone; the hand-set ID stays. Undoing 15
    // links unlinks more than max_unlink_percent: a revert is not held to the
    // limits.
    agentsync(&["revert", first]).config(&job).quiet().expect(0);
    let reverted = external_ids(&mock);
    for (id, was) in &before {
        if *id == moved {
            assert_eq!(reverted[id].as_deref(), Some("set-by-hand"));
        } else {
            assert_eq!(&reverted[id], was, "{id} is back");
        }
    }
}

#[test]
fn a_plan_of_an_edited_config_is_refused() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    let (path, _) = save_plan(&job, "plan.json");
    let text = job.read("job.toml");
    job.write("job.toml", &format!("{text}\n# edited after the plan\n"));

    let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
    assert!(
        out.stderr.contains("changed since the plan was made"),
        "{}",
        out.stderr
    );
    assert_eq!(external_ids(&mock), before, "nothing was written");
    assert!(job.journal().is_empty());
}

#[test]
fn a_plan_is_refused_with_another_config_file() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    let (path, _) = save_plan(&job, "plan.json");
    // The same text in another file is another job (another journal, lock).
    let other = job.write("copy.toml", &job.read("job.toml"));

    let out = agentsync(&["apply", &path, "--config", other.to_str().unwrap()])
        .state(&job)
        .quiet()
        .expect(2);
    assert!(
        out.stderr.contains("the plan was made from"),
        "{}",
        out.stderr
    );
    let out = agentsync(&["apply", &path])
        .state(&job)
        .env("AGENTSYNC_CONFIG", other.to_str().unwrap())
        .quiet()
        .expect(2);
    assert!(out.stderr.contains("AGENTSYNC_CONFIG"), "{}", out.stderr);
    assert_eq!(external_ids(&mock), before);

    // Its own config, named, is fine.
    agentsync(&["apply", &path]).config(&job).quiet().expect(0);
}

#[test]
fn a_plan_older_than_max_age_or_of_another_format_is_refused() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    let (path, mut plan) = save_plan(&job, "plan.json");

    // The plan's time is second-precise: after a wait it is over a second old.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = agentsync(&["apply", &path, "--max-age", "1s"])
        .state(&job)
        .quiet()
        .expect(2);
    assert!(out.stderr.contains("--max-age"), "{}", out.stderr);

    // An older time written into the plan is an edit.
    let saved = plan.clone();
    plan["made"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
    assert!(out.stderr.contains("edited: \"made\""), "{}", out.stderr);

    plan = saved;
    plan["format"] = 3.into();
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
    assert!(out.stderr.contains("plan format 3"), "{}", out.stderr);

    let not_a_plan = job.write("notes.json", "{\"changes\": []}");
    agentsync(&["apply", not_a_plan.to_str().unwrap()])
        .state(&job)
        .quiet()
        .expect(2);
    agentsync(&["apply", &path, "--max-age", "soon"])
        .state(&job)
        .expect(2);
    assert_eq!(external_ids(&mock), before, "nothing was written");
}

#[test]
fn apply_holds_a_plan_to_the_safety_limits_unless_forced() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let text = job
        .read("job.toml")
        .replace("max_changes = 500", "max_changes = 3");
    job.write("job.toml", &text);
    let before = external_ids(&mock);
    // A dry run shows the plan whatever its size.
    let (path, plan) = save_plan(&job, "plan.json");
    assert!(planned(&plan).len() > 3);

    // Saving it says a plain apply will be refused.
    let out = agentsync(&["sync", "--dry-run", "--out", &path])
        .config(&job)
        .expect(0);
    assert!(
        out.stderr.contains(&format!(
            "it is over a limit (see `Refused:` above), so a plain apply is refused: once reviewed, apply it with `agentsync apply --force {path}`"
        )),
        "{}",
        out.stderr
    );
    let plain = format!("apply it with `agentsync apply {path}`");
    assert!(!out.stderr.contains(&plain), "{}", out.stderr);

    let out = agentsync(&["apply", &path]).state(&job).quiet().expect(4);
    assert!(out.stderr.contains("max_changes"), "{}", out.stderr);
    assert_eq!(external_ids(&mock), before, "a refusal writes nothing");

    let out = agentsync(&["apply", &path, "--force"])
        .state(&job)
        .quiet()
        .expect(0);
    // A saved plan read no source: its summary names the directory alone.
    let last = out.stdout.lines().last().unwrap();
    assert!(last.ends_with(" agents)"), "{last}");
    assert!(!last.contains("users from"), "{last}");
    let after = external_ids(&mock);
    for (id, new) in planned(&plan) {
        assert_eq!(after[&id], new);
    }
}

#[test]
fn a_saved_revert_is_applied_like_any_plan() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    agentsync(&[]).config(&job).quiet().expect(0);
    let run = job.journal()[0]["run"].as_str().unwrap().to_owned();
    assert_ne!(external_ids(&mock), before);

    let path = job.path("undo.json");
    let path = path.to_str().unwrap();
    agentsync(&["revert", "last", "--dry-run", "--out", path])
        .config(&job)
        .quiet()
        .expect(0);
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        plan["kind"],
        format!("revert of {run}"),
        "the run, not `last`"
    );

    agentsync(&["apply", path]).state(&job).quiet().expect(0);
    assert_eq!(external_ids(&mock), before);
    // The plan undoes the journal's run: it is journaled as its revert.
    let journal = job.journal();
    assert_eq!(
        journal.last().unwrap()["kind"],
        format!("revert of {run} (plan {path})")
    );
    assert_eq!(journal[0]["reverted_by"], journal[1]["run"]);
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let mock = Mock::start(&["--users", "4000", "--agents", "4000", "--page-size", "500"]);
    let job = mock.punch_job();
    let text = job
        .read("job.toml")
        .replace("page_size = 10", "page_size = 1000")
        .replace("[sync]\n", "[sync]\njournal = \"job.journal.jsonl\"\n");
    job.write("job.toml", &text);
    // A journal longer than a pipe holds.
    // Runs of an older version, which name their config by its real path.
    let config = std::fs::canonicalize(&job.config).unwrap();
    let config = config.to_str().unwrap();
    let mut journal = String::new();
    for i in 0..3000 {
        journal.push_str(&format!(
            "{{\"run\":\"20260101-000000-{i:04x}\",\"time\":\"2026-01-01T00:00:00Z\",\"config\":\"{config}\",\"name\":\"punch-clock\",\"kind\":\"sync\",\"summary\":{{\"link\":1,\"update\":0,\"unlink\":0,\"failed\":0}},\"changes\":[]}}\n"
        ));
    }
    job.write("job.journal.jsonl", &journal);

    let cases: [(&[&str], &str); 5] = [
        (&["history"], "RUN "),
        (&["history", "--output", "json"], "["),
        (&["fetch"], "ID"),
        (&["sync", "--dry-run"], "link ("),
        (&["sync", "--dry-run", "--output", "json"], "{"),
    ];
    for (args, first) in cases {
        let out = agentsync(args).config(&job).quiet().head(1);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{args:?}");
        assert!(out.stdout.starts_with(first), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let config = job.config();

    let before = agentsync(&["--config", config, "fetch"]).quiet().expect(0);
    let after = agentsync(&["fetch", "--config", config]).quiet().expect(0);
    let from_env = agentsync(&["fetch"])
        .env("AGENTSYNC_CONFIG", config)
        .quiet()
        .expect(0);
    assert!(before.stdout.contains("user+1@talkdesk.com"));
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.stdout, from_env.stdout);

    let top = agentsync(&["-q", "--output", "json", "--config", config, "--dry-run"]).expect(0);
    let sub = agentsync(&[
        "sync",
        "--dry-run",
        "--output",
        "json",
        "-q",
        "--config",
        config,
    ])
    .expect(0);
    for out in [&top, &sub] {
        assert_eq!(out.stderr, "");
        assert_eq!(out.json()["dry_run"], true);
    }
    assert_eq!(top.json()["summary"], sub.json()["summary"]);
    agentsync(&["history", "-q", "--output", "json"])
        .config(&job)
        .expect(0);

    // The sync's own flags stay with the sync.
    let out = agentsync(&["--dry-run", "fetch", "--config", config]).expect(2);
    assert!(out.stderr.contains("--dry-run"), "{}", out.stderr);
    let plan = job.path("plan.json");
    agentsync(&["sync", "--out", plan.to_str().unwrap()])
        .config(&job)
        .expect(2);
    assert!(!plan.exists(), "--out without --dry-run");
}

#[test]
fn events_errors_name_the_line_and_nothing_is_sent() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    agentsync(&[]).config(&job).quiet().expect(0);
    let punches = || mock.get("/punches")["punches"].as_array().unwrap().clone();
    let events = |text: &str| job.write("events.jsonl", text);

    let file = events(
        r#"{"email": "user+1@talkdesk.com", "vars": {"event": "login"}}
not json
{"email": "user+2@talkdesk.com", "vars": {"event": 1}}
{"vars": {"event": "login"}}
"#,
    );
    let out = agentsync(&["action", "punch", "--events", file.to_str().unwrap()])
        .config(&job)
        .expect(2);
    let name = file.display().to_string();
    for expected in [
        format!("{name}: line 2: not JSON"),
        format!("{name}: line 3: vars.event is a number, not a string"),
        format!("{name}: line 4: no \"email\""),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("line 1:"), "{}", out.stderr);
    assert!(punches().is_empty());

    // A line without the variable the action needs, and no --set for it.
    let file = events(
        r#"{"email": "user+1@talkdesk.com", "vars": {"event": "login"}}
{"email": "user+2@talkdesk.com"}
"#,
    );
    let out = agentsync(&["action", "punch", "--events", file.to_str().unwrap()])
        .config(&job)
        .expect(2);
    assert!(
        out.stderr.contains(&format!(
            "{name}: line 2: user+2@talkdesk.com has no vars.event"
        )),
        "{}",
        out.stderr
    );
    assert!(punches().is_empty());

    // --set gives every event its defaults; an event's own vars win.
    let lines = agentsync(&["action", "punch", "--events", file.to_str().unwrap()])
        .args(&["--set", "event=logout"])
        .config(&job)
        .output_json()
        .expect(0)
        .json_lines();
    assert_eq!(lines.len(), 2, "one JSON line per event");
    let events: Vec<_> = punches()
        .iter()
        .map(|p| p["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["login", "logout"]);
}

#[test]
fn an_agent_whose_version_moved_since_the_plan_is_stale() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let (path, plan) = save_plan(&job, "plan.json");
    // The plan carries each agent's version as listed.
    let change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "update")
        .expect("the demo plan updates stale IDs")
        .clone();
    assert!(change["version"].is_string(), "{plan}");
    // Someone writes the agent again without changing its external ID: the
    // external ID the plan saw is still there, the version is not.
    let id = change["agent_id"].as_str().unwrap();
    set_by_hand(&mock, id, change["old_external_id"].as_str().unwrap());

    let report = agentsync(&["apply", &path])
        .state(&job)
        .quiet()
        .output_json()
        .expect(3)
        .json();
    let moved = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["agent_id"] == id)
        .unwrap();
    assert_eq!(moved["status"], "stale", "{report}");
    assert!(
        moved["error"].as_str().unwrap().contains("version"),
        "{moved}"
    );
    let applied = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "applied")
        .count();
    assert_eq!(applied, planned(&plan).len() - 1, "{report}");
    assert_eq!(
        external_ids(&mock)[id].as_deref(),
        change["old_external_id"].as_str(),
        "the stale agent was not written"
    );
}

#[test]
fn a_saved_plan_edited_after_it_was_saved_is_refused_naming_the_edit() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let text = job
        .read("job.toml")
        .replace("max_changes = 500", "max_changes = 5");
    job.write("job.toml", &text);
    let before = external_ids(&mock);
    let (path, saved) = save_plan(&job, "plan.json");
    assert!(planned(&saved).len() > 5);
    let refused = |plan: &Value, says: &str| {
        std::fs::write(&path, plan.to_string()).unwrap();
        let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
        assert!(out.stderr.contains(says), "{says}: {}", out.stderr);
        assert_eq!(external_ids(&mock), before, "nothing was written");
    };

    // A kind that would lift the safety limits.
    let mut plan = saved.clone();
    plan["kind"] = "revert of anything".into();
    refused(
        &plan,
        "the plan was edited after it was saved (edited: \"kind\")",
    );
    // Another external ID for one agent.
    let mut plan = saved.clone();
    plan["changes"][3]["new_external_id"] = "ATTACKER-ID".into();
    let agent = plan["changes"][3]["agent_id"].as_str().unwrap().to_owned();
    refused(&plan, &format!("edited: changes[3] (agent {agent})"));
    // A change taken out.
    let mut plan = saved.clone();
    plan["changes"].as_array_mut().unwrap().remove(0);
    refused(&plan, "changes, ");
    // No seal at all.
    let mut plan = saved.clone();
    plan.as_object_mut().unwrap().remove("seal");
    refused(&plan, "the plan has no seal");

    // Left as saved, it is applied (over the limit: `--force`).
    std::fs::write(&path, saved.to_string()).unwrap();
    agentsync(&["apply", &path, "--force"])
        .state(&job)
        .quiet()
        .expect(0);
    assert_ne!(external_ids(&mock), before);
}

#[test]
fn a_plan_file_others_can_write_or_a_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let before = external_ids(&mock);
    let (path, _) = save_plan(&job, "plan.json");
    let key = job.state_dir().join("plans.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");

    for mode in [0o666, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
        assert!(
            out.stderr.contains(&format!(
                "has mode {mode:04o}: others could have written it"
            )),
            "{}",
            out.stderr
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = agentsync(&["apply", &path]).state(&job).quiet().expect(2);
    assert!(out.stderr.contains("plans' key"), "{}", out.stderr);
    assert_eq!(external_ids(&mock), before, "nothing was written");
    // A plan saved with another state directory's key is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = agentsync(&["apply", &path])
        .env("AGENTSYNC_STATE_DIR", other.path().to_str().unwrap())
        .quiet()
        .expect(2);
    assert!(out.stderr.contains("plans' key"), "{}", out.stderr);
    assert_eq!(external_ids(&mock), before, "nothing was written");
}
