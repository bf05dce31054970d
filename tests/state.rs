//! What a run leaves behind and what it refuses to do: the source guards, the
//! write-ahead journal (interrupted and killed runs, torn lines, a journal
//! that cannot be written), the state directory, signals, convergence, the
//! metrics file and the health-check pings.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Job, JobDir, Resp, Scim, Server, agentsync, sync};
use serde_json::{Value, json};

/// A source serving `users` (id, email), changeable while the test runs.
struct Source {
    server: Server,
    users: Arc<Mutex<Value>>,
}

impl Source {
    fn start(users: &[(String, String)]) -> Self {
        let users = Arc::new(Mutex::new(Self::records(users)));
        let shared = users.clone();
        let server =
            Server::start(move |_| Resp::value(&json!({"users": *shared.lock().unwrap()})));
        Source { server, users }
    }

    fn records(users: &[(String, String)]) -> Value {
        users
            .iter()
            .map(|(id, email)| json!({"id": id, "email": email}))
            .collect()
    }

    fn set(&self, users: &[(String, String)]) {
        *self.users.lock().unwrap() = Self::records(users);
    }
}

fn people(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("{i}"), format!("u{i}@x.com")))
        .collect()
}

fn job(src: &Source, scim: &Scim) -> Job {
    Job::source(&src.server.base)
        .name("nightly")
        .records(".users")
        .sink_scim(&scim.base())
        .sync("max_unlink_percent", 100)
}

/// The journal's lines, as JSON.
fn journal_lines(job: &JobDir) -> Vec<Value> {
    let path = job.journal_path().expect("a journal was written");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn linked(scim: &Scim, n: usize) -> usize {
    (1..=n)
        .filter(|i| scim.external_id(&format!("a{i}")).is_some())
        .count()
}

#[test]
fn a_mapping_that_skips_everything_exits_1_with_the_reason() {
    let src = Source::start(&people(25));
    let scim = Scim::numbered(5, Duration::ZERO);
    let job = job(&src, &scim)
        .mapping("{id: .punch_clock_id, email: .email}")
        .write();
    let out = sync(&job).quiet().expect(1);
    assert!(
        out.stderr.contains("the source gave 0 users"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("skipped: "),
        "the reason: {}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
    // --force does not pass it; a dry run fails the same way.
    sync(&job).quiet().arg("--force").expect(1);
    sync(&job).quiet().dry_run().expect(1);
    // The failed runs are in the history.
    let runs = job.journal();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["ending"], "failed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("the source gave 0 users")
    );
}

#[test]
fn too_many_skipped_records_are_refused_and_a_dry_run_says_so() {
    let mut users = people(10);
    users[3].1 = "not an email".into();
    users[7].1 = "neither".into();
    let src = Source::start(&users);
    let scim = Scim::numbered(10, Duration::ZERO);
    let job = job(&src, &scim).write();

    let dry = sync(&job).dry_run().expect(0);
    assert!(
        dry.stdout.contains("Refused: the mapping skipped 2 of 10"),
        "{}",
        dry.stdout
    );
    let report = sync(&job).dry_run().output_json().expect(0).json();
    assert!(
        report["refusal"]
            .as_str()
            .unwrap()
            .contains("max_skipped_percent = 10"),
        "{report}"
    );
    sync(&job)
        .dry_run()
        .arg("--detailed-exitcode")
        .quiet()
        .expect(5);

    let out = sync(&job).quiet().expect(4);
    assert!(out.stderr.contains("max_skipped_percent"), "{}", out.stderr);
    assert!(scim.writes().is_empty());
    sync(&job).quiet().arg("--force").expect(0);
    assert_eq!(linked(&scim, 10), 8);
    let runs = job.journal();
    let endings: Vec<_> = runs.iter().map(|r| r["ending"].clone()).collect();
    assert_eq!(endings, [json!("refused"), json!("success")]);
}

#[test]
fn a_source_drop_over_the_limit_exits_4_with_nothing_written() {
    let src = Source::start(&people(10));
    let scim = Scim::numbered(10, Duration::ZERO);
    let job = job(&src, &scim).sync("unlink_missing", true).write();
    sync(&job).quiet().expect(0);
    let writes = scim.writes().len();
    assert_eq!(writes, 10);

    // The source now gives 4 users: 60% fewer than the last successful run.
    src.set(&people(4));
    let out = sync(&job).quiet().expect(4);
    assert!(
        out.stderr
            .contains("60.0% fewer than the 10 of the last successful run"),
        "{}",
        out.stderr
    );
    assert_eq!(scim.writes().len(), writes, "nothing was written");
    assert_eq!(linked(&scim, 10), 10);
    // The refusal holds run after run: it is measured against the last success.
    sync(&job).quiet().expect(4);
    let runs = job.journal();
    let endings: Vec<_> = runs.iter().map(|r| r["ending"].clone()).collect();
    assert_eq!(
        endings,
        [json!("success"), json!("refused"), json!("refused")]
    );
    assert_eq!(runs[0]["users"], 10);
    // 40% fewer is within the limit.
    src.set(&people(6));
    sync(&job).quiet().expect(0);
}

#[test]
fn sigterm_mid_apply_finishes_the_write_in_flight_and_journals_the_run() {
    let src = Source::start(&people(12));
    let scim = Scim::numbered(12, Duration::from_millis(300));
    let job = job(&src, &scim).sink("concurrency", 2).write();
    let child = sync(&job).output_json().spawn_captured();
    scim.wait_for_writes(3);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{stderr}");
    scim.server.wait_idle();

    // The report is printed: what was written, and what was not started.
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let statuses: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    let applied = statuses.iter().filter(|s| **s == "applied").count();
    assert!((3..12).contains(&applied), "{statuses:?}");
    assert_eq!(
        applied,
        linked(&scim, 12),
        "every write in flight finished and is reported"
    );
    assert!(
        statuses.iter().all(|s| *s == "applied" || *s == "skipped"),
        "{statuses:?}"
    );

    // The journal has the run as interrupted, with every applied change.
    let lines = journal_lines(&job);
    let end = lines.last().unwrap();
    assert_eq!(end["record"], "end");
    assert_eq!(end["ending"], "interrupted");
    let runs = job.journal();
    assert_eq!(runs[0]["ending"], "interrupted");
    let history = agentsync(&["history"]).config(&job).expect(0);
    assert!(history.stdout.contains("interrupted"), "{}", history.stdout);

    agentsync(&["revert", "last"])
        .config(&job)
        .quiet()
        .expect(0);
    assert_eq!(linked(&scim, 12), 0, "every agent written was restored");
}

#[test]
fn sigkill_mid_apply_leaves_a_journal_that_revert_can_undo() {
    let src = Source::start(&people(12));
    let scim = Scim::numbered(12, Duration::from_millis(300));
    let job = job(&src, &scim).sink("concurrency", 3).write();
    let mut child = sync(&job).quiet().spawn_captured();
    scim.wait_for_writes(5);
    child.kill().unwrap();
    child.wait().unwrap();
    // The writes the killed run had sent still land.
    scim.server.wait_idle();
    let written = linked(&scim, 12);
    assert!((5..12).contains(&written), "{written}");

    // Every write sent has its intent in the journal, before it was sent.
    let lines = journal_lines(&job);
    assert_eq!(lines[0]["record"], "start");
    let intents = lines.iter().filter(|l| l["record"] == "intent").count();
    assert_eq!(intents, 12);
    assert!(
        lines.iter().all(|l| l["record"] != "end"),
        "a killed run has no end"
    );
    let runs = job.journal();
    assert_eq!(runs[0]["ending"], "interrupted");
    let history = agentsync(&["history"]).config(&job).expect(0);
    assert!(history.stdout.contains("interrupted"), "{}", history.stdout);

    let revert = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(revert.stderr.contains("had no result"), "{}", revert.stderr);
    assert_eq!(linked(&scim, 12), 0, "every agent written was restored");
    let runs = job.journal();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["ending"], "success");
}

#[test]
fn a_journal_that_cannot_be_written_writes_nothing() {
    let src = Source::start(&people(3));
    let scim = Scim::numbered(3, Duration::ZERO);
    // A full disk.
    let full = job(&src, &scim).sync("journal", "/dev/full").write();
    let out = sync(&full).quiet().expect(1);
    assert!(out.stderr.contains("journal"), "{}", out.stderr);
    // A state directory that cannot be made (under a file).
    let plain = job(&src, &scim).write();
    let file = plain.write("not-a-dir", "");
    let out = sync(&plain)
        .env("AGENTSYNC_STATE_DIR", file.join("state").to_str().unwrap())
        .quiet()
        .expect(1);
    assert!(out.stderr.contains("Not a directory"), "{}", out.stderr);
    // A read-only state directory (root may write anywhere: checked as a user).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = plain.path("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        sync(&plain)
            .env("AGENTSYNC_STATE_DIR", ro.to_str().unwrap())
            .quiet()
            .expect(1);
    }
    assert!(scim.writes().is_empty(), "the sink was written");
    assert_eq!(src.server.request_count(), 0, "the source was read");
    // A dry run needs no journal.
    sync(&full).quiet().dry_run().expect(0);
}

#[test]
fn a_torn_journal_line_does_not_break_history() {
    let src = Source::start(&people(3));
    let scim = Scim::numbered(3, Duration::ZERO);
    let job = job(&src, &scim).write();
    sync(&job).quiet().expect(0);
    let path = job.journal_path().unwrap();
    // A crash in the middle of a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"record":"change","run":"2026"#);
    std::fs::write(&path, text).unwrap();

    let history = agentsync(&["history"]).config(&job).expect(0);
    assert!(history.stderr.contains("skipped"), "{}", history.stderr);
    // A heading and the one run.
    assert_eq!(history.stdout.lines().count(), 2, "{}", history.stdout);
    // The next run starts on a line of its own.
    src.set(&people(2));
    sync(&job).quiet().expect(0);
    assert_eq!(job.journal().len(), 2);
    let lines = std::fs::read_to_string(&path).unwrap();
    assert!(
        lines.contains("\"run\":\"2026\n{\"record\":\"start\""),
        "{lines}"
    );
}

#[test]
fn the_journal_is_private_in_the_state_directory() {
    use std::os::unix::fs::PermissionsExt;
    let src = Source::start(&people(2));
    let scim = Scim::numbered(2, Duration::ZERO);
    let job = job(&src, &scim).write();
    // A config folder nobody may write to and no temp dir are no obstacle.
    let before: Vec<_> = std::fs::read_dir(job.dir.path()).unwrap().collect();
    sync(&job)
        .env("TMPDIR", "/nonexistent/tmp")
        .quiet()
        .expect(0);
    let path = job.journal_path().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("job-") && name.ends_with(".journal.jsonl"),
        "{name}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&job.state_dir()), 0o700);
    assert!(
        job.state_dir()
            .join(name.replace(".journal.jsonl", ".lock"))
            .exists()
    );
    let after: Vec<_> = std::fs::read_dir(job.dir.path()).unwrap().collect();
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the state folder was added"
    );
}

#[test]
fn a_journal_over_the_sink_file_or_the_config_is_a_config_error() {
    let src = Source::start(&people(1));
    for journal in ["agents.json", "job.toml"] {
        let job = Job::source(&src.server.base)
            .records(".users")
            .sink_file("agents.json")
            .sync("journal", journal)
            .write();
        job.write("agents.json", r#"[{"email": "u1@x.com"}]"#);
        let out = sync(&job).quiet().expect(2);
        assert!(out.stderr.contains("[sync] journal is"), "{}", out.stderr);
        agentsync(&["check"]).config(&job).expect(2);
        assert_eq!(job.read("agents.json"), r#"[{"email": "u1@x.com"}]"#);
    }
}

#[test]
fn a_csv_sink_converges_on_a_padded_id() {
    let src = Source::start(&[(" 42 ".into(), "u1@x.com".into())]);
    let job = Job::source(&src.server.base)
        .records(".users")
        .sink_file("agents.csv")
        .write();
    job.write("agents.csv", "email\nu1@x.com\n");
    sync(&job).quiet().expect(0);
    sync(&job)
        .dry_run()
        .arg("--detailed-exitcode")
        .quiet()
        .expect(0);
    let runs = job.journal();
    assert_eq!(runs.len(), 1);
    sync(&job).quiet().expect(0);
    let runs = job.journal();
    assert_eq!(
        runs[1]["changes"],
        json!([]),
        "the second run wrote nothing"
    );
}

#[test]
fn metrics_and_pings_tell_how_each_run_ended() {
    let src = Source::start(&people(3));
    let scim = Scim::numbered(3, Duration::ZERO);
    let hc = Server::start(|_| Resp::status(200, "text/plain", "OK"));
    let job = job(&src, &scim)
        .sync("metrics_file", "agentsync.prom")
        .sync("ping_url", format!("{}/ping/abc", hc.base))
        .write();
    sync(&job).quiet().expect(0);

    let metrics = |job: &JobDir| {
        let text = job.read("agentsync.prom");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let mut found = std::collections::BTreeMap::new();
        for s in scrape.samples {
            assert_eq!(s.labels.get("job"), Some("nightly"));
            let key = match s.labels.get("kind") {
                Some(k) => format!("{}/{k}", s.metric),
                None => s.metric.clone(),
            };
            let prometheus_parse::Value::Gauge(v) = s.value else {
                panic!("{} is not a gauge", s.metric)
            };
            found.insert(key, v);
        }
        assert!(scrape.docs.contains_key("agentsync_exit_code"));
        found
    };
    let m = metrics(&job);
    assert_eq!(m["agentsync_exit_code"], 0.0);
    assert_eq!(m["agentsync_changes/link"], 3.0);
    assert_eq!(m["agentsync_changes/unlink"], 0.0);
    assert_eq!(m["agentsync_source_users"], 3.0);
    assert_eq!(m["agentsync_agents"], 3.0);
    assert_eq!(m["agentsync_failed_writes"], 0.0);
    let success = m["agentsync_last_success_timestamp_seconds"];
    assert!(success > 1.7e9 && success == m["agentsync_last_run_timestamp_seconds"]);
    assert!(m.contains_key("agentsync_run_duration_seconds"));

    // A run that fails keeps the last success.
    src.set(&[]);
    sync(&job).quiet().expect(1);
    let m = metrics(&job);
    assert_eq!(m["agentsync_exit_code"], 1.0);
    assert_eq!(m["agentsync_last_success_timestamp_seconds"], success);

    let pings: Vec<String> = hc.requests().iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(
        pings,
        [
            "/ping/abc/start",
            "/ping/abc",
            "/ping/abc/start",
            "/ping/abc/fail"
        ]
    );
    // A ping that cannot be sent is a warning, not a failure.
    drop(hc);
    src.set(&people(3));
    let out = sync(&job).expect(0);
    assert!(out.stderr.contains("ping"), "{}", out.stderr);
    assert!(!out.stderr.contains("abc"), "the check's key is not shown");
}

#[test]
fn a_pagination_value_that_is_null_is_an_error() {
    let src = Server::start(|_| {
        Resp::json(r#"{"users": [{"id": "1", "email": "u1@x.com"}], "total": null}"#)
    });
    let scim = Scim::numbered(1, Duration::ZERO);
    let job = Job::source(&src.base)
        .records(".users")
        .query("page", "{{page}}")
        .paginate("page")
        .total(".total")
        .sink_scim(&scim.base())
        .write();
    let out = sync(&job).quiet().expect(1);
    assert!(
        out.stderr.contains("total `.total` gave null"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
    let out = common::fetch(&job).quiet().expect(1);
    assert!(out.stderr.contains("gave null"), "{}", out.stderr);
}

#[test]
fn the_demo_leaves_nothing_in_the_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let out = agentsync(&["demo", "--users", "5", "--agents", "5"])
        .env("AGENTSYNC_STATE_DIR", state.path().to_str().unwrap())
        .expect(0);
    assert!(out.stdout.contains("=== 3."), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}
