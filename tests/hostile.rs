//! Hostile servers and configs, round two: a token that never expires, numbers
//! `check` must bound, the ping's HTTP client, and header values that cannot
//! be headers. One test per row of docs/reliability.md's "round two" table.

mod common;

use common::tls::{Pki, TlsServer};
use common::{Job, Resp, Scim, Server, agentsync, fetch, one_page_source, sync};
use serde_json::json;

#[test]
fn m1_a_token_expires_in_of_u64_max_neither_panics_nor_is_asked_again() {
    let src = Server::start(|req| {
        if req.path() == "/token" {
            return Resp::json(
                r#"{"access_token": "forever-1", "expires_in": 18446744073709551615}"#,
            );
        }
        if req.header("authorization") != Some("Bearer forever-1") {
            return Resp::status(401, "application/json", "{}");
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
        .paginate("page")
        .total(".total")
        .auth("kind", "oauth2")
        .auth("token_url", format!("{}/token", src.base))
        .auth("client_id_env", "CID")
        .auth("client_secret_env", "CSECRET")
        .write();
    let out = fetch(&job)
        .env("CID", "c")
        .env("CSECRET", "s-1")
        .output_json()
        .expect(0);
    assert_eq!(out.json()["users"].as_array().unwrap().len(), 3);
    let tokens = src
        .requests()
        .iter()
        .filter(|r| r.path() == "/token")
        .count();
    assert_eq!(tokens, 1);
}

/// The line of the config where `key =` is written.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(&format!("{key} =")))
        .unwrap()
        + 1
}

#[test]
fn l2_numbers_that_would_panic_a_run_are_refused_by_check_with_their_place() {
    let cases = [
        (
            "[source]",
            "rate_limit",
            "1e-300",
            "rate_limit must be 0 (no limit) or between 0.001 and 1000000",
        ),
        (
            "[source]",
            "timeout_secs",
            "9223372036854775807",
            "timeout_secs must be between 1 and 86400",
        ),
        (
            "[source]",
            "concurrency",
            "10000",
            "concurrency must be between 1 and 256",
        ),
        (
            "[source]",
            "max_retry_wait_secs",
            "18446744073709551615",
            "max_retry_wait_secs must be between 0 and 3600",
        ),
        (
            "[source]",
            "retries",
            "4000000000",
            "retries must be between 0 and 100",
        ),
        (
            "[source]",
            "max_response_mb",
            "99999999",
            "max_response_mb must be between 1 and 4096",
        ),
        (
            "[pagination]",
            "start",
            "18446744073709551615",
            "start must be between 0 and 1000000000000",
        ),
        (
            "[pagination]",
            "max_pages",
            "0",
            "max_pages must be between 1 and 10000000",
        ),
        (
            "[mapping]",
            "timeout_secs",
            "18446744073709551615",
            "timeout_secs must be between 1 and 3600",
        ),
        (
            "[listen]",
            "refresh_secs",
            "18446744073709551615",
            "refresh_secs must be between 1 and 86400",
        ),
        (
            "[listen]",
            "tolerance_secs",
            "0",
            "tolerance_secs must be between 1 and 86400",
        ),
        (
            "[sync]",
            "max_changes",
            "9999999999999",
            "max_changes must be between 0 and 1000000000",
        ),
    ];
    for (table, key, value, message) in cases {
        let mut text = "[source]\nbase_url = \"http://127.0.0.1:9\"\nquery = { page = \"{{page}}\" }\nrecords = \".users\"\n".to_owned();
        let extra = format!("{key} = {value}\n");
        match table {
            "[source]" => text.push_str(&extra),
            "[pagination]" => text.push_str(&format!("[pagination]\nkind = \"page\"\n{extra}")),
            "[listen]" => text.push_str(&format!(
                "[listen]\nauth = \"header\"\nheader = \"X-Token\"\nsecret_env = \"HOOK_SECRET\"\n{extra}"
            )),
            other => text.push_str(&format!("{other}\n{extra}")),
        }
        let dir = Job::raw(text.clone()).write();
        let out = agentsync(&["check"]).config(&dir).expect(2);
        let line = line_of(&text, key);
        assert!(
            out.stderr
                .contains(&format!("job.toml:{line}:{}:", key.len() + 4)),
            "{key}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(message), "{key}: {}", out.stderr);
    }
}

#[test]
fn l2_the_largest_numbers_check_accepts_run_without_a_panic() {
    let src = Server::start(|req| {
        if req.query("page").as_deref() == Some("1000000000000") {
            return Resp::json(r#"{"users": [{"id": "1", "email": "a@x.com"}]}"#);
        }
        Resp::json(r#"{"users": []}"#)
    });
    let text = format!(
        "[source]\nbase_url = \"{}\"\nquery = {{ page = \"{{{{page}}}}\" }}\nrecords = \".users\"\n\
         timeout_secs = 86400\nretries = 100\nmax_retry_wait_secs = 3600\nrate_limit = 1000000\n\
         concurrency = 256\nmax_response_mb = 4096\n\
         [pagination]\nkind = \"page\"\nstart = 1000000000000\nmax_pages = 10000000\n\
         [mapping]\ntimeout_secs = 3600\n\
         [sync]\nmax_changes = 1000000000\nmin_users = 1000000000\n",
        src.base
    );
    let out = fetch(&Job::raw(text).write()).output_json().run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["users"][0]["id"], "1");
    // The slowest rate accepted: the first request is not held back.
    let src = one_page_source(&[("1", "a@x.com")]);
    let text = format!(
        "[source]\nbase_url = \"{}\"\nrecords = \".users\"\nrate_limit = 0.001\n",
        src.base
    );
    fetch(&Job::raw(text).write()).expect(0);
}

/// A sync of one user into a file sink that pings `ping_url` when done.
fn pinging_job(src: &Server, ping_url: &str) -> Job {
    Job::source(&src.base)
        .records(".users")
        .sink_file("agents.json")
        .sync("ping_url", ping_url)
}

fn agents_file(dir: &common::JobDir) {
    dir.write(
        "agents.json",
        r#"[{"email": "a@x.com", "external_id": null}]"#,
    );
}

#[test]
fn l3_the_ping_trusts_what_requests_trust_and_says_when_a_certificate_is_refused() {
    let pki = Pki::new();
    let hc = TlsServer::plain(&pki, Box::new(|_, _| (200, "OK".into())));
    let src = one_page_source(&[("1", "a@x.com")]);
    let ping = format!("{}/ping/9f2c-secret-key", hc.base());

    // The private CA in no trust store: the ping fails, says why, hides the key.
    let dir = pinging_job(&src, &ping).write();
    agents_file(&dir);
    let out = sync(&dir).run();
    assert_eq!(out.code, 0, "a ping never fails a run: {}", out.stderr);
    assert!(out.stderr.contains("health-check ping"), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(out.stderr.contains("ca_file"), "{}", out.stderr);
    assert!(!out.stderr.contains("9f2c-secret-key"), "{}", out.stderr);
    assert!(hc.served().is_empty());

    // SSL_CERT_FILE, as for every other request.
    dir.write("ca.pem", &pki.ca_pem);
    let out = sync(&dir)
        .env("SSL_CERT_FILE", dir.path("ca.pem").to_str().unwrap())
        .run();
    assert!(!out.stderr.contains("health-check ping"), "{}", out.stderr);
    assert_eq!(hc.served().len(), 2, "{:?}", hc.served());

    // A ca_file of the job.
    let dir = pinging_job(&src, &ping).set("ca_file", "ca.pem").write();
    agents_file(&dir);
    dir.write("ca.pem", &pki.ca_pem);
    let out = sync(&dir).run();
    assert!(!out.stderr.contains("health-check ping"), "{}", out.stderr);
    assert!(hc.served()[2].starts_with("GET /ping/9f2c-secret-key/start "));
    assert!(hc.served()[3].starts_with("GET /ping/9f2c-secret-key "));
}

#[test]
fn l3_the_ping_follows_no_redirect_to_another_origin_and_no_remote_plain_http() {
    let elsewhere = Server::start(|_| Resp::status(200, "text/plain", "OK"));
    let target = format!("{}/collect", elsewhere.base);
    let hc = Server::start(move |_| {
        Resp::status(302, "text/plain", "").with_header("Location", &target)
    });
    let src = one_page_source(&[("1", "a@x.com")]);
    let dir = pinging_job(&src, &format!("{}/ping/k-77", hc.base)).write();
    agents_file(&dir);
    let out = sync(&dir).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("another origin"), "{}", out.stderr);
    assert_eq!(elsewhere.request_count(), 0);

    let dir = pinging_job(&src, "http://hc.example.com/ping/k-77").write();
    let out = agentsync(&["check"]).config(&dir).expect(2);
    assert!(out.stderr.contains("[sync] ping_url"), "{}", out.stderr);
    assert!(out.stderr.contains("unencrypted"), "{}", out.stderr);
}

#[test]
fn l4_a_line_break_in_a_token_names_the_header_not_a_parse_failure() {
    // From the token endpoint.
    let src = Server::start(|req| {
        if req.path() == "/token" {
            return Resp::json(r#"{"access_token": "abc\r\nX-Injected: 1", "expires_in": 60}"#);
        }
        Resp::json(r#"{"users": []}"#)
    });
    let job = Job::source(&src.base)
        .records(".users")
        .auth("kind", "oauth2")
        .auth("token_url", format!("{}/token", src.base))
        .auth("client_id_env", "CID")
        .auth("client_secret_env", "CSECRET")
        .write();
    let out = fetch(&job).env("CID", "c").env("CSECRET", "s-1").run();
    out.expect(1);
    assert!(out.stderr.contains("access_token"), "{}", out.stderr);
    assert!(
        out.stderr.contains("Authorization header"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line break"), "{}", out.stderr);
    assert!(!out.stderr.contains("failed to parse"), "{}", out.stderr);
    assert_eq!(
        src.requests()
            .iter()
            .filter(|r| r.path() != "/token")
            .count(),
        0
    );

    // From the environment: a bearer token, then a header template.
    let job = Job::source(&src.base)
        .records(".users")
        .bearer("LF_TOKEN")
        .write();
    let out = agentsync(&["check"])
        .config(&job)
        .env("LF_TOKEN", "tok\nen")
        .expect(2);
    assert!(
        out.stderr.contains("LF_TOKEN holds a line break"),
        "{}",
        out.stderr
    );
    let job = Job::source(&src.base)
        .records(".users")
        .header("X-Api-Key", "{{env.LF_KEY}}")
        .write();
    let out = fetch(&job).env("LF_KEY", "key\r\nX-Evil: 1").run();
    out.expect(1);
    assert!(
        out.stderr
            .contains("header X-Api-Key cannot be sent: its value holds a line break"),
        "{}",
        out.stderr
    );
}

#[test]
fn l4_a_scim_version_with_a_line_break_or_over_1_kib_names_the_agent_and_is_not_retried() {
    let src = one_page_source(&[("1", "u1@x.com"), ("2", "u2@x.com"), ("3", "u3@x.com")]);
    let scim = Scim::start(
        &[
            ("a1", "u1@x.com", None),
            ("a2", "u2@x.com", None),
            ("a3", "u3@x.com", None),
        ],
        &[],
    );
    {
        let mut users = scim.users.lock().unwrap();
        users[0]["meta"]["version"] = json!("W/\"1\"\r\nX-Injected: 1");
        users[1]["meta"]["version"] = json!(format!("W/\"{}\"", "9".repeat(70_000)));
    }
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&scim.base())
        .write();
    let out = sync(&job).output_json().expect(3);
    let changes = out.json()["changes"].as_array().unwrap().clone();
    let error = |agent: &str| {
        changes
            .iter()
            .find(|c| c["agent_id"] == agent)
            .map(|c| c["error"].as_str().unwrap_or("").to_owned())
            .unwrap()
    };
    assert!(
        error("a1").contains("agent a1: its meta.version holds a line break")
            && error("a1").contains("If-Match"),
        "{}",
        error("a1")
    );
    assert!(
        error("a2").contains("agent a2: its meta.version is 70004 bytes long"),
        "{}",
        error("a2")
    );
    // Neither was sent, once or again; the good agent was written.
    let written: Vec<String> = scim.writes().iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(written, ["/scim/v2/Users/a3"]);
    assert_eq!(scim.external_id("a3").as_deref(), Some("3"));
}
