//! What a run trusts in its state, and whose it is: a metrics file never
//! over a file agentsync keeps, a state directory and journal no one else can
//! plant, configs sharing a journal kept apart, and every name of one config
//! sharing one lock and one journal. One test per row of
//! `docs/reliability.md`, each named after what it attacks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Job, JobDir, Resp, Scim, Server, agentsync, sync};
use serde_json::{Value, json};

fn source(n: usize, prefix: &str) -> Server {
    let users: Vec<Value> = (1..=n)
        .map(|i| json!({"id": format!("{prefix}{i}"), "email": format!("u{i}@x.com")}))
        .collect();
    Server::start(move |_| Resp::value(&json!({ "users": users })))
}

fn job(src: &Server, scim: &Scim) -> Job {
    Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .sync("max_unlink_percent", 100)
}

#[test]
fn a_metrics_file_over_the_journal_the_config_or_the_sink_file_is_a_config_error() {
    let src = source(1, "");
    let scim = Scim::numbered(1, Duration::ZERO);
    let cases = [
        ("job.toml", "the config"),
        ("agents.json", "the sink's file"),
        ("own.journal.jsonl", "the journal"),
    ];
    for (metrics, what) in cases {
        let mut j = job(&src, &scim)
            .sync("metrics_file", metrics)
            .sync("journal", "own.journal.jsonl");
        if metrics == "agents.json" {
            j = Job::source(&src.base)
                .records(".users")
                .sink_file("agents.json")
                .sync("metrics_file", metrics);
        }
        let job = j.write();
        job.write("agents.json", r#"[{"email": "u1@x.com"}]"#);
        let out = agentsync(&["check"]).config(&job).expect(2);
        assert!(
            out.stderr
                .contains(&format!("[sync] metrics_file is {what}")),
            "{}",
            out.stderr
        );
        sync(&job).quiet().expect(2);
        assert_eq!(job.read("agents.json"), r#"[{"email": "u1@x.com"}]"#);
    }
    // The journal in the state directory, named by its default path.
    let plain = job(&src, &scim).write();
    sync(&plain).quiet().expect(0);
    let journal = plain.journal_path().unwrap();
    let text = plain.read("job.toml").replace(
        "[sync]\n",
        &format!("[sync]\nmetrics_file = {:?}\n", journal),
    );
    plain.write("job.toml", &text);
    let out = sync(&plain).quiet().expect(2);
    assert!(
        out.stderr.contains("[sync] metrics_file is the journal"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.starts_with(r#"{"record":"start""#),
        "the journal is whole: {text}"
    );
}

#[test]
fn a_symlink_planted_in_place_of_the_journal_is_refused() {
    let src = source(3, "");
    let scim = Scim::numbered(3, Duration::ZERO);
    let job = job(&src, &scim).sync("journal", "planted.jsonl").write();
    let target = job.write("precious", "keep\n");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, job.path("planted.jsonl")).unwrap();
    let out = sync(&job).quiet().expect(1);
    assert!(out.stderr.contains("planted.jsonl"), "{}", out.stderr);
    assert_eq!(job.read("precious"), "keep\n", "not appended to");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "not chmod'ed");
    assert!(scim.writes().is_empty());
    // Reading it is refused too: its records are not ours.
    agentsync(&["history"]).config(&job).expect(1);
}

#[test]
fn a_journal_another_user_owns_is_refused() {
    let src = source(3, "");
    let scim = Scim::numbered(3, Duration::ZERO);
    // Root makes one for another user; anyone else has root's files.
    let theirs = if unsafe { libc::geteuid() } == 0 {
        let job = job(&src, &scim).sync("journal", "theirs.jsonl").write();
        let path = job.write("theirs.jsonl", "");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        job
    } else {
        job(&src, &scim).sync("journal", "/etc/passwd").write()
    };
    let out = agentsync(&["history"]).config(&theirs).expect(1);
    assert!(out.stderr.contains("is owned by user"), "{}", out.stderr);
    let out = sync(&theirs).quiet().expect(1);
    assert!(out.stderr.contains("is owned by user"), "{}", out.stderr);
    assert!(scim.writes().is_empty());
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let src = source(3, "");
    let scim = Scim::numbered(3, Duration::ZERO);
    let job = job(&src, &scim).write();
    std::fs::create_dir(job.state_dir()).unwrap();
    for mode in [0o770, 0o1777] {
        std::fs::set_permissions(job.state_dir(), std::fs::Permissions::from_mode(mode)).unwrap();
        let out = sync(&job).quiet().expect(1);
        assert!(
            out.stderr.contains(&format!(
                "the state directory {} has mode {mode:04o}",
                job.state_dir().display()
            )),
            "{}",
            out.stderr
        );
        assert!(scim.writes().is_empty());
        assert_eq!(std::fs::read_dir(job.state_dir()).unwrap().count(), 0);
    }
    std::fs::set_permissions(job.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    sync(&job).quiet().expect(0);
}

#[test]
fn configs_sharing_one_journal_do_not_see_each_others_runs() {
    let scim = Scim::numbered(10, Duration::ZERO);
    let (src_a, src_b) = (source(10, "A"), source(2, "B"));
    let shared = tempfile::tempdir().unwrap();
    let journal = shared.path().join("shared.jsonl");
    let journal = journal.to_str().unwrap();
    let a = job(&src_a, &scim).sync("journal", journal).write();
    let b = job(&src_b, &scim)
        .sync("journal", journal)
        .sync("max_source_drop_percent", 10)
        .write();
    sync(&a).quiet().expect(0);
    assert_eq!(a.journal().len(), 1);

    // B's history, `revert last` and source-drop guard know nothing of A.
    assert!(b.journal().is_empty(), "{:?}", b.journal());
    let out = agentsync(&["revert", "last"]).config(&b).expect(0);
    assert!(
        out.stdout.contains("no run of this config"),
        "{}",
        out.stdout
    );
    assert_eq!(scim.external_id("a1").as_deref(), Some("A1"));
    // 2 users against A's 10 would be an 80% drop: not B's to compare.
    sync(&b).quiet().expect(0);
    assert_eq!(scim.external_id("a1").as_deref(), Some("B1"));
    assert_eq!(b.journal().len(), 1);
    assert_eq!(a.journal().len(), 1);
    // A's `revert last` undoes A's run, not B's newer one.
    agentsync(&["revert", "last", "--dry-run"])
        .config(&a)
        .quiet()
        .expect(0);
}

fn sync_as(job: &JobDir, config: &std::path::Path) -> common::Run {
    agentsync(&["--config", config.to_str().unwrap()]).state(job)
}

#[test]
fn every_name_of_one_config_shares_its_lock_and_journal_and_a_copy_does_not() {
    let src = source(8, "");
    let scim = Scim::numbered(8, Duration::from_millis(300));
    let job = job(&src, &scim).sink("concurrency", 1).write();
    let symlink = job.path("other-name.toml");
    std::os::unix::fs::symlink(&job.config, &symlink).unwrap();
    let hard = job.path("hard-link.toml");
    std::fs::hard_link(&job.config, &hard).unwrap();

    let first = sync(&job).quiet().spawn_captured();
    scim.wait_for_writes(1);
    for name in [&symlink, &hard] {
        let out = sync_as(&job, name).quiet().expect(1);
        assert!(
            out.stderr.contains("another agentsync run holds the lock"),
            "{}: {}",
            name.display(),
            out.stderr
        );
    }
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(scim.writes().len(), 8, "one run wrote, once each");

    // Every name reads the one journal; a copy is another job.
    for name in [&symlink, &hard] {
        let out = agentsync(&[
            "history",
            "--output",
            "json",
            "--config",
            name.to_str().unwrap(),
        ])
        .state(&job)
        .expect(0);
        assert_eq!(
            out.json().as_array().unwrap().len(),
            1,
            "{}",
            name.display()
        );
    }
    let copy = job.path("copy.toml");
    std::fs::copy(&job.config, &copy).unwrap();
    let out = agentsync(&[
        "history",
        "--output",
        "json",
        "--config",
        copy.to_str().unwrap(),
    ])
    .state(&job)
    .expect(0);
    assert_eq!(out.json(), json!([]));
    let locks = std::fs::read_dir(job.state_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "lock")
        })
        .count();
    assert_eq!(locks, 1, "one lock file for the three names");
}

#[test]
fn a_journal_named_by_an_older_version_after_a_link_is_taken_over() {
    let src = source(3, "");
    let scim = Scim::numbered(3, Duration::ZERO);
    let job = job(&src, &scim).write();
    let link = job.path("other-name.toml");
    std::os::unix::fs::symlink(&job.config, &link).unwrap();
    sync(&job).quiet().expect(0);
    // Older versions named the files after the link's own name.
    let journal = job.journal_path().unwrap();
    let name = journal.file_name().unwrap().to_str().unwrap();
    let old = job
        .state_dir()
        .join(name.replacen("job-", "other-name-", 1));
    std::fs::rename(&journal, &old).unwrap();

    let history = |config: &std::path::Path| {
        agentsync(&[
            "history",
            "--output",
            "json",
            "--config",
            config.to_str().unwrap(),
        ])
        .state(&job)
        .expect(0)
        .json()
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(history(&link), 1, "the old journal is read");
    sync_as(&job, &link).quiet().expect(0);
    assert!(!old.exists(), "renamed by the run");
    assert_eq!(history(&link), 2);
    assert_eq!(history(&job.config), 2);
}
