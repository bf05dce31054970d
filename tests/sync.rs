//! The sync end to end: plan, dry run, apply, idempotence, safety limits and
//! failed writes against a SCIM directory of the tests' own and file sinks.

mod common;

use common::one_page_source as source;
use common::{Job, JobDir, Resp, Scim, Server, sync};
#[cfg(feature = "mock")]
use common::{Mock, agentsync};
use serde_json::{Value, json};

/// A sync from `src` to `scim`, two agents a listing page, no retries.
fn scim_job(src: &Server, scim: &Scim) -> Job {
    Job::source(&src.base)
        .name("test-sync")
        .path("/users")
        .records(".users")
        .set("retries", 0)
        .sink_scim(&scim.base())
        .sink("page_size", 2)
        .sink("retries", 0)
}

/// The crafted directory: one agent for each kind of outcome.
fn crafted() -> (Server, Scim) {
    let src = source(&[
        ("1", "link@x.com"),
        ("2", "UPDATE@x.com"),
        ("3", "same@x.com"),
        ("4", "nobody@x.com"),
        ("5", "twoids@x.com"),
        ("6", "twoids@x.com"),
        ("7", "twoagents@x.com"),
    ]);
    let scim = Scim::start(
        &[
            ("a-link", "Link@X.com", None),
            ("a-update", "update@x.com", Some("old-2")),
            ("a-same", "same@x.com", Some("3")),
            ("a-twoids", "twoids@x.com", None),
            ("a-two1", "twoagents@x.com", None),
            ("a-two2", "TwoAgents@x.com", Some("9")),
            ("a-gone", "gone@x.com", Some("8")),
        ],
        &[],
    );
    (src, scim)
}

#[test]
fn dry_run_prints_the_exact_plan_and_writes_nothing() {
    let (src, scim) = crafted();
    let job = scim_job(&src, &scim).write();
    let report = sync(&job).dry_run().output_json().expect(0).json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["source"],
        json!({"pages": 1, "records": 7, "users": 7, "skipped": []})
    );
    assert_eq!(report["sink"], json!({"agents": 7}));
    assert_eq!(
        report["summary"],
        json!({"link": 1, "update": 1, "unlink": 0, "unchanged": 1, "unmatched": 1, "conflict": 2, "contested": 0,
               "failed": 0, "skipped": 0, "stale": 0, "unknown": 0})
    );
    assert_eq!(
        report["changes"],
        json!([
            {"action": "link", "email": "Link@X.com", "agent_id": "a-link", "old_external_id": null,
             "new_external_id": "1", "status": "planned", "error": null},
            {"action": "update", "email": "update@x.com", "agent_id": "a-update", "old_external_id": "old-2",
             "new_external_id": "2", "status": "planned", "error": null},
        ])
    );
    assert_eq!(
        report["unmatched"],
        json!([{"email": "nobody@x.com", "external_id": "4"}])
    );
    assert_eq!(
        report["conflicts"],
        json!([
            {"email": "twoagents@x.com", "reason": "2 agents have this email: a-two1, a-two2"},
            {"email": "twoids@x.com", "reason": "2 ids in the source: 5, 6"},
        ])
    );
    assert!(scim.writes().is_empty(), "a dry run wrote");

    // The human diff says the same.
    let out = sync(&job).dry_run().expect(0);
    assert!(
        out.stdout
            .contains("link (1):\n  + Link@X.com    (none) -> 1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("update (1):\n  ~ update@x.com  old-2 -> 2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("? nobody@x.com  4"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "Plan: 1 link, 1 update, 0 unlink, 1 unchanged, 1 unmatched, 2 conflict, 0 failed"
        ),
        "{}",
        out.stdout
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn apply_writes_exactly_the_plan_and_a_second_run_is_a_no_op() {
    let (src, scim) = crafted();
    let job = scim_job(&src, &scim).write();
    sync(&job)
        .dry_run()
        .arg("--detailed-exitcode")
        .quiet()
        .expect(5);

    let report = sync(&job).output_json().expect(0).json();
    assert_eq!(report["dry_run"], false);
    let statuses: Vec<_> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("applied"), json!("applied")]);

    let writes = scim.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes.iter().all(|w| w.method == "PUT"));
    // Writes run concurrently: their order is not fixed.
    let mut paths: Vec<_> = writes.iter().map(|w| w.path()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/scim/v2/Users/a-link", "/scim/v2/Users/a-update"]);
    let link = writes
        .iter()
        .find(|w| w.path() == "/scim/v2/Users/a-link")
        .unwrap();
    assert_eq!(link.header("content-type"), Some("application/scim+json"));
    let body: Value = serde_json::from_str(&link.body).unwrap();
    assert_eq!(body["externalId"], "1");
    assert_eq!(body["userName"], "Link@X.com");
    assert_eq!(
        body["name"]["formatted"], "Agent a-link",
        "PUT keeps the rest of the resource"
    );
    assert!(
        body.get("meta").is_none(),
        "read-only meta is not sent back"
    );

    assert_eq!(scim.external_id("a-link").as_deref(), Some("1"));
    assert_eq!(scim.external_id("a-update").as_deref(), Some("2"));
    // Conflicts and agents absent from the source are untouched.
    assert_eq!(scim.external_id("a-twoids"), None);
    assert_eq!(scim.external_id("a-two2").as_deref(), Some("9"));
    assert_eq!(scim.external_id("a-gone").as_deref(), Some("8"));

    let out = sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
    assert!(out.stdout.contains("No changes"), "{}", out.stdout);
    let out = sync(&job).output_json().expect(0);
    assert_eq!(out.json()["changes"], json!([]));
    assert_eq!(scim.writes().len(), 2, "the second run wrote");
}

#[test]
fn patch_mode_sends_patch_ops() {
    let src = source(&[("1", "a@x.com")]);
    let scim = Scim::start(&[("a", "a@x.com", None), ("b", "b@x.com", Some("7"))], &[]);
    let job = scim_job(&src, &scim)
        .sink("update", "patch")
        .sync("unlink_missing", true)
        .sync("max_unlink_percent", 100)
        .write();
    sync(&job).quiet().expect(0);
    let writes = scim.writes();
    assert_eq!(writes.len(), 2);
    assert!(writes.iter().all(|w| w.method == "PATCH"));
    // Writes run concurrently: take them in path order.
    let mut writes: Vec<_> = writes.iter().collect();
    writes.sort_by_key(|w| w.path());
    let bodies: Vec<Value> = writes
        .iter()
        .map(|w| serde_json::from_str(&w.body).unwrap())
        .collect();
    assert_eq!(writes[0].path(), "/scim/v2/Users/a");
    assert_eq!(
        bodies[0]["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"])
    );
    assert_eq!(
        bodies[0]["Operations"],
        json!([{"op": "replace", "path": "externalId", "value": "1"}])
    );
    assert_eq!(
        bodies[1]["Operations"],
        json!([{"op": "remove", "path": "externalId"}])
    );
    assert_eq!(scim.external_id("a").as_deref(), Some("1"));
    assert_eq!(scim.external_id("b"), None);
}

/// Five linked agents, of which the source still knows `keep`.
fn unlink_setup(keep: usize) -> (Server, Scim) {
    let users: Vec<(String, String)> = (1..=keep)
        .map(|i| (i.to_string(), format!("u{i}@x.com")))
        .collect();
    let users: Vec<(&str, &str)> = users
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ids: Vec<(String, String, String)> = (1..=5)
        .map(|i| (format!("a{i}"), format!("u{i}@x.com"), i.to_string()))
        .collect();
    let agents: Vec<(&str, &str, Option<&str>)> = ids
        .iter()
        .map(|(a, e, x)| (a.as_str(), e.as_str(), Some(x.as_str())))
        .collect();
    (source(&users), Scim::start(&agents, &[]))
}

#[test]
fn unlink_over_the_limit_is_refused_with_nothing_written() {
    let (src, scim) = unlink_setup(3); // 2 of 5 linked agents would be unlinked: 40%
    let job = scim_job(&src, &scim).sync("unlink_missing", true).write();
    let out = sync(&job).expect(4);
    assert!(
        out.stderr.contains("unlinks 2 of 5 linked agents (40.0%)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(
        out.stdout.contains("- u4@x.com  4 -> (none)"),
        "the plan is shown: {}",
        out.stdout
    );
    assert!(scim.writes().is_empty());

    let out = sync(&job).arg("--force").output_json().expect(0);
    assert_eq!(out.json()["summary"]["unlink"], 2);
    assert_eq!(scim.external_id("a4"), None);
    assert_eq!(scim.external_id("a5"), None);
    assert_eq!(scim.external_id("a3").as_deref(), Some("3"));
}

#[test]
fn unlink_under_the_limit_is_applied_and_off_by_default() {
    let (src, scim) = unlink_setup(4); // 1 of 5: 20%, not more than the default
    let job = scim_job(&src, &scim).write();
    let out = sync(&job).output_json().expect(0);
    assert_eq!(
        out.json()["summary"]["unlink"],
        0,
        "unlink_missing defaults to false"
    );
    let job = scim_job(&src, &scim).sync("unlink_missing", true).write();
    sync(&job).quiet().expect(0);
    assert_eq!(scim.external_id("a5"), None);
    assert_eq!(scim.writes().len(), 1);
}

#[test]
fn max_changes_is_a_safety_limit() {
    let src = source(&[("1", "a@x.com"), ("2", "b@x.com"), ("3", "c@x.com")]);
    let scim = Scim::start(
        &[
            ("a", "a@x.com", None),
            ("b", "b@x.com", None),
            ("c", "c@x.com", None),
        ],
        &[],
    );
    let job = scim_job(&src, &scim).sync("max_changes", 2).write();
    let out = sync(&job).expect(4);
    assert!(
        out.stderr
            .contains("3 changes, more than [sync] max_changes = 2"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
    // A dry run is not refused: it only shows the plan.
    sync(&job).dry_run().expect(0);
}

#[test]
fn a_failed_write_is_reported_and_the_others_go_on() {
    let src = source(&[("1", "a@x.com"), ("2", "b@x.com"), ("3", "c@x.com")]);
    let scim = Scim::start(
        &[
            ("a", "a@x.com", None),
            ("b", "b@x.com", None),
            ("c", "c@x.com", None),
        ],
        &["b"],
    );
    let job = scim_job(&src, &scim).write();
    let report = sync(&job).output_json().expect(3).json();
    assert_eq!(report["summary"]["failed"], 1);
    let failed = &report["changes"][1];
    assert_eq!(failed["agent_id"], "b");
    assert_eq!(failed["status"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("HTTP 400"), "{error}");
    assert!(error.contains("invalidValue"), "{error}");
    assert!(error.contains("externalId rejected by policy"), "{error}");
    assert_eq!(scim.external_id("a").as_deref(), Some("1"));
    assert_eq!(scim.external_id("c").as_deref(), Some("3"));

    let out = sync(&job).expect(3);
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
}

#[test]
fn a_source_failure_writes_nothing() {
    let src = Server::start(|_| Resp::status(500, "text/plain", "boom"));
    let scim = Scim::start(&[("a", "a@x.com", None)], &[]);
    let job = scim_job(&src, &scim).write();
    let out = sync(&job).expect(1);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    // The directory is listed while the source is read, never written.
    assert!(scim.writes().is_empty());
    assert!(scim.server.requests().iter().all(|r| r.method == "GET"));
}

/// A sync from `src` to a file next to the config.
fn file_job(src: &Server, file: &str) -> JobDir {
    Job::source(&src.base)
        .records(".users")
        .sink_file(file)
        .write()
}

#[test]
fn json_file_sink_keeps_every_other_field() {
    let src = source(&[("1", "a@x.com"), ("2", "b@x.com")]);
    let job = file_job(&src, "agents.json");
    let original = r#"[
  {"name": "Ann", "email": "A@x.com", "team": {"id": 4}, "external_id": null},
  {"email": "b@x.com", "name": "Bob", "external_id": "old"},
  {"name": "Cy", "email": "c@x.com", "external_id": "keep"}
]
"#;
    let path = job.write("agents.json", original);
    let out = sync(&job).output_json().expect(0);
    assert_eq!(out.json()["summary"]["link"], 1);
    assert_eq!(out.json()["summary"]["update"], 1);
    let written = std::fs::read_to_string(&path).unwrap();
    let agents: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        agents,
        json!([
            {"name": "Ann", "email": "A@x.com", "team": {"id": 4}, "external_id": "1"},
            {"email": "b@x.com", "name": "Bob", "external_id": "2"},
            {"name": "Cy", "email": "c@x.com", "external_id": "keep"},
        ])
    );
    // Field order is kept too.
    assert!(
        written.find("\"name\": \"Bob\"").unwrap()
            > written.find("\"email\": \"b@x.com\"").unwrap()
    );
    sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
}

#[test]
fn csv_file_sink_keeps_foreign_columns_and_row_order() {
    let src = source(&[("10", "b@x.com"), ("11", "c@x.com")]);
    let job = file_job(&src, "agents.csv");
    let path = job.write(
        "agents.csv",
        "agent_id,email,team,phone\nt1,a@x.com,blue,+351 1\nt2,b@x.com,red,\"+1, ext 2\"\nt3,C@X.COM,green,\n",
    );
    let before = std::fs::read_to_string(&path).unwrap();
    sync(&job).dry_run().expect(0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "a dry run wrote"
    );
    sync(&job).quiet().expect(0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "agent_id,email,team,phone,external_id\nt1,a@x.com,blue,+351 1,\nt2,b@x.com,red,\"+1, ext 2\",10\nt3,C@X.COM,green,,11\n"
    );
    sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
}

#[test]
fn the_json_report_has_the_contract_shape() {
    let (src, scim) = crafted();
    let job = scim_job(&src, &scim).write();
    let report = sync(&job).dry_run().output_json().run().json();
    let keys = |v: &Value| {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&report),
        [
            "changes",
            "conflicts",
            "dry_run",
            "refusal",
            "sink",
            "source",
            "summary",
            "unmatched"
        ]
    );
    assert_eq!(
        keys(&report["source"]),
        ["pages", "records", "skipped", "users"]
    );
    assert_eq!(
        keys(&report["summary"]),
        [
            "conflict",
            "contested",
            "failed",
            "link",
            "skipped",
            "stale",
            "unchanged",
            "unknown",
            "unlink",
            "unmatched",
            "update"
        ]
    );
    assert_eq!(
        keys(&report["changes"][0]),
        [
            "action",
            "agent_id",
            "email",
            "error",
            "new_external_id",
            "old_external_id",
            "status"
        ]
    );
}

#[test]
#[cfg(feature = "mock")]
fn punch_config_syncs_the_bundled_mock() {
    let mock = Mock::start(&[]);
    let job = mock.punch_job();
    let plan = sync(&job).dry_run().output_json().expect(0);
    let summary = plan.json()["summary"].clone();
    assert!(summary["link"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["update"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["unmatched"].as_u64().unwrap() > 0, "{summary}");
    sync(&job).quiet().expect(0);
    let again = sync(&job)
        .dry_run()
        .arg("--detailed-exitcode")
        .output_json()
        .expect(0);
    let linked = mock.get("/scim/v2/Users?count=1000")["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| {
            let n = u["userName"]
                .as_str()
                .unwrap()
                .trim_start_matches("user+")
                .trim_end_matches("@talkdesk.com");
            u["externalId"].as_str() == Some(n)
        })
        .count() as u64;
    assert_eq!(
        linked,
        again.json()["summary"]["unchanged"].as_u64().unwrap()
    );
}

#[test]
#[cfg(feature = "mock")]
fn demo_runs_plan_apply_plan() {
    let out = agentsync(&["demo"]).expect(0);
    let runs: Vec<&str> = out.stdout.split("=== ").skip(1).collect();
    assert_eq!(runs.len(), 4, "{}", out.stdout);
    assert!(
        runs[0].contains("link (") && runs[0].contains("update (") && runs[0].contains("unmatched"),
        "{}",
        runs[0]
    );
    assert!(runs[0].contains("Plan: "), "{}", runs[0]);
    assert!(runs[1].contains("Applied: "), "{}", runs[1]);
    assert!(runs[2].contains("No changes"), "{}", runs[2]);
    // The listener of the same config, sent a signed login and logout: both
    // acknowledged, and punched once each, in order, with the event's ID.
    let listen = runs[3];
    assert!(listen.starts_with("4. agentsync listen"), "{listen}");
    assert!(
        listen.contains("sent user.login  id evt-demo-login   -> 202"),
        "{listen}"
    );
    assert!(
        listen.contains("sent user.logout id evt-demo-logout  -> 202"),
        "{listen}"
    );
    let punches: Vec<&str> = listen
        .lines()
        .filter(|l| l.starts_with("  user "))
        .map(|l| l.split(" at ").next().unwrap())
        .collect();
    assert_eq!(
        punches,
        [
            "  user 1 login  Idempotency-Key evt-demo-login",
            "  user 1 logout Idempotency-Key evt-demo-logout",
        ],
        "{listen}"
    );
    assert!(
        listen.ends_with("listener stopped with SIGTERM: exit 0\n"),
        "{listen}"
    );
}

#[test]
#[cfg(feature = "mock")]
fn verbose_logs_one_line_per_request() {
    let mock = Mock::start(&["--users", "30", "--agents", "30"]);
    let job = mock.punch_job();
    let out = sync(&job).arg("-v").run();
    out.expect(0);
    let stats = mock.get("/_mock/stats");
    let sent: u64 = [
        "source_pages",
        "service_provider_config",
        "scim_list",
        "scim_get",
        "scim_put",
        "scim_patch",
    ]
    .iter()
    .map(|k| stats[k].as_u64().unwrap())
    .sum();
    let lines: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" -> HTTP ") && l.contains("(attempt 1)"))
        .collect();
    assert_eq!(lines.len() as u64, sent, "{stats}\n{}", out.stderr);
    // Each names the method, the URL and the time it took.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("GET http://127.0.0.1:") && l.contains("/scim/v2/Users?")),
        "{}",
        out.stderr
    );
    assert!(lines.iter().all(|l| l.contains(" ms ")), "{}", out.stderr);
}
