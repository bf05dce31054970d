//! The source side end to end: the real binary reads APIs served in-process,
//! in every pagination style, and refuses what it must refuse.

mod common;

use common::{Job, Resp, Server, agentsync, fetch, fixture};
use serde_json::{Value, json};

/// `fetch --output json` of a job; returns the report.
fn fetch_json(job: Job) -> Value {
    fetch(&job.write()).output_json().quiet().expect(0).json()
}

/// One field of every user of a fetch report, in output order.
fn users_field(report: &Value, field: &str) -> Vec<String> {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u[field].as_str().unwrap().to_owned())
        .collect()
}

fn emails(report: &Value) -> Vec<String> {
    users_field(report, "email")
}

fn ids(report: &Value) -> Vec<String> {
    users_field(report, "id")
}

fn not_found() -> Resp {
    Resp::status(404, "application/json", r#"{"error": "not found"}"#)
}

/// Page numbers in `?page=`, records in `.users`, no retries.
fn paged(base: &str) -> Job {
    Job::source(base)
        .path("/users")
        .query("page", "{{page}}")
        .records(".users")
        .set("retries", 0)
        .paginate("page")
}

/// `paged`, stopping at `.total` with `.count` records a page.
fn paged_to_total(base: &str) -> Job {
    paged(base).total(".total").count(".count")
}

/// `paged_to_total` as text, for the config errors, whose positions are
/// line and column of this text.
const PAGE: &str = r#"
[source]
base_url = "BASE"
path = "/users"
query = { page = "{{page}}" }
records = ".users"
retries = 0

[pagination]
kind = "page"
total = ".total"
count = ".count"
"#;

#[test]
fn page_numbers_stop_at_the_total() {
    let server = Server::start(|req| match req.query("page").as_deref() {
        Some(n @ ("1" | "2" | "3")) => Resp::json(fixture(&format!("page/{n}.json"))),
        _ => not_found(),
    });
    let report = fetch_json(paged_to_total(&server.base));
    assert_eq!(report["pages"], 3);
    assert_eq!(
        report["users"],
        json!([
            {"id": "101", "email": "ana@example.com"},
            {"id": "102", "email": "bo@example.com"},
            {"id": "103", "email": "cy@example.com"},
            {"id": "104", "email": "di@example.com"},
            {"id": "105", "email": "ed@example.com"},
        ])
    );
    assert_eq!(report["skipped"], json!([]));
    // Page 1 comes first; 2 and 3 are fetched concurrently.
    let mut pages: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("page").unwrap())
        .collect();
    assert_eq!(pages[0], "1");
    pages.sort();
    assert_eq!(pages, ["1", "2", "3"]);
}

#[test]
fn page_numbers_stop_on_has_more_false() {
    let server = Server::start(|req| {
        let n: u32 = req.query("p").unwrap().parse().unwrap();
        Resp::value(&json!({
            "results": [{"id": n, "email": format!("u{n}@example.com")}],
            "has_more": n < 4,
        }))
    });
    let job = Job::source(&server.base)
        .path("/people")
        .query("p", "{{page}}")
        .records(".results")
        .paginate("page")
        .pagination("start", 0)
        .pagination("has_more", ".has_more");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 5);
    assert_eq!(emails(&report).last().unwrap(), "u4@example.com");
    assert_eq!(report["users"][0]["id"], "0");
}

#[test]
fn page_numbers_stop_on_an_empty_page() {
    let server = Server::start(|req| {
        let n: usize = req.query("page").unwrap().parse().unwrap();
        let users: Vec<_> = (0..if n <= 2 { 3 } else { 0 })
            .map(|i| json!({"id": format!("{n}-{i}"), "email": format!("u{n}.{i}@example.com")}))
            .collect();
        Resp::value(&json!({ "users": users }))
    });
    let report = fetch_json(paged(&server.base));
    assert_eq!(report["pages"], 3);
    assert_eq!(report["users"].as_array().unwrap().len(), 6);
    assert_eq!(server.request_count(), 3);
}

/// A job reading `offset_server`, three users a page.
fn offsets_of_3(base: &str) -> Job {
    Job::source(base)
        .path("/members")
        .query("offset", "{{offset}}")
        .query("limit", "{{limit}}")
        .records(".entries")
        .paginate("offset")
        .pagination("limit", 3)
}

/// An API with 7 users served by `offset`/`limit`.
fn offset_server(with_total: bool) -> Server {
    Server::start(move |req| {
        let offset: usize = req.query("offset").unwrap().parse().unwrap();
        let limit: usize = req.query("limit").unwrap().parse().unwrap();
        let users: Vec<_> = (offset..(offset + limit).min(7))
            .map(|i| json!({"id": i, "email": format!("u{i}@example.com")}))
            .collect();
        let mut page = json!({ "entries": users });
        if with_total {
            page["paging"] = json!({"total": 7});
        }
        Resp::value(&page)
    })
}

#[test]
fn offsets_stop_at_the_total() {
    let server = offset_server(true);
    let report = fetch_json(offsets_of_3(&server.base).total(".paging.total"));
    assert_eq!(report["pages"], 3);
    assert_eq!(report["users"].as_array().unwrap().len(), 7);
    // Pages 2 and 3 are fetched concurrently: compare the set of requests.
    let mut offsets: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("offset").unwrap())
        .collect();
    offsets.sort();
    assert_eq!(offsets, ["0", "3", "6"]);
    let ids = ids(&report);
    let in_order: Vec<_> = (0..7).map(|i| i.to_string()).collect();
    assert_eq!(ids, in_order);
}

/// 12 pages of 5 users; early pages answer slowest, so concurrent requests
/// complete out of order.
fn slow_first_pages() -> Server {
    Server::start(|req| {
        let page: u64 = req.query("page").unwrap().parse().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10 * (12 - page.min(12))));
        let users: Vec<_> = (1..=5)
            .map(|i| (page - 1) * 5 + i)
            .filter(|n| *n <= 60)
            .map(|n| json!({"id": n.to_string(), "email": format!("u{n}@x.com")}))
            .collect();
        Resp::value(&json!({"total": 60, "users": users}))
    })
}

#[test]
fn concurrent_pages_keep_page_order() {
    for concurrency in [1, 4] {
        let server = slow_first_pages();
        let job = Job::source(&server.base)
            .query("page", "{{page}}")
            .records(".users")
            .set("concurrency", concurrency)
            .paginate("page")
            .total(".total");
        let report = fetch_json(job);
        assert_eq!(report["pages"], 12);
        let ids = ids(&report);
        let in_order: Vec<_> = (1..=60).map(|i| i.to_string()).collect();
        assert_eq!(ids, in_order, "concurrency {concurrency}");
        let pages: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.query("page").unwrap())
            .collect();
        assert_eq!(pages.len(), 12, "each page once: {pages:?}");
        if concurrency == 1 {
            let sequential: Vec<_> = (1..=12).map(|i| i.to_string()).collect();
            assert_eq!(pages, sequential);
        }
    }
}

#[test]
fn pages_shorter_than_the_first_fall_back_to_one_at_a_time() {
    // Offsets step by the records of each page (no `limit`). Page 1 holds 4,
    // so offsets 4 and 8 are fetched ahead; page 2 holds only 2, so the next
    // offset is 6, not 8: the read goes on one page at a time from there.
    let server = Server::start(|req| {
        let offset: u64 = req.query("offset").unwrap().parse().unwrap();
        let size = if offset == 4 { 2 } else { 4 };
        let users: Vec<_> = (offset..(offset + size).min(10))
            .map(|n| json!({"id": n.to_string(), "email": format!("u{n}@x.com")}))
            .collect();
        Resp::value(&json!({"total": 10, "users": users}))
    });
    let job = Job::source(&server.base)
        .query("offset", "{{offset}}")
        .records(".users")
        .set("concurrency", 4)
        .paginate("offset")
        .total(".total");
    let report = fetch_json(job);
    let ids = ids(&report);
    let all: Vec<_> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(ids, all);
    assert_eq!(report["pages"], 3, "offsets 0, 4, 6");
    let asked: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.query("offset").unwrap())
        .collect();
    assert!(asked.contains(&"6".to_owned()), "{asked:?}");
}

#[test]
fn offsets_stop_on_an_empty_page() {
    let server = offset_server(false);
    let report = fetch_json(offsets_of_3(&server.base));
    assert_eq!(report["users"].as_array().unwrap().len(), 7);
    let offsets: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("offset").unwrap())
        .collect();
    // After the short page, the next record (7): an empty page ends it.
    assert_eq!(offsets, ["0", "3", "6", "7"]);
}

#[test]
fn cursors_are_followed_until_null() {
    let server = Server::start(|req| match req.query("cursor").as_deref() {
        None | Some("") => Resp::json(fixture("cursor/first.json")),
        Some(c) => Resp::json(fixture(&format!("cursor/{c}.json"))),
    });
    let job = Job::source(&server.base)
        .path("/api/users")
        .query("cursor", "{{cursor}}")
        .query("size", 2)
        .records(".data")
        .paginate("cursor")
        .pagination("cursor", ".meta.next_cursor")
        .mapping("{id: .uid, email: .mail}");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 3);
    assert_eq!(emails(&report).len(), 5);
    assert_eq!(
        report["users"][4],
        json!({"id": "5", "email": "ed@example.com"})
    );
    let cursors: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("cursor").unwrap())
        .collect();
    assert_eq!(cursors, ["", "b2Zmc2V0PTI=", "b2Zmc2V0PTQ="]);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.query("size").as_deref() == Some("2"))
    );
}

#[test]
fn an_empty_string_cursor_stops() {
    let server = Server::start(|_| {
        Resp::json(r#"{"data": [{"id": "1", "email": "a@example.com"}], "next": ""}"#)
    });
    let job = Job::source(&server.base)
        .query("after", "{{cursor}}")
        .records(".data")
        .paginate("cursor")
        .pagination("cursor", ".next");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 1);
}

#[test]
fn next_urls_relative_and_absolute() {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let server = Server::start(move |req| match req.query("page_token").as_deref() {
        None => Resp::json(fixture("next_url/1.json")),
        Some("t2") => Resp::json(fixture("next_url/2.json").replace("BASE", b.get().unwrap())),
        Some("t3") => Resp::json(fixture("next_url/3.json")),
        _ => not_found(),
    });
    base.set(server.base.clone()).unwrap();
    let job = Job::source(&format!("{}/v2", server.base))
        .path("/people")
        .records(".items")
        .paginate("next_url")
        .pagination("next_url", "._links.next.href");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 3);
    assert_eq!(
        emails(&report),
        [
            "ana@example.com",
            "bo@example.com",
            "cy@example.com",
            "di@example.com"
        ]
    );
    let urls: Vec<_> = server.requests().iter().map(|r| r.url.clone()).collect();
    assert_eq!(
        urls,
        [
            "/v2/people",
            "/v2/people?page_token=t2",
            "/v2/people?page_token=t3"
        ]
    );
}

#[test]
fn link_headers_rel_next() {
    let server = Server::start(|req| {
        match req.query("page").as_deref() {
        None => Resp::json(fixture("link/1.json")).with_header(
            "Link",
            r#"</orgs/acme/members?page=2&per_page=2>; rel="next", </orgs/acme/members?page=2&per_page=2>; rel="last""#,
        ),
        Some("2") => Resp::json(fixture("link/2.json"))
            .with_header("Link", r#"</orgs/acme/members?page=1&per_page=2>; rel="prev""#),
        _ => not_found(),
    }
    });
    let job = Job::source(&server.base)
        .path("/orgs/acme/members")
        .query("per_page", 2)
        .paginate("link_header")
        .mapping("{id, email}");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 2);
    assert_eq!(
        report["users"][2],
        json!({"id": "13", "email": "cy@example.com"})
    );
}

#[test]
fn no_pagination_reads_one_page() {
    let server = Server::start(|_| Resp::json(fixture("page/1.json")));
    let report = fetch_json(Job::source(&server.base).path("/all").records(".users"));
    assert_eq!(report["pages"], 1);
    assert_eq!(server.request_count(), 1);
}

#[test]
fn post_body_templates_carry_the_page() {
    let server = Server::start(|req| {
        let body: Value = serde_json::from_str(&req.body).unwrap();
        let page = body["page"].as_u64().unwrap();
        Resp::value(&json!({"total": 4, "rows": [
            {"id": page * 2, "email": format!("a{page}@example.com")},
            {"id": page * 2 + 1, "email": format!("b{page}@example.com")},
        ]}))
    });
    let job = Job::source(&server.base)
        .set("method", "post")
        .path("/search")
        .set("body", r#"{"page": {{page}}, "filter": "active"}"#)
        .records(".rows")
        .paginate("page")
        .total(".total");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 2);
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.method == "POST"));
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
}

#[test]
fn max_pages_with_pages_left_is_an_error() {
    let server = Server::start(|req| match req.query("page").as_deref() {
        Some(n @ ("1" | "2" | "3")) => Resp::json(fixture(&format!("page/{n}.json"))),
        _ => not_found(),
    });
    let job = paged_to_total(&server.base)
        .pagination("max_pages", 2)
        .write();
    let out = fetch(&job).expect(1);
    assert!(
        out.stderr.contains("max_pages (2) reached"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("4 of 5 records"), "{}", out.stderr);
    assert_eq!(out.stdout, "", "no partial list is printed");
}

#[test]
fn a_repeated_cursor_is_a_loop() {
    // "" -> A -> B -> A: the server sends the reader back to a page it read.
    let server = Server::start(|req| {
        let here = req.query("c").unwrap_or_default();
        let next = if here.is_empty() || here == "B" {
            "A"
        } else {
            "B"
        };
        let n = server_page_user(&here);
        Resp::value(
            &json!({"data": [{"id": n, "email": format!("{n}@example.com")}], "next": next}),
        )
    });
    let job = Job::source(&server.base)
        .query("c", "{{cursor}}")
        .records(".data")
        .paginate("cursor")
        .pagination("cursor", ".next")
        .write();
    let out = fetch(&job).expect(1);
    assert!(out.stderr.contains("pagination loop"), "{}", out.stderr);
    assert!(
        out.stderr.contains("the cursor \"A\" came back"),
        "{}",
        out.stderr
    );
}

/// A distinct user per cursor, so only the loop (not a shifted listing) is seen.
fn server_page_user(cursor: &str) -> String {
    format!("user-{cursor}")
}

#[test]
fn a_page_that_is_not_json_is_an_error() {
    let server = Server::start(|req| match req.query("page").as_deref() {
        Some("1") => Resp::json(fixture("page/1.json")),
        _ => Resp::status(200, "text/html; charset=utf-8", fixture("maintenance.html")),
    });
    let out = fetch(&paged_to_total(&server.base).write()).expect(1);
    assert!(out.stderr.contains("source page 2"), "{}", out.stderr);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    assert!(out.stderr.contains("text/html"), "{}", out.stderr);
}

#[test]
fn a_non_2xx_page_names_status_url_and_body() {
    let server = Server::start(|_| {
        Resp::status(
            500,
            "application/json",
            r#"{"message": "database unavailable"}"#,
        )
    });
    let out = fetch(&paged_to_total(&server.base).write()).expect(1);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{}/users?page=1", server.base)),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("database unavailable"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_total_that_does_not_add_up_is_an_error() {
    let server = Server::start(|req| match req.query("page").as_deref() {
        Some("1") => Resp::json(fixture("page/1.json")),
        _ => Resp::json(r#"{"total": 5, "count": 0, "users": []}"#),
    });
    let out = fetch(&paged_to_total(&server.base).write()).expect(1);
    assert!(
        out.stderr.contains("total of 5 records but 2 were read"),
        "{}",
        out.stderr
    );
}

#[test]
fn records_that_fail_the_mapping_are_skipped_with_a_reason() {
    let server = Server::start(|_| Resp::json(fixture("skipped.json")));
    let report = fetch_json(Job::source(&server.base).records(".users"));
    assert_eq!(emails(&report), ["ok@example.com", "five@example.com"]);
    assert_eq!(report["users"][1]["id"], "5");
    assert_eq!(
        report["skipped"],
        json!([
            {"page": 1, "index": 1, "reason": "email is not a string (it is a number)"},
            {"page": 1, "index": 2, "reason": "id is missing (the record has keys: email)"},
            {"page": 1, "index": 3, "reason": "email \"not-an-address\" is not an address with one @"},
        ])
    );
}

#[test]
fn records_of_the_wrong_shape_are_an_error() {
    let server = Server::start(|_| Resp::json(r#"{"data": {"users": []}}"#));
    let job = Job::source(&server.base).records(".users").write();
    let out = fetch(&job).expect(1);
    assert!(
        out.stderr
            .contains("gave null, not an array of records: the page does not have the expected shape (the page has keys: data)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_mapping_naming_the_wrong_fields_shows_the_keys_and_fetch_fails_as_sync_does() {
    let server = Server::start(|_| {
        Resp::json(
            r#"{"users": [
                {"punch_clock_id": 1, "punch_clock_email": "a@x.com"},
                {"punch_clock_id": 2, "punch_clock_email": "b@x.com", "team\nlead": true}
            ]}"#,
        )
    });
    let job = Job::source(&server.base)
        .records(".users")
        .mapping("{id: .id, email: .email}")
        .sink_file("agents.json")
        .write();
    job.write("agents.json", r#"[{"id": "k1", "email": "a@x.com"}]"#);
    let out = fetch(&job).expect(1);
    assert!(
        out.stdout.contains(
            "record 0:  id is missing (the record has keys: punch_clock_id, punch_clock_email)"
        ),
        "{}",
        out.stdout
    );
    // A key from the server is shown escaped.
    assert!(
        out.stdout
            .contains("keys: punch_clock_id, punch_clock_email, team\\nlead)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(
            "no user was mapped: 2 of 2 records skipped; the first, page 1 record 0: id is missing (the record has keys: punch_clock_id, punch_clock_email)"
        ),
        "{}",
        out.stderr
    );
    // The sync fails the same way, through min_users.
    let out = agentsync(&["--dry-run"]).config(&job).expect(1);
    assert!(
        out.stderr
            .contains("id is missing (the record has keys: punch_clock_id"),
        "{}",
        out.stderr
    );
}

#[test]
fn pages_flag_samples_without_error() {
    let server = Server::start(|req| {
        Resp::json(fixture(&format!(
            "page/{}.json",
            req.query("page").unwrap()
        )))
    });
    let job = paged_to_total(&server.base).write();
    let out = fetch(&job).args(&["--pages", "1"]).expect(0);
    assert!(
        out.stdout.contains("101  ana@example.com"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2 users from 2 records in 1 page (sample"),
        "{}",
        out.stdout
    );
    assert_eq!(server.request_count(), 1);
}

#[test]
fn env_placeholders_and_bearer_auth_are_sent_and_never_printed() {
    let server =
        Server::start(|_| Resp::status(403, "application/json", r#"{"error": "forbidden"}"#));
    let job = Job::source(&server.base)
        .path("/t/{{env.TENANT}}/users")
        .query("key", "{{env.API_KEY}}")
        .records(".users")
        .bearer("PUNCH_TOKEN")
        .write();
    let out = fetch(&job)
        .arg("-v")
        .env("TENANT", "acme corp")
        .env("API_KEY", "key-0123456789")
        .env("PUNCH_TOKEN", "tok-abcdefghij")
        .expect(1);
    let req = &server.requests()[0];
    assert_eq!(req.path(), "/t/acme%20corp/users");
    assert_eq!(req.query("key").as_deref(), Some("key-0123456789"));
    assert_eq!(req.header("authorization"), Some("Bearer tok-abcdefghij"));
    assert!(out.stderr.contains("HTTP 403"), "{}", out.stderr);
    for secret in ["key-0123456789", "tok-abcdefghij"] {
        assert!(
            !out.stderr.contains(secret),
            "{secret} printed: {}",
            out.stderr
        );
        assert!(!out.stdout.contains(secret));
    }
}

// --- invalid configs: exit 2 with a position, and no request sent ---------

#[test]
fn the_page_text_is_the_page_job() {
    let parse = |text: &str| text.parse::<toml::Table>().unwrap();
    assert_eq!(
        parse(PAGE),
        parse(&paged_to_total("BASE").text()),
        "the config error tests see the job the other tests run"
    );
}

fn expect_config_error(config: &str, line_col: &str, message: &str) {
    let server = Server::start(|_| Resp::json(fixture("page/1.json")));
    let job = Job::raw(config.replace("BASE", &server.base)).write();
    for cmd in ["fetch", "check", "sync"] {
        let out = agentsync(&[cmd]).config(&job).expect(2);
        let expected = format!("{}:{line_col}: ", job.config());
        assert!(
            out.stderr.contains(&expected),
            "{cmd}: want {expected:?} in {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(message),
            "{cmd}: want {message:?} in {}",
            out.stderr
        );
    }
    assert_eq!(server.request_count(), 0, "a request was sent");
}

#[test]
fn unknown_key_is_exit_2_with_line_and_column() {
    let config = PAGE.replace("count = \".count\"", "count = \".count\"\n  max_page = 3");
    expect_config_error(&config, "13:3", "unknown field `max_page`");
}

#[test]
fn bad_toml_is_exit_2_with_line() {
    let config = PAGE.replace("records = \".users\"", "records = \".users");
    expect_config_error(&config, "6:18", "invalid basic string");
}

#[test]
fn bad_jq_is_exit_2_with_key_and_position() {
    let config =
        format!("{PAGE}\n[mapping]\njq = '{{id: .punch_clock_id, email: .punch_clock_email'\n");
    expect_config_error(&config, "15:54", "[mapping] jq: invalid jq at character 48");
    let config = PAGE.replace("total = \".total\"", "total = \".total | lenght\"");
    expect_config_error(
        &config,
        "11:19",
        "[pagination] total: invalid jq at character 10",
    );
}

#[test]
fn unknown_placeholder_is_exit_2() {
    let config = PAGE.replace("{{page}}", "{{page_number}}");
    expect_config_error(&config, "5:19", "unknown placeholder `{{page_number}}`");
}

#[test]
fn missing_env_var_is_exit_2_and_named() {
    let config = PAGE.replace(
        "path = \"/users\"",
        "path = \"/{{env.AGENTSYNC_TEST_UNSET}}/users\"",
    );
    expect_config_error(
        &config,
        "4:10",
        "environment variable AGENTSYNC_TEST_UNSET is not set",
    );
}

#[test]
fn missing_config_is_exit_2() {
    let out = agentsync(&["fetch"]).expect(2);
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
    let out = agentsync(&["fetch", "--config", "/nonexistent/agentsync.toml"]).expect(2);
    assert!(
        out.stderr.contains("cannot read the config"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_describes_the_job_without_network() {
    let job = paged_to_total("http://127.0.0.1:9").write();
    let out = agentsync(&["check"]).config(&job).expect(0);
    assert!(
        out.stdout.contains("GET http://127.0.0.1:9/users"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("page = {{page}}"), "{}", out.stdout);
    assert!(
        out.stdout.contains("records read reach total `.total`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("mapping    {id: .id, email: .email}"),
        "{}",
        out.stdout
    );
    let out = agentsync(&["check"]).config(&job).output_json().expect(0);
    assert_eq!(out.json()["pagination"]["kind"], "page");
}

#[test]
fn every_bundled_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/configs");
    let mut configs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .chain(std::fs::read_dir(format!("{dir}/examples")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 8, "{configs:?}");
    for config in &configs {
        let check = agentsync(&["check", "--config", config.to_str().unwrap()]);
        let out = common::CONFIG_SECRETS
            .iter()
            .fold(check, |run, name| run.env(name, "secret-value"))
            .run();
        assert_eq!(out.code, 0, "{}: {}", config.display(), out.stderr);
        assert!(!out.stdout.contains("secret-value"), "{}", out.stdout);
    }
}
