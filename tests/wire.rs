//! What goes on the wire, read from the raw request line and headers a test
//! server recorded: the query's characters, an empty parameter left out,
//! Basic auth with a user name alone, and the response size limit.

mod common;

use base64::Engine as _;
use common::{Job, Resp, Server, fetch};
use serde_json::json;

const ONE_USER: &str = r#"{"users": [{"id": "1", "email": "a@x.com"}]}"#;

#[test]
fn query_keys_and_values_keep_the_characters_rfc_3986_allows() {
    let src = Server::start(|_| Resp::json(ONE_USER));
    let job = Job::source(&src.base)
        .path("/v1/workers")
        .records(".users")
        .query("$top", 100)
        .query("$select", "id,mail")
        .query("since", "2024-01-01T00:00:00Z")
        .query("owner", "ops@acme.example")
        .query("folder", "/reports/people")
        .query("$filter", "dept eq 'a&b'")
        .query("sum", "1+1=2")
        .write();
    fetch(&job).expect(0);
    let url = &src.requests()[0].url;
    for sent in [
        "$top=100",
        "$select=id,mail",
        "since=2024-01-01T00:00:00Z",
        "owner=ops@acme.example",
        "folder=/reports/people",
        // A separator, a plus or an equals sign inside a value stays data.
        "$filter=dept+eq+%27a%26b%27",
        "sum=1%2B1%3D2",
    ] {
        assert!(url.contains(sent), "{sent} in {url}");
    }
    // The server reads back exactly what was configured.
    let req = &src.requests()[0];
    assert_eq!(req.query("$filter").as_deref(), Some("dept eq 'a&b'"));
    assert_eq!(req.query("sum").as_deref(), Some("1+1=2"));
}

#[test]
fn omit_empty_query_leaves_out_the_first_pages_empty_cursor() {
    let src = Server::start(|req| match req.query("pageToken").as_deref() {
        None => Resp::value(&json!({"users": [{"id": "1", "email": "a@x.com"}], "next": "p2"})),
        Some("p2") => Resp::value(&json!({"users": [{"id": "2", "email": "b@x.com"}]})),
        Some(other) => Resp::status(400, "application/json", format!("bad token {other:?}")),
    });
    let job = Job::source(&src.base)
        .path("/users")
        .records(".users")
        .query("pageToken", "{{cursor}}")
        .paginate("cursor")
        .pagination("cursor", ".next");
    // Without it the first page asks for `pageToken=`, which this API refuses.
    fetch(&job.write()).expect(1);
    assert!(src.requests()[0].url.ends_with("pageToken="));
    let out = fetch(&job.set("omit_empty_query", true).write())
        .output_json()
        .expect(0);
    assert_eq!(out.json()["users"].as_array().unwrap().len(), 2);
    let urls: Vec<String> = src.requests()[1..].iter().map(|r| r.url.clone()).collect();
    assert_eq!(urls, ["/users", "/users?pageToken=p2"]);
}

#[test]
fn basic_auth_without_a_password_sends_the_user_name_and_a_colon() {
    let src = Server::start(|_| Resp::json(ONE_USER));
    let job = Job::source(&src.base)
        .records(".users")
        .auth("kind", "basic")
        .auth("username_env", "BAMBOO_API_KEY")
        .write();
    let out = fetch(&job)
        .env("BAMBOO_API_KEY", "key-8d1f2a")
        .arg("-v")
        .expect(0);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("key-8d1f2a:")
    );
    assert_eq!(
        src.requests()[0].header("authorization"),
        Some(expected.as_str())
    );
    assert!(!out.stderr.contains("key-8d1f2a"), "{}", out.stderr);
}

#[test]
fn max_response_mb_sets_the_largest_body_read() {
    // About 1.5 MiB of users.
    let users: Vec<_> = (0..12_000)
        .map(|i| json!({"id": i.to_string(), "email": format!("user{i}@x.com"), "pad": "x".repeat(100)}))
        .collect();
    let body = json!({ "users": users }).to_string();
    assert!(body.len() > 1024 * 1024 && body.len() < 2 * 1024 * 1024);
    let src = Server::start(move |_| Resp::json(body.clone()));
    let job = Job::source(&src.base)
        .records(".users")
        .mapping("{id, email}")
        .set("retries", 0);
    let out = fetch(&job.clone().set("max_response_mb", 1).write()).run();
    out.expect(1);
    assert!(
        out.stderr.contains("larger than the 1048576-byte limit"),
        "{}",
        out.stderr
    );
    let out = fetch(&job.clone().set("max_response_mb", 2).write())
        .output_json()
        .expect(0);
    assert_eq!(out.json()["users"].as_array().unwrap().len(), 12_000);
    let out = agentsync_check(&job.set("max_response_mb", 0).write());
    assert!(
        out.stderr
            .contains("max_response_mb must be between 1 and 4096, not 0"),
        "{}",
        out.stderr
    );
}

fn agentsync_check(dir: &common::JobDir) -> common::Output {
    common::agentsync(&["check"]).config(dir).expect(2)
}
