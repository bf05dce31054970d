//! Actions that use the synced external ID, the run journal, history, revert and
//! completions, end to end through the binary.

mod common;

#[cfg(feature = "mock")]
use common::Mock;
use common::{Job, JobDir, Resp, Scim, Server, agentsync, sync};
use serde_json::{Value, json};

/// A time clock that accepts punches, except for the external ID "broken".
fn clock() -> Server {
    Server::start(|req| {
        if req.path().contains("/broken/") {
            return Resp::status(500, "application/json", r#"{"error": "clock is down"}"#);
        }
        Resp::status(201, "application/json", r#"{"ok": true}"#)
    })
}

/// A directory in a JSON file and a punch action on `clock`.
fn action_job(clock: &Server) -> JobDir {
    let job = Job::source(&clock.base)
        .records(".users")
        .sink_file("agents.json")
        .action("punch", "method", "POST")
        .action("punch", "path", "/users/{{external_id}}/punch-clock")
        .action(
            "punch",
            "body",
            r#"{"event": "{{var.event}}", "agent": "{{agent_id}}", "email": "{{email}}"}"#,
        )
        .write();
    job.write(
        "agents.json",
        r#"[
  {"id": "k1", "email": "Ann@x.com", "external_id": "a b/c?d"},
  {"id": "k2", "email": "bo@x.com", "external_id": null},
  {"id": "k3", "email": "cy@x.com", "external_id": "broken"},
  {"id": "k4", "email": "di@x.com", "external_id": "4"}
]
"#,
    );
    job
}

#[test]
fn an_action_encodes_the_path_and_escapes_the_body() {
    let clock = clock();
    let job = action_job(&clock);
    let event = "log\"in\\ \n{{x}}";
    let out = agentsync(&["action", "punch"])
        .config(&job)
        .args(&[
            "--agent",
            "  ANN@X.COM ",
            "--set",
            &format!("event={event}"),
        ])
        .expect(0);
    assert!(out.stdout.contains("HTTP 201"), "{}", out.stdout);
    let requests = clock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/users/a%20b%2Fc%3Fd/punch-clock");
    let body: Value = serde_json::from_str(&requests[0].body).expect("the body is JSON");
    assert_eq!(
        body,
        json!({"event": event, "agent": "k1", "email": "Ann@x.com"})
    );
}

#[test]
fn refused_actions_send_nothing() {
    let clock = clock();
    let job = action_job(&clock);
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["punch", "--agent", "nobody@x.com", "--set", "event=in"],
            1,
            "nobody@x.com",
        ),
        (
            &["punch", "--agent", "bo@x.com", "--set", "event=in"],
            1,
            "agent bo@x.com (k2) has no external ID yet: a sync links it when the source has a user with this email",
        ),
        (
            &["clock-out", "--agent", "di@x.com"],
            2,
            "no action \"clock-out\"",
        ),
        (&["punch", "--agent", "di@x.com"], 2, "{{var.event}}"),
    ];
    for (args, code, message) in cases {
        let out = agentsync(&["action"]).args(args).config(&job).expect(code);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    assert_eq!(clock.request_count(), 0, "a refused action sent a request");
}

#[test]
fn a_set_variable_the_action_does_not_use_is_refused_by_name() {
    let clock = clock();
    let job = action_job(&clock);
    let out = agentsync(&["action", "punch"])
        .config(&job)
        .args(&[
            "--agent",
            "ann@x.com",
            "--set",
            "event=in",
            "--set",
            "evnt=in",
        ])
        .expect(2);
    assert!(
        out.stderr
            .contains("--set evnt: action \"punch\" has no {{var.evnt}} (it uses {{var.event}})"),
        "{}",
        out.stderr
    );
    assert_eq!(clock.request_count(), 0);
}

#[test]
fn an_action_without_a_sink_says_why_it_needs_one() {
    let clock = clock();
    let job = Job::source(&clock.base)
        .records(".users")
        .action("punch", "path", "/users/{{external_id}}/punch-clock")
        .write();
    let out = agentsync(&["action", "punch", "--agent", "a@x.com"])
        .config(&job)
        .expect(2);
    assert!(
        out.stderr.contains(
            "action \"punch\" needs a [sink]: the agent directory where each agent's external ID is found"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("nothing to sync"), "{}", out.stderr);
    assert_eq!(clock.request_count(), 0);
}

#[test]
fn an_events_batch_reports_each_line_and_exits_3_on_a_failure() {
    let clock = clock();
    let job = action_job(&clock);
    let events = job.write(
        "events.jsonl",
        r#"{"email": "ann@x.com", "vars": {"event": "login"}}
{"email": "cy@x.com", "vars": {"event": "login"}}

{"email": "ghost@x.com", "vars": {"event": "login"}}
{"email": "di@x.com", "vars": {"event": "logout"}}
"#,
    );
    let lines = agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", events.to_str().unwrap()])
        .output_json()
        .expect(3)
        .json_lines();
    let ok: Vec<(&str, bool)> = lines
        .iter()
        .map(|l| (l["email"].as_str().unwrap(), l["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        ok,
        [
            ("Ann@x.com", true),
            ("cy@x.com", false),
            ("ghost@x.com", false),
            ("di@x.com", true)
        ]
    );
    assert!(
        lines[1]["error"].as_str().unwrap().contains("HTTP 500"),
        "{}",
        lines[1]
    );
    // Each result says what it was sent with: a login and a logout differ.
    let events: Vec<&str> = lines
        .iter()
        .map(|l| l["vars"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["login", "login", "login", "logout"]);
    // The unknown agent sent nothing; the other three did.
    assert_eq!(clock.request_count(), 3);
    let last: Value = serde_json::from_str(&clock.requests()[2].body).unwrap();
    assert_eq!(last["event"], "logout");
}

#[test]
fn every_punch_carries_an_idempotency_key_its_events_id_or_a_fresh_one() {
    let clock = clock();
    let job = action_job(&clock);
    let config = std::fs::read_to_string(&job.config).unwrap();
    std::fs::write(
        &job.config,
        format!("{config}\n[actions.punch.headers]\nIdempotency-Key = \"{{{{event_id}}}}\"\n"),
    )
    .unwrap();
    let events = job.write(
        "events.jsonl",
        r#"{"id": "evt-1", "email": "ann@x.com", "vars": {"event": "login"}}
{"email": "di@x.com", "vars": {"event": "login"}}
"#,
    );
    agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", events.to_str().unwrap()])
        .run()
        .expect(0);
    for _ in 0..2 {
        agentsync(&["action", "punch"])
            .config(&job)
            .args(&["--agent", "di@x.com", "--set", "event=logout"])
            .run()
            .expect(0);
    }
    let keys: Vec<String> = clock
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys[0], "evt-1");
    // The others had no ID: each got its own, never an empty one.
    for key in &keys[1..] {
        assert!(
            key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()),
            "{keys:?}"
        );
    }
    assert!(keys[1] != keys[2] && keys[2] != keys[3], "{keys:?}");
}

#[test]
fn a_bad_events_line_is_refused_before_anything_is_sent() {
    let clock = clock();
    let job = action_job(&clock);
    let events = job.write(
        "events.jsonl",
        "{\"email\": \"ann@x.com\", \"vars\": {\"event\": \"in\"}}\nnot json\n",
    );
    let out = agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", events.to_str().unwrap()])
        .run();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
    assert_eq!(clock.request_count(), 0);
}

#[test]
fn a_list_of_bad_lines_keeps_its_line_breaks_and_escapes_what_the_file_said() {
    let clock = clock();
    let job = action_job(&clock);
    let events = job.write(
        "events.jsonl",
        "{\"email\": \"ann@x.com\", \"vars\": {\"event\": \"in\"}}\nnot json\n{\"email\": 1}\n",
    );
    let out = agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", events.to_str().unwrap()])
        .expect(2);
    let name = events.to_str().unwrap();
    assert!(
        out.stderr.contains(&format!(
            "agentsync: error: 2 malformed events; nothing was sent:\n  {name}: line 2: not JSON"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "\n  {name}: line 3: \"email\" is a number, not a string\n"
        )),
        "{}",
        out.stderr
    );
    // An email from the file with a line break in it: still one line.
    let forged = job.write(
        "forged.jsonl",
        "{\"email\": \"a@x.com\\nagentsync: error: forged\"}\n",
    );
    let out = agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", forged.to_str().unwrap()])
        .expect(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with(
            "agentsync: error: action \"punch\": 1 incomplete event; nothing was sent:"
        ),
        "{}",
        out.stderr
    );
    assert!(
        lines[1].contains(": line 1: a@x.com\\nagentsync: error: forged has no vars.event"),
        "{}",
        out.stderr
    );
    assert_eq!(clock.request_count(), 0);
}

/// A sync to `scim` from a source of these users.
fn sync_job(users: &[(&str, &str)], scim: &Scim) -> (Server, JobDir) {
    let users: Vec<Value> = users
        .iter()
        .map(|(id, email)| json!({"id": id, "email": email}))
        .collect();
    let body = json!({ "users": users });
    let src = Server::start(move |_| Resp::value(&body));
    let job = Job::source(&src.base)
        .name("nightly")
        .records(".users")
        .sink_scim(&scim.base())
        .sync("unlink_missing", true)
        .sync("max_unlink_percent", 100)
        .write();
    (src, job)
}

#[test]
fn applied_runs_are_journaled_and_revert_restores_them() {
    let scim = Scim::start(
        &[
            ("a1", "a@x.com", None),
            ("a2", "b@x.com", Some("old-2")),
            ("a3", "c@x.com", Some("3")),
            ("a4", "d@x.com", Some("9")),
        ],
        &[],
    );
    let (_src, job) = sync_job(
        &[("1", "a@x.com"), ("2", "b@x.com"), ("3", "c@x.com")],
        &scim,
    );

    sync(&job).dry_run().quiet().expect(0);
    assert!(job.journal().is_empty(), "a dry run was journaled");

    sync(&job).quiet().expect(0);
    let entries = job.journal();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["name"], "nightly");
    assert_eq!(entry["kind"], "sync");
    assert_eq!(
        entry["summary"],
        json!({"link": 1, "update": 1, "unlink": 1, "failed": 0})
    );
    let changes: Vec<(String, Value, Value, Value)> = entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let agent = c["agent_id"].as_str().unwrap().to_owned();
            (
                agent,
                c["old_external_id"].clone(),
                c["new_external_id"].clone(),
                c["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("a1".to_owned(), json!(null), json!("1"), json!("applied")),
            (
                "a2".to_owned(),
                json!("old-2"),
                json!("2"),
                json!("applied")
            ),
            ("a4".to_owned(), json!("9"), json!(null), json!("applied")),
        ]
    );
    let run_id = entry["run"].as_str().unwrap().to_owned();

    let history = agentsync(&["history"]).config(&job).expect(0);
    assert!(history.stdout.contains(&run_id), "{}", history.stdout);

    // A dry-run revert writes nothing; the revert restores every ID.
    let writes = scim.writes().len();
    let plan = agentsync(&["revert", &run_id])
        .config(&job)
        .dry_run()
        .output_json()
        .expect(0);
    assert_eq!(plan.json()["summary"]["unlink"], 1);
    assert_eq!(plan.json()["summary"]["update"], 1);
    assert_eq!(plan.json()["summary"]["link"], 1);
    assert_eq!(scim.writes().len(), writes);

    agentsync(&["revert", "last"])
        .config(&job)
        .quiet()
        .expect(0);
    assert_eq!(scim.external_id("a1"), None);
    assert_eq!(scim.external_id("a2").as_deref(), Some("old-2"));
    assert_eq!(scim.external_id("a3").as_deref(), Some("3"));
    assert_eq!(scim.external_id("a4").as_deref(), Some("9"));
    let entries = job.journal();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["kind"], format!("revert of {run_id}"));
}

#[test]
fn revert_refuses_an_agent_changed_since() {
    let scim = Scim::start(&[("a1", "a@x.com", None), ("a2", "b@x.com", None)], &[]);
    let (_src, job) = sync_job(&[("1", "a@x.com"), ("2", "b@x.com")], &scim);
    sync(&job).quiet().expect(0);
    // Someone relinks a2 by hand after the run.
    scim.set_external_id("a2", "manual");
    // An agent of the run left changed: the revert is incomplete (exit 3).
    let report = agentsync(&["revert", "last"])
        .config(&job)
        .output_json()
        .expect(3)
        .json();
    assert_eq!(report["summary"]["unlink"], 1);
    assert_eq!(report["summary"]["conflict"], 1);
    let reason = report["conflicts"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("manual"), "{reason}");
    assert_eq!(scim.external_id("a1"), None, "a1 reverted");
    assert_eq!(
        scim.external_id("a2").as_deref(),
        Some("manual"),
        "a2 left as changed"
    );
}

#[test]
fn revert_of_an_unknown_run_is_an_error() {
    let scim = Scim::start(&[("a1", "a@x.com", None)], &[]);
    let (_src, job) = sync_job(&[("1", "a@x.com")], &scim);
    // No run yet: `revert last` has nothing to undo (exit 0, nothing written).
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(out.stdout.contains("nothing to revert"), "{}", out.stdout);
    assert!(scim.writes().is_empty());
    sync(&job).quiet().expect(0);
    let out = agentsync(&["revert", "20000101"]).config(&job).run();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("20000101"), "{}", out.stderr);
    assert_eq!(scim.writes().len(), 1);
}

#[test]
#[cfg(feature = "mock")]
fn punch_after_a_sync_against_the_bundled_mock() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    sync(&job).quiet().expect(0);
    agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--agent", "user+3@talkdesk.com", "--set", "event=login"])
        .expect(0);
    let punches = mock.get("/punches")["punches"].clone();
    assert_eq!(punches.as_array().unwrap().len(), 1, "{punches}");
    assert_eq!(punches[0]["user_id"], "3");
    assert_eq!(punches[0]["event"], "login");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = agentsync(&["completions", shell]).expect(0);
        assert!(out.stdout.contains("agentsync"), "{shell}");
        assert!(
            out.stdout.contains("revert"),
            "{shell}: subcommands are completed"
        );
    }
    agentsync(&["completions", "tcsh"]).expect(2);
}
