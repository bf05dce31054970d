//! The fault suite: one test per row of the table in docs/reliability.md. Each
//! injects one fault and checks the exit code, the message, and what must not
//! have been written.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Job, Output, Resp, Run, Scim, Server, agentsync, fetch, sync};
use serde_json::json;

const TOKEN: &str = "tok-Sup3rSecret-0042";

fn users_page(n: usize, total: usize) -> Resp {
    let users: Vec<_> = ((n - 1) * 2 + 1..=((n * 2).min(total)))
        .map(|i| json!({"id": i.to_string(), "email": format!("u{i}@x.com")}))
        .collect();
    Resp::value(&json!({"total": total, "users": users}))
}

/// A paged source with a bearer token from FAULT_TOKEN.
fn paged(source: &str) -> Job {
    Job::source(source)
        .path("/users")
        .query("page", "{{page}}")
        .records(".users")
        .set("max_retry_wait_secs", 5)
        .bearer("FAULT_TOKEN")
        .paginate("page")
        .total(".total")
}

/// `paged`, syncing to `scim` without retries.
fn paged_to(source: &str, scim: &Scim) -> Job {
    paged(source).sink_scim(&scim.base()).sink("retries", 0)
}

/// Run with the token in FAULT_TOKEN, and check it was printed nowhere.
#[track_caller]
fn with_token(run: Run) -> Output {
    let out = run.env("FAULT_TOKEN", TOKEN).run();
    assert_no_token(&out);
    out
}

#[track_caller]
fn assert_no_token(out: &Output) {
    assert!(
        !out.stdout.contains(TOKEN),
        "token printed on stdout:\n{}",
        out.stdout
    );
    assert!(
        !out.stderr.contains(TOKEN),
        "token printed on stderr:\n{}",
        out.stderr
    );
}

fn directory() -> Scim {
    Scim::start(
        &[
            ("a1", "u1@x.com", None),
            ("a2", "u2@x.com", None),
            ("a3", "u3@x.com", None),
        ],
        &[],
    )
}

/// Serve page 2 through `fault` the first `times` times it is asked for.
fn flaky(times: usize, fault: Resp) -> Server {
    let seen = AtomicUsize::new(0);
    Server::start(move |req| {
        let page: usize = req.query("page").unwrap().parse().unwrap();
        if page == 2 && seen.fetch_add(1, Ordering::SeqCst) < times {
            return fault.clone();
        }
        users_page(page, 3)
    })
}

#[test]
fn f01_429_with_retry_after_seconds_is_waited_out() {
    let src = flaky(
        1,
        Resp::status(429, "application/json", "{}").with_header("Retry-After", "1"),
    );
    let scim = directory();
    let started = Instant::now();
    let job = paged_to(&src.base, &scim).write();
    with_token(sync(&job).quiet()).expect(0);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert_eq!(src.request_count(), 3);
    assert_eq!(scim.writes().len(), 3);
}

#[test]
fn f02_429_with_retry_after_date_is_waited_out() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let src = flaky(
        1,
        Resp::status(429, "text/plain", "slow down").with_header("Retry-After", &at),
    );
    let scim = directory();
    let started = Instant::now();
    let job = paged_to(&src.base, &scim).write();
    with_token(sync(&job).quiet()).expect(0);
    // The date has a one-second resolution: at least one second is left of it.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert_eq!(scim.writes().len(), 3);
}

#[test]
fn f03_503_then_success_is_retried() {
    let src = flaky(2, Resp::status(503, "text/plain", "unavailable"));
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    with_token(sync(&job).quiet()).expect(0);
    assert_eq!(src.request_count(), 4);
    assert_eq!(scim.writes().len(), 3);
}

#[test]
fn f04_500_is_not_retried_and_writes_nothing() {
    let src = flaky(
        1,
        Resp::status(500, "application/json", r#"{"error": "internal"}"#),
    );
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert_eq!(src.request_count(), 2);
    assert!(scim.writes().is_empty());
}

#[test]
fn f05_503_forever_gives_up_after_the_retries() {
    let src = flaky(
        usize::MAX,
        Resp::status(503, "text/plain", "unavailable").with_header("Retry-After", "0"),
    );
    let scim = directory();
    let job = paged_to(&src.base, &scim).set("retries", 2).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(out.stderr.contains("HTTP 503"), "{}", out.stderr);
    assert_eq!(
        src.request_count(),
        1 + 3,
        "page 1, then page 2 three times"
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn f06_a_timeout_is_retried_then_fails() {
    let src = Server::start(|req| {
        if req.query("page").as_deref() == Some("2") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        users_page(req.query("page").unwrap().parse().unwrap(), 3)
    });
    let scim = directory();
    let job = paged_to(&src.base, &scim)
        .set("timeout_secs", 1)
        .set("retries", 1)
        .write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(out.stderr.contains("timed out after 1s"), "{}", out.stderr);
    assert!(out.stderr.contains("after 2 attempts"), "{}", out.stderr);
    assert!(scim.writes().is_empty());
}

#[test]
fn f07_connection_refused_is_retried_then_fails() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scim = directory();
    let job = paged_to(&format!("http://127.0.0.1:{port}"), &scim)
        .set("retries", 1)
        .write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(out.stderr.contains("after 2 attempts"), "{}", out.stderr);
    // The directory is listed while the source is read; nothing is written.
    assert!(scim.writes().is_empty());
    assert!(scim.server.requests().iter().all(|r| r.method == "GET"));
}

/// A raw server that answers every connection with a body shorter than its
/// Content-Length, then hangs up.
fn truncating_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"total\": 3, \"users\": [{\"id\": \"1\", \"em",
            );
        }
    });
    (base, hits)
}

#[test]
fn f08_a_truncated_body_is_retried_then_fails() {
    let (base, hits) = truncating_server();
    let scim = directory();
    let job = paged_to(&base, &scim).set("retries", 1).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(
        out.stderr.contains("response body could not be read"),
        "{}",
        out.stderr
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(scim.writes().is_empty());
}

#[test]
fn f09_an_html_page_with_status_200_writes_nothing() {
    let src = flaky(
        usize::MAX,
        Resp::status(200, "text/html", "<html><body>Maintenance</body></html>"),
    );
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    assert!(out.stderr.contains("text/html"), "{}", out.stderr);
    assert!(scim.writes().is_empty());
}

#[test]
fn f10_json_of_the_wrong_shape_writes_nothing() {
    let src = flaky(
        usize::MAX,
        Resp::json(r#"{"total": 3, "users": {"u3@x.com": "3"}}"#),
    );
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(
        out.stderr.contains("records `.users` gave"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn f11_a_total_larger_than_served_writes_nothing() {
    let src = Server::start(|req| {
        let page: usize = req.query("page").unwrap().parse().unwrap();
        let mut resp = users_page(page, 3);
        resp.body = String::from_utf8(resp.body)
            .unwrap()
            .replace("\"total\":3", "\"total\":5")
            .into_bytes();
        resp
    });
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(
        out.stderr.contains("total of 5 records but 3 were read"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn f12_an_empty_page_mid_stream_writes_nothing() {
    let src = flaky(usize::MAX, Resp::json(r#"{"total": 3, "users": []}"#));
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(
        out.stderr.contains("total of 3 records but 2 were read"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn f13_shifted_pages_write_nothing() {
    // Page 2 repeats the last user of page 1, as when a user is inserted
    // before page 2 is read.
    let src = Server::start(|req| match req.query("page").as_deref() {
        Some("1") => Resp::json(
            r#"{"total": 4, "users": [{"id": "1", "email": "u1@x.com"}, {"id": "2", "email": "u2@x.com"}]}"#,
        ),
        _ => Resp::json(
            r#"{"total": 4, "users": [{"id": "2", "email": "u2@x.com"}, {"id": "3", "email": "u3@x.com"}]}"#,
        ),
    });
    let scim = directory();
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job));
    out.expect(1);
    assert!(
        out.stderr
            .contains("appeared on page 1 and again on page 2"),
        "{}",
        out.stderr
    );
    assert!(scim.writes().is_empty());
}

#[test]
fn f14_a_repeated_cursor_writes_nothing() {
    let src = Server::start(|req| {
        let c = req.query("c").unwrap_or_default();
        Resp::value(
            &json!({"data": [{"id": format!("id{c}"), "email": format!("{c}x@x.com")}], "next": "same"}),
        )
    });
    let scim = directory();
    let job = Job::source(&src.base)
        .query("c", "{{cursor}}")
        .records(".data")
        .paginate("cursor")
        .pagination("cursor", ".next")
        .sink_scim(&scim.base())
        .write();
    let out = sync(&job).expect(1);
    assert!(out.stderr.contains("pagination loop"), "{}", out.stderr);
    assert!(scim.writes().is_empty());
}

#[test]
fn f15_401_and_403_are_clear_and_not_retried() {
    for status in [401, 403] {
        let src = Server::start(move |_| {
            Resp::status(status, "application/json", r#"{"error": "invalid token"}"#)
        });
        let scim = directory();
        let job = paged_to(&src.base, &scim).write();
        let out = with_token(sync(&job).arg("-v"));
        out.expect(1);
        assert!(
            out.stderr.contains(&format!("HTTP {status}")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("invalid token"), "{}", out.stderr);
        assert_eq!(src.request_count(), 1, "{status} was retried");
        assert_eq!(
            src.requests()[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(scim.writes().is_empty());
    }
}

#[test]
fn f16_a_scim_write_failing_for_one_agent_is_exit_3() {
    let src = flaky(0, Resp::json("{}"));
    let scim = Scim::start(
        &[
            ("a1", "u1@x.com", None),
            ("a2", "u2@x.com", None),
            ("a3", "u3@x.com", None),
        ],
        &["a2"],
    );
    let job = paged_to(&src.base, &scim).write();
    let out = with_token(sync(&job).output_json());
    out.expect(3);
    let report = out.json();
    assert_eq!(report["summary"]["failed"], 1);
    assert_eq!(report["changes"][1]["status"], "failed");
    assert_eq!(scim.external_id("a1").as_deref(), Some("1"));
    assert_eq!(scim.external_id("a2"), None);
    assert_eq!(scim.external_id("a3").as_deref(), Some("3"));
}

#[test]
fn f17_a_scim_listing_failing_half_way_writes_nothing() {
    let src = flaky(0, Resp::json("{}"));
    let scim_users = Arc::new(Mutex::new(0));
    let calls = scim_users.clone();
    let dir = Server::start(move |req| {
        if req.method != "GET" {
            return Resp::status(500, "application/json", "{}");
        }
        let mut n = calls.lock().unwrap();
        *n += 1;
        if *n > 1 {
            return Resp::status(
                500,
                "application/scim+json",
                r#"{"detail": "backend exploded"}"#,
            );
        }
        Resp::value(
            &json!({"totalResults": 3, "startIndex": 1, "itemsPerPage": 1,
            "Resources": [{"id": "a1", "userName": "u1@x.com"}]}),
        )
    });
    let job = Job::source(&src.base)
        .query("page", "{{page}}")
        .records(".users")
        .paginate("page")
        .total(".total")
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .sink("page_size", 1)
        .sink("retries", 0)
        .write();
    let out = sync(&job).expect(1);
    assert!(
        out.stderr
            .contains("listing the agent directory; nothing was written"),
        "{}",
        out.stderr
    );
    assert!(dir.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn f18_a_killed_apply_converges_on_the_next_run() {
    let src = Server::start(|_| {
        let users: Vec<_> = (1..=6)
            .map(|i| json!({"id": i.to_string(), "email": format!("u{i}@x.com")}))
            .collect();
        Resp::value(&json!({ "users": users }))
    });
    let agents: Vec<(String, String)> = (1..=6)
        .map(|i| (format!("a{i}"), format!("u{i}@x.com")))
        .collect();
    let agents: Vec<(&str, &str, Option<&str>)> = agents
        .iter()
        .map(|(a, e)| (a.as_str(), e.as_str(), None))
        .collect();
    // Slow writes leave time to kill the run in the middle of its apply.
    let scim = Scim::start_slow(&agents, &[], Duration::from_millis(300));
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let mut child = sync(&job).quiet().spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scim.writes().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The writes the run sent before it died still land (the directory
    // answers each connection in its own thread); count them once they have.
    scim.server.wait_idle();
    let written = scim.writes().len();
    assert!((2..6).contains(&written), "killed after {written} writes");

    let out = sync(&job).output_json().expect(0);
    assert_eq!(
        out.json()["changes"].as_array().unwrap().len(),
        6 - written,
        "the re-run finishes the rest"
    );
    for i in 1..=6 {
        assert_eq!(scim.external_id(&format!("a{i}")), Some(i.to_string()));
    }
    sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
}

#[test]
fn f19_two_overlapping_runs_the_second_exits_1() {
    let src = Server::start(|_| {
        std::thread::sleep(Duration::from_millis(1500));
        Resp::json(r#"{"users": [{"id": "1", "email": "u1@x.com"}]}"#)
    });
    let scim = directory();
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let mut first = sync(&job).quiet().spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while src.request_count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = sync(&job).expect(1);
    assert!(
        second
            .stderr
            .contains("another agentsync run holds the lock"),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(src.request_count(), 1, "the second run fetched");
    assert_eq!(scim.writes().len(), 1);
}

#[test]
fn f20_the_token_is_in_no_error_path() {
    // Every failure above already asserts the token is absent (see `sync`);
    // here the token also travels in a query string and a header template.
    let src = Server::start(|_| Resp::status(500, "text/plain", format!("echo: {TOKEN}")));
    let job = Job::source(&src.base)
        .query("key", "{{env.FAULT_TOKEN}}")
        .header("X-Key", "{{env.FAULT_TOKEN}}")
        .records(".users")
        .write();
    for args in [
        vec!["fetch", "-v"],
        vec!["fetch", "--output", "json"],
        vec!["check"],
    ] {
        with_token(agentsync(&args).config(&job));
    }
    let out = with_token(fetch(&job));
    out.expect(1);
    assert!(out.stderr.contains("key=***"), "{}", out.stderr);
    assert!(out.stderr.contains("echo: ***"), "{}", out.stderr);
}

#[test]
fn f21_oauth2_token_is_cached_and_refreshed_once_on_401() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = tokens.clone();
    let src = Server::start(move |req| {
        if req.path() == "/oauth/token" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(
                req.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert!(
                req.body.contains("grant_type=client_credentials"),
                "{}",
                req.body
            );
            assert!(req.header("authorization").unwrap().starts_with("Basic "));
            return Resp::value(
                &json!({"access_token": format!("{TOKEN}-{n}"), "expires_in": 3600}),
            );
        }
        // The first token is revoked after page 1.
        let auth = req.header("authorization").unwrap_or("");
        let page: usize = req.query("page").unwrap().parse().unwrap();
        if page > 1 && auth.ends_with("-1") {
            return Resp::status(401, "application/json", r#"{"error": "token revoked"}"#);
        }
        users_page(page, 5)
    });
    let job = Job::source(&src.base)
        .query("page", "{{page}}")
        .records(".users")
        .auth("kind", "oauth2")
        .auth("token_url", format!("{}/oauth/token", src.base))
        .auth("client_id_env", "CID")
        .auth("client_secret_env", "FAULT_TOKEN")
        .auth("scope", "users:read")
        .paginate("page")
        .total(".total")
        .write();
    let out = with_token(fetch(&job).output_json().env("CID", "client-1"));
    out.expect(0);
    assert_eq!(out.json()["users"].as_array().unwrap().len(), 5);
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "one token, then one refresh after the 401"
    );
}

#[test]
fn f22_the_rate_limit_spaces_requests() {
    let src = Server::start(|req| users_page(req.query("page").unwrap().parse().unwrap(), 10));
    let job = paged(&src.base).set("rate_limit", 8).write();
    let out = fetch(&job).quiet().env("FAULT_TOKEN", TOKEN).run();
    out.expect(0);
    let mut times: Vec<_> = src.requests().iter().map(|r| r.at).collect();
    times.sort();
    // The limiter gives request k the slot first + k × 125 ms and never sends
    // before its slot. Any request may arrive late (the first also pays for
    // the connection; a loaded machine delays threads), but none early: from
    // the second request on, the run spans at least (n - 2) slots, less one
    // slot of lateness. Without the limiter it takes a few milliseconds.
    let n = times.len();
    assert!(n >= 5, "{n} requests");
    let span = times[n - 1] - times[1];
    let least = Duration::from_millis(125) * (n as u32 - 3);
    assert!(
        span >= least,
        "{n} requests, the last {} in {span:?} at 8/s (at least {least:?})",
        n - 1
    );
}

#[test]
fn f23_credentials_over_plain_http_to_a_remote_host_are_refused() {
    let job = paged("http://timeclock.example.com").write();
    let out = fetch(&job).env("FAULT_TOKEN", TOKEN).run();
    out.expect(2);
    assert!(out.stderr.contains("unencrypted"), "{}", out.stderr);
    assert_no_token(&out);
}

#[test]
fn f24_an_oversized_response_is_refused() {
    let big = Arc::new(format!(
        "{{\"users\": [], \"pad\": \"{}\"}}",
        "x".repeat(65 * 1024 * 1024)
    ));
    let src = Server::start(move |_| Resp::json(big.as_str()));
    let job = Job::source(&src.base)
        .records(".users")
        .set("retries", 0)
        .write();
    let out = fetch(&job).expect(1);
    assert!(
        out.stderr.contains("larger than the 67108864-byte limit"),
        "{}",
        out.stderr
    );
}
