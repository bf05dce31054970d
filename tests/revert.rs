//! `revert` and `revert last` as an operator means them: the newest run that
//! wrote is undone, an unfinished revert is completed (never inverted), a run
//! that wrote nothing is left alone naming the run to give instead, a run
//! still going is not touched; `history` says which runs were reverted and
//! which one is running; one rule for revert and the safety limits.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Job, JobDir, Resp, Scim, Server, agentsync, sync};
use serde_json::{Value, json};

/// A source of `n` users whose IDs carry `generation`, and which can be made
/// to hang (each page waits up to 10 s) to kill a run while it reads.
struct Source {
    server: Server,
    generation: Arc<Mutex<u32>>,
    hang: Arc<AtomicBool>,
}

impl Source {
    fn start(n: usize) -> Self {
        let generation = Arc::new(Mutex::new(1));
        let hang = Arc::new(AtomicBool::new(false));
        let (g, h) = (generation.clone(), hang.clone());
        let server = Server::start(move |_| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while h.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let g = *g.lock().unwrap();
            let users: Vec<Value> = (1..=n)
                .map(|i| json!({"id": format!("{g}-{i}"), "email": format!("u{i}@x.com")}))
                .collect();
            Resp::value(&json!({ "users": users }))
        });
        Source {
            server,
            generation,
            hang,
        }
    }

    fn next_generation(&self) {
        *self.generation.lock().unwrap() += 1;
    }
}

fn job(src: &Source, scim: &Scim) -> Job {
    Job::source(&src.server.base)
        .name("nightly")
        .records(".users")
        .sink_scim(&scim.base())
        .sync("max_unlink_percent", 100)
}

/// Each agent's external ID.
fn ids(scim: &Scim, n: usize) -> Vec<Option<String>> {
    (1..=n)
        .map(|i| scim.external_id(&format!("a{i}")))
        .collect()
}

fn linked(scim: &Scim, n: usize) -> usize {
    ids(scim, n).iter().filter(|id| id.is_some()).count()
}

#[test]
fn a_revert_killed_midway_is_completed_by_revert_last_never_inverted() {
    let src = Source::start(12);
    let scim = Scim::numbered(12, Duration::from_millis(150));
    let job = job(&src, &scim).sink("concurrency", 2).write();
    sync(&job).quiet().expect(0);
    assert_eq!(linked(&scim, 12), 12);

    let mut child = agentsync(&["revert", "last"])
        .config(&job)
        .quiet()
        .spawn_captured();
    scim.wait_for_writes(12 + 4);
    child.kill().unwrap();
    child.wait().unwrap();
    scim.server.wait_idle();
    let left = linked(&scim, 12);
    assert!((1..12).contains(&left), "the revert was cut midway: {left}");

    // The second `revert last` finishes the undo; it does not undo the undo.
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(
        out.stderr.contains("did not finish: completing it"),
        "{}",
        out.stderr
    );
    assert_eq!(linked(&scim, 12), 0, "every agent is back");
    let runs = job.journal();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1]["ending"], "interrupted");
    let sync_run = runs[0]["run"].as_str().unwrap();
    assert_eq!(runs[2]["kind"], format!("revert of {sync_run}"));
    assert_eq!(runs[0]["reverted_by"], runs[2]["run"]);
    assert_eq!(runs[0]["reverted"], "whole");

    // A completed revert is left alone, naming itself to undo it explicitly.
    let writes = scim.writes().len();
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    let newest = runs[2]["run"].as_str().unwrap();
    assert!(
        out.stdout.contains("completed revert")
            && out.stdout.contains(&format!("agentsync revert {newest}")),
        "{}",
        out.stdout
    );
    assert_eq!(scim.writes().len(), writes, "nothing was written");
    // By its ID, the revert is undone: the agents it set back are linked
    // again (those the killed revert set back, it did not touch).
    agentsync(&["revert", newest])
        .config(&job)
        .quiet()
        .expect(0);
    assert_eq!(linked(&scim, 12), left);
}

#[test]
fn a_sync_killed_before_writing_is_no_revert_target() {
    let src = Source::start(10);
    let scim = Scim::numbered(10, Duration::ZERO);
    let job = job(&src, &scim).write();
    // No run at all yet: nothing to revert either.
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(
        out.stdout.contains("no run of this config yet"),
        "{}",
        out.stdout
    );
    sync(&job).quiet().expect(0);
    let good = job.journal()[0]["run"].as_str().unwrap().to_owned();
    let synced = ids(&scim, 10);

    // The next sync is killed while it reads its source.
    src.next_generation();
    src.hang.store(true, Ordering::SeqCst);
    let asked = src.server.request_count();
    let mut child = sync(&job).quiet().spawn_captured();
    let deadline = Instant::now() + Duration::from_secs(20);
    while src.server.request_count() == asked {
        assert!(Instant::now() < deadline, "the sync did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    src.hang.store(false, Ordering::SeqCst);

    // Said on stdout, also under --quiet.
    let out = agentsync(&["revert", "last", "--force"])
        .config(&job)
        .quiet()
        .expect(0);
    assert!(
        out.stdout.contains("wrote nothing")
            && out.stdout.contains(&format!("`agentsync revert {good}`")),
        "{}",
        out.stdout
    );
    assert_eq!(ids(&scim, 10), synced, "the good run is not undone");
    let runs = job.journal();
    assert_eq!(runs.len(), 2, "the refusal to revert is no run");
    assert_eq!(runs[1]["ending"], "interrupted");
    // `--output json` says so on stdout.
    let out = agentsync(&["revert", "last"])
        .config(&job)
        .output_json()
        .expect(0);
    assert_eq!(out.json()["revert_instead"], good.as_str());
}

#[test]
fn a_revert_that_fails_on_a_full_state_directory_is_completed_by_revert_last() {
    let src = Source::start(20);
    let scim = Scim::numbered(20, Duration::ZERO);
    let job = job(&src, &scim).write();
    sync(&job).quiet().expect(0);
    assert_eq!(linked(&scim, 20), 20);

    // Room for the revert's start and end records, not for its 20 intents.
    let journal = job.journal_path().unwrap();
    let size = std::fs::metadata(&journal).unwrap().len();
    let out = agentsync(&["revert", "last"])
        .config(&job)
        .quiet()
        .file_size_limit(size + 1500)
        .expect(1);
    assert!(
        out.stderr
            .contains("the journal cannot be written; nothing was written"),
        "{}",
        out.stderr
    );
    assert_eq!(linked(&scim, 20), 20, "nothing was written");
    let runs = job.journal();
    assert_eq!(runs[1]["ending"], "failed", "{runs:?}");
    assert!(
        runs[1]["error"].as_str().unwrap().contains("journal"),
        "its cause: {runs:?}"
    );

    // `revert last` goes to the run the failed revert was undoing.
    let out = agentsync(&["revert", "last"]).config(&job).expect(0);
    assert!(
        out.stderr.contains("did not finish: completing it"),
        "{}",
        out.stderr
    );
    assert_eq!(linked(&scim, 20), 0, "every agent is back");
}

#[test]
fn a_run_still_writing_shows_as_running_and_is_not_reverted() {
    let src = Source::start(20);
    let scim = Scim::numbered(20, Duration::from_millis(250));
    let job = job(&src, &scim).sink("concurrency", 1).write();
    let child = sync(&job).quiet().spawn_captured();
    scim.wait_for_writes(1);

    let runs = job.journal();
    assert_eq!(runs[0]["ending"], "running", "{runs:?}");
    let history = agentsync(&["history"]).config(&job).expect(0);
    assert!(history.stdout.contains("running"), "{}", history.stdout);
    let out = agentsync(&["revert", "last", "--dry-run"])
        .config(&job)
        .expect(1);
    assert!(out.stderr.contains("is still running"), "{}", out.stderr);

    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(job.journal()[0]["ending"], "success");
    assert_eq!(linked(&scim, 20), 20);
}

/// `max_changes = 3` and four links: a sync needs `--force`; undoing it does
/// not, the same way by `revert`, by `revert --dry-run --out` then `apply`,
/// and with `--force`.
#[test]
fn a_revert_is_not_held_to_the_safety_limits_by_any_path() {
    let src = Source::start(4);
    let scim = Scim::numbered(4, Duration::ZERO);
    let job = job(&src, &scim).sync("max_changes", 3).write();
    let sync_forced = |job: &JobDir| {
        sync(job).quiet().expect(4);
        sync(job).quiet().arg("--force").expect(0);
        src.next_generation();
    };

    sync_forced(&job);
    assert_eq!(linked(&scim, 4), 4);
    agentsync(&["revert", "last"])
        .config(&job)
        .quiet()
        .expect(0);
    assert_eq!(linked(&scim, 4), 0);

    sync_forced(&job);
    let plan = job.path("undo.json");
    let plan = plan.to_str().unwrap();
    let out = agentsync(&["revert", "last", "--dry-run", "--out", plan])
        .config(&job)
        .quiet()
        .output_json()
        .expect(0);
    assert_eq!(out.json()["refusal"], Value::Null);
    assert_eq!(linked(&scim, 4), 4);
    agentsync(&["apply", plan]).state(&job).quiet().expect(0);
    assert_eq!(linked(&scim, 4), 0);

    sync_forced(&job);
    agentsync(&["revert", "last", "--force"])
        .config(&job)
        .quiet()
        .expect(0);
    assert_eq!(linked(&scim, 4), 0);
}
