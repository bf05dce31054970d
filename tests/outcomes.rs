//! Every write accounted for: a write whose answer was lost is settled by
//! reading the agent back, the summary counts what happened, and a signal's
//! last line says so. Every server listens on 127.0.0.1 and is started and
//! stopped by its test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Job, JobDir, Req, Resp, Scim, Server, agentsync, one_page_source, sync};
use serde_json::{Value, json};

/// How the directory loses the answer to a write it applied.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// The connection is reset instead of an answer.
    Reset,
    /// A gateway answers 504.
    GatewayTimeout,
}

/// One user of [`Directory`].
#[derive(Clone, Debug)]
struct User {
    id: String,
    email: String,
    external_id: Option<String>,
    version: u64,
}

/// A SCIM directory that applies every write, then loses the answer to every
/// `every`th write request; with `versions`, users carry `meta.version` and a
/// write with a stale `If-Match` is refused with 412. Reads of one user answer
/// 503 while `unreadable` is set.
struct Directory {
    server: Server,
    users: Arc<Mutex<Vec<User>>>,
    unreadable: Arc<AtomicUsize>,
}

impl Directory {
    fn start(n: usize, versions: bool, loss: Loss, every: usize) -> Self {
        let users: Vec<User> = (0..n)
            .map(|i| User {
                id: format!("a{i}"),
                email: format!("u{i}@x.com"),
                external_id: None,
                version: 1,
            })
            .collect();
        let users = Arc::new(Mutex::new(users));
        let unreadable = Arc::new(AtomicUsize::new(0));
        let writes = AtomicUsize::new(0);
        let (state, blind) = (users.clone(), unreadable.clone());
        let server = Server::start(move |req| {
            let mut users = state.lock().unwrap();
            let scim = |status: u16, v: Value| {
                Resp::status(status, "application/scim+json", v.to_string())
            };
            let show = |u: &User| {
                let mut v = json!({"id": u.id, "userName": u.email, "active": true});
                if let Some(x) = &u.external_id {
                    v["externalId"] = json!(x);
                }
                if versions {
                    v["meta"] = json!({"version": format!("W/\"{}\"", u.version)});
                }
                v
            };
            if req.path() == "/scim/v2/Users" && req.method == "GET" {
                let start: usize = req.query("startIndex").map_or(1, |s| s.parse().unwrap());
                let count: usize = req.query("count").map_or(100, |s| s.parse().unwrap());
                let page: Vec<Value> = users.iter().skip(start - 1).take(count).map(show).collect();
                return scim(
                    200,
                    json!({"totalResults": users.len(), "startIndex": start,
                           "itemsPerPage": page.len(), "Resources": page}),
                );
            }
            let Some(id) = req.path().strip_prefix("/scim/v2/Users/") else {
                return scim(404, json!({"detail": "no such endpoint"}));
            };
            let Some(user) = users.iter_mut().find(|u| u.id == id) else {
                return scim(404, json!({"detail": "no such user"}));
            };
            match req.method.as_str() {
                "GET" if blind.load(Ordering::SeqCst) > 0 => {
                    scim(503, json!({"detail": "try later"}))
                }
                "GET" => scim(200, show(user)),
                "PATCH" => {
                    let current = format!("W/\"{}\"", user.version);
                    if versions && req.header("if-match").is_some_and(|v| v != current) {
                        return scim(412, json!({"detail": "version moved"}));
                    }
                    let body: Value = serde_json::from_str(&req.body).unwrap();
                    let op = &body["Operations"][0];
                    user.external_id = op["value"].as_str().map(str::to_owned);
                    user.version += 1;
                    let shown = show(user);
                    if (writes.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(every) {
                        return match loss {
                            Loss::Reset => Resp::reset(),
                            Loss::GatewayTimeout => {
                                scim(504, json!({"detail": "upstream timed out"}))
                            }
                        };
                    }
                    scim(200, shown)
                }
                _ => scim(405, json!({"detail": "method not allowed"})),
            }
        });
        Directory {
            server,
            users,
            unreadable,
        }
    }

    fn base(&self) -> String {
        format!("{}/scim/v2", self.server.base)
    }

    /// Every user's external ID, in order.
    fn external_ids(&self) -> Vec<Option<String>> {
        let users = self.users.lock().unwrap();
        users.iter().map(|u| u.external_id.clone()).collect()
    }

    fn writes(&self) -> Vec<Req> {
        let requests = self.server.requests();
        requests
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }
}

/// `n` source users `u{i}@x.com` with ids `{i}`.
fn people(n: usize) -> Server {
    let users: Vec<(String, String)> = (0..n)
        .map(|i| (i.to_string(), format!("u{i}@x.com")))
        .collect();
    one_page_source(&users)
}

/// A sync of `src` into `dir`, PATCH, `retries` on the directory.
fn job(src: &Server, dir: &Directory, retries: u32) -> JobDir {
    Job::source(&src.base)
        .records(".users")
        .sink_scim(&dir.base())
        .sink("update", "patch")
        .sink("retries", retries as i64)
        .sink("concurrency", 2)
        .write()
}

/// The statuses of a report's changes.
fn statuses(report: &Value) -> Vec<String> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The journaled result of every change of the first run.
fn journaled(job: &JobDir) -> Vec<String> {
    let runs = job.journal();
    runs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_write_applied_whose_answer_was_lost_is_applied_and_reverted() {
    const N: usize = 9;
    for versions in [true, false] {
        for loss in [Loss::Reset, Loss::GatewayTimeout] {
            // 0 retries: the loss reaches the sink, which reads the agent
            // back; 2: the retry meets the write already made (a 412 where
            // there are versions).
            for retries in [0, 2] {
                let case = format!("versions {versions}, {loss:?}, retries {retries}");
                let src = people(N);
                let dir = Directory::start(N, versions, loss, 3);
                let job = job(&src, &dir, retries);
                let out = sync(&job).output_json().run();
                out.expect(0);
                let report = out.json();
                assert_eq!(statuses(&report), vec!["applied"; N], "{case}: {report}");
                assert_eq!(report["summary"]["link"], N, "{case}");
                assert_eq!(report["summary"]["failed"], 0, "{case}");
                assert_eq!(report["summary"]["unknown"], 0, "{case}");
                assert_eq!(journaled(&job), vec!["applied"; N], "{case}");
                let expected: Vec<Option<String>> = (0..N).map(|i| Some(i.to_string())).collect();
                assert_eq!(dir.external_ids(), expected, "{case}");
                assert!(dir.writes().len() >= N, "{case}");

                let revert = agentsync(&["revert", "last", "--force"])
                    .config(&job)
                    .output_json()
                    .run();
                revert.expect(0);
                assert_eq!(revert.json()["summary"]["unlink"], N, "{case}");
                assert_eq!(dir.external_ids(), vec![None; N], "{case}: all restored");
                let runs = job.journal();
                assert_eq!(runs[1]["ending"], "success", "{case}");
            }
        }
    }
}

#[test]
fn a_lost_answer_that_cannot_be_read_back_is_unknown_and_revert_reads_it() {
    const N: usize = 3;
    let src = people(N);
    // Every write's answer is lost, and reading the agent back fails.
    let dir = Directory::start(N, true, Loss::GatewayTimeout, 1);
    dir.unreadable.store(1, Ordering::SeqCst);
    let job = job(&src, &dir, 0);
    let out = sync(&job).output_json().run();
    out.expect(3);
    let report = out.json();
    assert_eq!(statuses(&report), vec!["unknown"; N], "{report}");
    let error = report["changes"][0]["error"].as_str().unwrap();
    assert!(error.contains("could not tell"), "{error}");
    assert!(error.contains("503"), "{error}");
    assert_eq!(report["summary"]["unknown"], N);
    assert_eq!(report["summary"]["link"], 0, "nothing known to be applied");
    assert_eq!(journaled(&job), vec!["unknown"; N]);
    // The writes did land: revert finds them by reading the directory.
    dir.unreadable.store(0, Ordering::SeqCst);
    let human = sync(&job).dry_run().run();
    assert!(human.stdout.contains("Plan: 0 link"), "{}", human.stdout);
    let revert = agentsync(&["revert", "last", "--force"])
        .config(&job)
        .output_json()
        .run();
    revert.expect(0);
    assert_eq!(revert.json()["summary"]["unlink"], N);
    assert_eq!(dir.external_ids(), vec![None; N], "all restored");
}

#[test]
fn a_revert_that_leaves_an_agent_changed_is_no_success() {
    const N: usize = 3;
    let src = people(N);
    let dir = Directory::start(N, true, Loss::Reset, usize::MAX);
    let job = job(&src, &dir, 0);
    sync(&job).quiet().expect(0);
    // Someone relinks a1 after the run.
    dir.users.lock().unwrap()[1].external_id = Some("manual".into());
    let out = agentsync(&["revert", "last", "--force"])
        .config(&job)
        .output_json()
        .run();
    out.expect(3);
    let report = out.json();
    assert_eq!(report["summary"]["unlink"], 2);
    assert_eq!(report["summary"]["conflict"], 1);
    assert!(out.stderr.contains("incomplete"), "{}", out.stderr);
    assert_eq!(dir.external_ids(), [None, Some("manual".to_owned()), None]);
    let runs = job.journal();
    assert_eq!(runs[1]["ending"], "writes_failed");
}

/// A directory of `n` unlinked agents `u{i}@x.com`, each write taking `delay`.
fn slow_directory(n: usize, delay: Duration) -> Scim {
    let ids: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
    let emails: Vec<String> = (0..n).map(|i| format!("u{i}@x.com")).collect();
    let agents: Vec<(&str, &str, Option<&str>)> = ids
        .iter()
        .zip(&emails)
        .map(|(id, email)| (id.as_str(), email.as_str(), None))
        .collect();
    Scim::start_slow(&agents, &[], delay)
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[test]
fn after_sigterm_during_the_writes_the_summary_counts_what_was_applied() {
    const N: usize = 12;
    for json in [true, false] {
        let src = people(N);
        let scim = slow_directory(N, Duration::from_millis(300));
        let job = Job::source(&src.base)
            .records(".users")
            .sink_scim(&scim.base())
            .sink("update", "patch")
            .sink("concurrency", 2)
            .write();
        let run = if json {
            sync(&job).output_json()
        } else {
            sync(&job)
        };
        let child = run.spawn_captured();
        scim.wait_for_writes(3);
        sigterm(&child);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(143), "{stdout}");
        scim.server.wait_idle();
        let linked = (0..N)
            .filter(|i| scim.external_id(&format!("a{i}")).is_some())
            .count();
        assert!((3..N).contains(&linked), "{linked}");
        if json {
            let report: Value = serde_json::from_str(&stdout).unwrap();
            let statuses = statuses(&report);
            let applied = statuses.iter().filter(|s| *s == "applied").count();
            let skipped = statuses.iter().filter(|s| *s == "skipped").count();
            assert_eq!(applied, linked, "{statuses:?}");
            assert_eq!(report["summary"]["link"], applied, "{report}");
            assert_eq!(report["summary"]["skipped"], skipped, "{report}");
            assert_eq!(applied + skipped, N, "{statuses:?}");
        } else {
            let last = stdout.lines().last().unwrap();
            let expected = format!(
                "Interrupted by SIGTERM, {} changes not attempted: {linked} link, 0 update",
                N - linked
            );
            assert!(last.starts_with(&expected), "{last}");
            assert!(last.contains(&format!("{} skipped", N - linked)), "{last}");
        }
    }
}

#[test]
fn sigterm_before_the_writes_says_nothing_was_written() {
    // The source answers late: the signal comes while it is read.
    let asked = Arc::new(AtomicUsize::new(0));
    let seen = asked.clone();
    let src = Server::start(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        Resp::value(&json!({"users": [{"id": "1", "email": "u0@x.com"}]}))
    });
    let scim = slow_directory(1, Duration::ZERO);
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let child = sync(&job).spawn_captured();
    let deadline = Instant::now() + Duration::from_secs(20);
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the source was not asked");
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM before any write: nothing was written"),
        "{stderr}"
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn a_used_saved_plan_applied_again_counts_its_stale_changes() {
    const N: usize = 4;
    let src = people(N);
    let scim = slow_directory(N, Duration::ZERO);
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let plan = job.path("plan.json");
    let plan = plan.to_str().unwrap();
    sync(&job)
        .dry_run()
        .args(&["--out", plan])
        .quiet()
        .expect(0);
    agentsync(&["apply", plan]).config(&job).quiet().expect(0);
    let again = agentsync(&["apply", plan]).config(&job).output_json().run();
    again.expect(3);
    let report = again.json();
    assert_eq!(statuses(&report), vec!["stale"; N], "{report}");
    assert_eq!(report["summary"]["stale"], N, "{report}");
    assert_eq!(report["summary"]["link"], 0, "{report}");
    let human = agentsync(&["apply", plan]).config(&job).run();
    human.expect(3);
    let last = human.stdout.lines().last().unwrap();
    assert!(last.starts_with("Nothing applied: 0 link"), "{last}");
    assert!(last.contains(&format!("0 failed, {N} stale")), "{last}");
}

#[test]
fn two_writers_taking_turns_are_told_and_stopped_when_asked() {
    let scim = Scim::start(&[("a1", "u0@x.com", None), ("a2", "u1@x.com", None)], &[]);
    let src = people(2);
    let base = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .sync("metrics_file", "agentsync.prom");
    let job = base.clone().write();
    sync(&job).quiet().expect(0);
    let metric = |job: &JobDir, name: &str| -> String {
        let text = job.read("agentsync.prom");
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        line.rsplit(' ').next().unwrap().to_owned()
    };
    assert_eq!(metric(&job, "agentsync_contested"), "0");
    // Another writer maps its own value into a1's externalId.
    scim.set_external_id("a1", "idp-1");

    // warn: written back, and said so.
    let out = sync(&job).run();
    out.expect(0);
    let last = out.stdout.lines().last().unwrap();
    assert!(last.contains("1 contested (1 overwritten)"), "{last}");
    assert!(out.stderr.contains("take turns"), "{}", out.stderr);
    assert_eq!(scim.external_id("a1").as_deref(), Some("0"));
    assert_eq!(metric(&job, "agentsync_contested"), "1");
    assert_eq!(metric(&job, "agentsync_contested_overwritten"), "1");

    // refuse: the next turn is held back like a safety limit.
    scim.set_external_id("a1", "idp-1");
    let writes = scim.writes().len();
    let text = base.clone().sync("on_contested", "refuse").text();
    job.write("job.toml", &text);
    let out = sync(&job).run();
    out.expect(4);
    assert!(
        out.stdout
            .contains("Refused: the plan overwrites 1 contested agent"),
        "{}",
        out.stdout
    );
    assert_eq!(scim.writes().len(), writes, "nothing written");
    assert_eq!(scim.external_id("a1").as_deref(), Some("idp-1"));
    assert_eq!(metric(&job, "agentsync_contested"), "1");
    assert_eq!(metric(&job, "agentsync_contested_overwritten"), "0");
    // skip: left as the other writer set it, the split said.
    let text = base.clone().sync("on_contested", "skip").text();
    job.write("job.toml", &text);
    let out = sync(&job).run();
    out.expect(0);
    let last = out.stdout.lines().last().unwrap();
    assert!(last.contains("1 contested (left as they are)"), "{last}");
    assert!(out.stderr.contains("disagree"), "{}", out.stderr);
    assert_eq!(scim.external_id("a1").as_deref(), Some("idp-1"));
    // refuse with --force: written.
    let text = base.sync("on_contested", "refuse").text();
    job.write("job.toml", &text);
    sync(&job).arg("--force").quiet().expect(0);
    assert_eq!(scim.external_id("a1").as_deref(), Some("0"));
}
