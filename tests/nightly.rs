//! The nightly run at a rate limit: the source and the directory are read at
//! the same time, the directory's listing takes its largest page, and its
//! `/ServiceProviderConfig` is kept between runs in the state directory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Job, Resp, Server, sync};
#[cfg(feature = "mock")]
use common::{JobDir, Mock};
#[cfg(feature = "mock")]
use serde_json::Value;
use serde_json::json;

/// A SCIM directory of `n` users answering every listing page, counting none
/// of its own requests (the server records them).
fn directory(n: usize) -> Server {
    Server::start(move |req| {
        if req.path() != "/scim/v2/Users" {
            return Resp::status(404, "application/scim+json", r#"{"status": "404"}"#);
        }
        let start: usize = req.query("startIndex").unwrap().parse().unwrap();
        let count: usize = req.query("count").unwrap().parse().unwrap();
        let page: Vec<_> = (start - 1..(start - 1 + count).min(n))
            .map(|i| json!({"id": format!("a{i}"), "userName": format!("user{i}@example.com")}))
            .collect();
        Resp::status(
            200,
            "application/scim+json",
            json!({"totalResults": n, "Resources": page}).to_string(),
        )
    })
}

fn listing_requests(dir: &Server) -> usize {
    dir.requests()
        .iter()
        .filter(|r| r.path() == "/scim/v2/Users")
        .count()
}

#[test]
fn a_source_that_fails_stops_the_directory_listing() {
    let failed = Arc::new(AtomicBool::new(false));
    let seen = failed.clone();
    let src = Server::start(move |_| {
        seen.store(true, Ordering::SeqCst);
        Resp::status(500, "text/plain", "boom")
    });
    // The directory answers its first page only once the source has failed
    // (and a moment later, for agentsync to see it): 50 pages of one user.
    let dir = Server::start(move |req| {
        if req.path() == "/scim/v2/Users" && req.query("startIndex").as_deref() == Some("1") {
            for _ in 0..400 {
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if req.path() != "/scim/v2/Users" {
            return Resp::status(404, "application/scim+json", "{}");
        }
        let start: usize = req.query("startIndex").unwrap().parse().unwrap();
        let user = json!({"id": format!("a{start}"), "userName": format!("u{start}@x.com")});
        Resp::status(
            200,
            "application/scim+json",
            json!({"totalResults": 50, "Resources": [user]}).to_string(),
        )
    });
    let job = Job::source(&src.base)
        .records(".users")
        .set("retries", 0)
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .sink("page_size", 1)
        .sink("concurrency", 1)
        .sink("retries", 0)
        .write();
    let out = sync(&job).run();
    out.expect(1);
    assert!(out.stderr.contains("reading the source"), "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(!out.stderr.contains("stopped"), "{}", out.stderr);
    dir.wait_idle();
    let listed = listing_requests(&dir);
    assert!(
        listed < 50,
        "{listed} listing pages after the source failed"
    );
}

#[test]
fn a_directory_that_fails_is_the_error_reported() {
    let src = common::one_page_source(&[("1", "user1@example.com")]);
    let dir = Server::start(|_| Resp::status(403, "application/scim+json", "{}"));
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .sink("retries", 0)
        .write();
    let out = sync(&job).run();
    out.expect(1);
    assert!(out.stderr.contains("HTTP 403"), "{}", out.stderr);
    assert!(!out.stderr.contains("stopped"), "{}", out.stderr);
}

#[test]
fn source_and_directory_are_both_read_when_both_succeed() {
    let users: Vec<_> = (0..30)
        .map(|i| (format!("e{i}"), format!("user{i}@example.com")))
        .collect();
    let src = common::one_page_source(&users);
    let dir = directory(30);
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .sink("page_size", 10)
        .sync("max_changes", 100)
        .write();
    let report = sync(&job).dry_run().output_json().quiet().expect(0).json();
    assert_eq!(report["summary"]["link"], 30, "{report}");
    assert_eq!(listing_requests(&dir), 3);
}

// ---------------------------------------------------------------- the mock

#[cfg(feature = "mock")]
fn stat(mock: &Mock, name: &str) -> u64 {
    let stats = mock.get("/_mock/stats");
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {stats}"))
}

/// A dry run of a few users against the mock's directory.
#[cfg(feature = "mock")]
fn mock_job(mock: &Mock, src: &Server) -> Job {
    Job::source(&src.base)
        .records(".users")
        .sink_scim(&format!("{}/scim/v2", mock.base))
        .sink("retries", 0)
        .sync("max_changes", 10_000)
}

#[cfg(feature = "mock")]
fn few_users() -> Server {
    common::one_page_source(&[("2", "user+2@talkdesk.com"), ("4", "user+4@talkdesk.com")])
}

/// The kept `/ServiceProviderConfig` of `job`, in its state directory.
#[cfg(feature = "mock")]
fn kept_file(job: &JobDir) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(job.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".directory.json"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[cfg(feature = "mock")]
fn kept(job: &JobDir) -> Value {
    serde_json::from_slice(&std::fs::read(kept_file(job)).unwrap()).unwrap()
}

#[cfg(feature = "mock")]
fn set_kept(job: &JobDir, value: &Value) {
    std::fs::write(kept_file(job), value.to_string()).unwrap();
}

#[test]
#[cfg(feature = "mock")]
fn a_second_run_does_not_read_the_service_provider_config() {
    use std::os::unix::fs::PermissionsExt;
    let mock = Mock::start(&["--users", "1", "--agents", "20"]);
    let src = few_users();
    let job = mock_job(&mock, &src).write();
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 1);
    let file = kept_file(&job);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(kept(&job)["config"]["patch"]["supported"], true);
    // A real run and another dry run: the answer kept is used.
    sync(&job).quiet().expect(0);
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 1);
    assert!(stat(&mock, "scim_patch") > 0);
}

#[test]
#[cfg(feature = "mock")]
fn a_kept_answer_is_read_again_when_old_corrupt_or_of_another_directory() {
    let mock = Mock::start(&["--users", "1", "--agents", "20"]);
    let src = few_users();
    let job = mock_job(&mock, &src).write();
    sync(&job).dry_run().quiet().expect(0);
    let good = kept(&job);
    assert_eq!(stat(&mock, "service_provider_config"), 1);

    // More than a day old.
    let mut old = good.clone();
    old["read_at"] = json!(good["read_at"].as_u64().unwrap() - 24 * 60 * 60 - 1);
    set_kept(&job, &old);
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 2);
    assert!(kept(&job)["read_at"].as_u64() >= good["read_at"].as_u64());

    // Kept for another directory.
    let mut other = good.clone();
    other["base_url"] = json!("http://127.0.0.1:9/scim/v2");
    set_kept(&job, &other);
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 3);
    assert_eq!(kept(&job)["base_url"], good["base_url"]);

    // Not JSON: ignored, read again, rewritten.
    std::fs::write(kept_file(&job), "{\"base_url\": tru").unwrap();
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 4);
    assert_eq!(kept(&job)["config"], good["config"]);

    // Fresh again: not read.
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 4);
}

#[test]
#[cfg(feature = "mock")]
fn a_refused_write_forgets_the_kept_answer() {
    // The directory lost PATCH since its answer was kept.
    let mock = Mock::start(&["--users", "1", "--agents", "20", "--no-patch"]);
    let src = few_users();
    let job = mock_job(&mock, &src).write();
    sync(&job).dry_run().quiet().expect(0);
    let mut stale = kept(&job);
    assert_eq!(stale["config"]["patch"]["supported"], false);
    stale["config"]["patch"]["supported"] = json!(true);
    set_kept(&job, &stale);
    let out = sync(&job).quiet().run();
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(stat(&mock, "scim_patch") > 0);
    assert_eq!(stat(&mock, "service_provider_config"), 1);
    // The next run asks the directory, and writes by PUT.
    let puts = stat(&mock, "scim_put");
    sync(&job).quiet().expect(0);
    assert_eq!(stat(&mock, "service_provider_config"), 2);
    assert!(stat(&mock, "scim_put") > puts);
}

#[test]
#[cfg(feature = "mock")]
fn without_page_size_the_listing_takes_the_directorys_largest_page() {
    // 600 agents seeded: 543 in the directory.
    let mock = Mock::start(&["--users", "1", "--agents", "600", "--max-page-size", "500"]);
    let src = few_users();
    let job = mock_job(&mock, &src).write();
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "scim_list"), 2);
    // page_size set: it is used (within the directory's largest).
    let job = mock_job(&mock, &src).sink("page_size", 100).write();
    sync(&job).dry_run().quiet().expect(0);
    assert_eq!(stat(&mock, "scim_list"), 2 + 6);
}
