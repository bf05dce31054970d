//! Servers that ask agentsync to slow down or wait: 429 storms shared by every
//! worker, the rate-limit reset headers, a signal during a long wait, a POST
//! listing that is safe to repeat, and tokens that expire fast or are refused.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Job, Resp, Scim, Server, fetch, sync};
use serde_json::json;

/// `n` agents without external IDs, and a source that has an ID for each.
fn people(n: usize) -> (Server, Vec<(String, String)>) {
    let users: Vec<_> = (1..=n)
        .map(|i| json!({"id": i.to_string(), "email": format!("u{i}@x.com")}))
        .collect();
    let src = Server::start(move |_| Resp::value(&json!({ "users": users })));
    let agents = (1..=n)
        .map(|i| (format!("a{i}"), format!("u{i}@x.com")))
        .collect();
    (src, agents)
}

fn borrowed(agents: &[(String, String)]) -> Vec<(&str, &str, Option<&str>)> {
    agents
        .iter()
        .map(|(a, e)| (a.as_str(), e.as_str(), None))
        .collect()
}

fn is_write(req: &common::Req) -> bool {
    req.method == "PUT" || req.method == "PATCH"
}

#[test]
fn a_10_second_429_storm_at_the_first_write_is_waited_out_by_every_worker() {
    let (src, agents) = people(12);
    let storm_began: Mutex<Option<Instant>> = Mutex::new(None);
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = refused.clone();
    let scim = Scim::start_gated(&borrowed(&agents), move |req| {
        if !is_write(req) {
            return None;
        }
        let began = *storm_began.lock().unwrap().get_or_insert_with(Instant::now);
        if began.elapsed() < Duration::from_secs(10) {
            counted.fetch_add(1, Ordering::SeqCst);
            return Some(
                Resp::status(429, "application/scim+json", r#"{"detail": "slow down"}"#)
                    .with_header("Retry-After", "2"),
            );
        }
        None
    });
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .sink("concurrency", 4)
        .write();
    let out = sync(&job).output_json().expect(0);
    let changes = out.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 12);
    assert!(
        changes.iter().all(|c| c["status"] == "applied"),
        "{changes:?}"
    );
    for i in 1..=12 {
        assert_eq!(scim.external_id(&format!("a{i}")), Some(i.to_string()));
    }
    // The workers paused together: a few 429s per 2-second pause, not a
    // stream of them from each worker on its own.
    let storm = refused.load(Ordering::SeqCst);
    assert!(storm >= 1, "the storm was met");
    assert!(storm <= 4 * 7, "{storm} writes refused during the storm");
}

#[test]
fn sigterm_during_a_retry_after_60_wait_ends_the_run_with_143_and_its_report() {
    let (src, agents) = people(6);
    let scim = Scim::start_gated(&borrowed(&agents), |req| {
        is_write(req).then(|| {
            Resp::status(429, "application/scim+json", r#"{"detail": "slow down"}"#)
                .with_header("Retry-After", "60")
        })
    });
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let child = sync(&job).output_json().spawn_captured();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scim.writes().is_empty() {
        assert!(Instant::now() < deadline, "no write came");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Inside the 60-second wait now.
    std::thread::sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let sent = Instant::now();
    let out = wait_capped(child, Duration::from_secs(20));
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "still waiting after SIGTERM"
    );
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 6);
    assert!(
        changes.iter().all(|c| c["status"] == "skipped"),
        "nothing was written: {changes:?}"
    );
    for i in 1..=6 {
        assert_eq!(scim.external_id(&format!("a{i}")), None);
    }
}

/// Wait for `child` at most `cap`; killed (and the test failed) past it.
fn wait_capped(mut child: std::process::Child, cap: Duration) -> std::process::Output {
    let deadline = Instant::now() + cap;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("agentsync did not end within {cap:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn epoch_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

#[test]
fn an_okta_like_429_with_x_rate_limit_reset_is_retried_once_the_window_resets() {
    // Okta: 429 with the window's reset in epoch seconds, no Retry-After; a
    // request before the reset is refused again.
    let reset: Mutex<Option<u64>> = Mutex::new(None);
    let src = Server::start(move |_| {
        let now = epoch_now();
        let mut reset = reset.lock().unwrap();
        let at = *reset.get_or_insert(now.as_secs() + 2);
        if now < Duration::from_secs(at) {
            return Resp::status(429, "application/json", r#"{"errorCode": "E0000047"}"#)
                .with_header("X-Rate-Limit-Reset", &at.to_string())
                .with_header("X-Rate-Limit-Remaining", "0");
        }
        Resp::json(r#"{"users": [{"id": "7", "email": "a@x.com"}]}"#)
    });
    let job = Job::source(&src.base).records(".users").write();
    let out = fetch(&job).output_json().expect(0);
    assert_eq!(out.json()["users"][0]["id"], "7");
    // One refusal, then the request at the reset: no quick tries in between.
    assert_eq!(src.request_count(), 2, "{:?}", src.requests());
}

#[test]
fn a_post_listing_with_retry_post_is_retried_after_503() {
    let served = AtomicUsize::new(0);
    let src = Server::start(move |req| {
        assert_eq!(req.method, "POST");
        // The first request of each of the two runs below is turned away.
        if served.fetch_add(1, Ordering::SeqCst) < 2 {
            return Resp::status(503, "application/json", "{}").with_header("Retry-After", "1");
        }
        Resp::json(r#"[{"id": "1", "email": "a@x.com"}]"#)
    });
    let job = Job::source(&src.base)
        .path("/api/v1/resource/Employee/QUERY")
        .set("method", "POST")
        .set(
            "body",
            r#"{"search": {"active": {"field": "Active", "type": "eq", "data": true}}}"#,
        );
    // Without it, a POST is not repeated: its first answer stands.
    fetch(&job.write()).expect(1);
    assert_eq!(src.request_count(), 1);
    let out = fetch(&job.set("retry_post", true).write())
        .output_json()
        .expect(0);
    assert_eq!(out.json()["users"][0]["email"], "a@x.com");
    assert_eq!(src.request_count(), 3);
}

#[test]
fn a_token_that_lives_one_second_is_fresh_at_rate_1_per_second() {
    // Each token is good for one second after it was issued.
    let issued: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let rejected = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = rejected.clone();
    let src = Server::start(move |req| {
        let mut issued = issued.lock().unwrap();
        if req.path() == "/token" {
            issued.push(Instant::now());
            let n = issued.len();
            return Resp::json(format!(
                r#"{{"access_token": "short-{n}", "expires_in": 1}}"#
            ));
        }
        let fresh = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer short-"))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| issued.get(n - 1))
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            counted.fetch_add(1, Ordering::SeqCst);
            return Resp::status(401, "application/json", r#"{"error": "token expired"}"#);
        }
        let page: u64 = req.query("page").unwrap().parse().unwrap();
        Resp::value(&json!({
            "users": [{"id": page.to_string(), "email": format!("u{page}@x.com")}],
            "total": 3
        }))
    });
    let job = Job::source(&src.base)
        .path("/users")
        .query("page", "{{page}}")
        .records(".users")
        .set("rate_limit", 1)
        .set("concurrency", 1)
        .auth("kind", "oauth2")
        .auth("token_url", format!("{}/token", src.base))
        .auth("client_id_env", "CID")
        .auth("client_secret_env", "CSECRET")
        .paginate("page")
        .total(".total")
        .write();
    let out = fetch(&job)
        .env("CID", "client")
        .env("CSECRET", "secret-1")
        .output_json()
        .expect(0);
    assert_eq!(out.json()["users"].as_array().unwrap().len(), 3);
    assert_eq!(rejected.load(Ordering::SeqCst), 0, "a stale token was sent");
}

#[test]
fn after_3_refused_token_requests_in_a_row_the_writes_stop() {
    let (src, agents) = people(10);
    let token_requests = std::sync::Arc::new(AtomicUsize::new(0));
    let asked = token_requests.clone();
    let scim = Scim::start_gated(&borrowed(&agents), move |req| {
        if req.path() == "/oauth/token" {
            // The first token is granted; then the client is locked out.
            if asked.fetch_add(1, Ordering::SeqCst) == 0 {
                return Some(Resp::json(
                    r#"{"access_token": "first-token", "expires_in": 3600}"#,
                ));
            }
            return Some(Resp::status(
                401,
                "application/json",
                r#"{"error": "invalid_client"}"#,
            ));
        }
        // The directory revoked the first token before the writes.
        is_write(req)
            .then(|| Resp::status(401, "application/scim+json", r#"{"detail": "revoked"}"#))
    });
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .sink("concurrency", 1)
        .sink_auth("kind", "oauth2")
        .sink_auth("token_url", format!("{}/oauth/token", scim.server.base))
        .sink_auth("client_id_env", "CID")
        .sink_auth("client_secret_env", "CSECRET")
        .write();
    let out = sync(&job)
        .env("CID", "client")
        .env("CSECRET", "secret-1")
        .output_json()
        .expect(3);
    let changes = out.json()["changes"].as_array().unwrap().clone();
    let status = |s: &str| changes.iter().filter(|c| c["status"] == s).count();
    assert_eq!((status("failed"), status("skipped")), (3, 7), "{changes:?}");
    // The first grant, then three refusals: not one per change.
    assert_eq!(token_requests.load(Ordering::SeqCst), 4);
    assert!(
        out.stderr.contains("refused 3 token requests in a row"),
        "{}",
        out.stderr
    );
}
