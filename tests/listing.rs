//! No silent cut: listings that real systems answer with an empty page in the
//! middle, 204 past the end, or fewer records than asked are read whole.

mod common;

use common::{Job, Resp, Server, fetch, sync};
use serde_json::{Value, json};

/// `fetch --output json` of a job; returns the report.
fn fetch_json(job: Job) -> Value {
    fetch(&job.write()).output_json().quiet().expect(0).json()
}

/// The ids of a fetch report, in output order.
fn ids(report: &Value) -> Vec<String> {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

fn user(i: usize) -> Value {
    json!({"id": format!("u{i}"), "mail": format!("user{i}@example.com")})
}

/// `0..n` as the ids a report should list.
fn expected_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

/// The users of page `index` of a listing of 242 users in pages of 100 where
/// page 1 (0-based) is empty: 100, 0, 100, 42.
fn graph_page(index: usize) -> Vec<Value> {
    let range = match index {
        0 => 0..100,
        1 => 0..0,
        2 => 100..200,
        _ => 200..242,
    };
    range.map(user).collect()
}

#[test]
fn graph_next_links_past_an_empty_page_read_every_user() {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    // Microsoft Graph: `@odata.nextLink` until the last page, one empty page
    // in the middle that still carries the link.
    let server = Server::start(move |req| {
        let page: usize = req.query("$skiptoken").map_or(0, |t| t.parse().unwrap());
        let mut body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
            "value": graph_page(page),
        });
        if page < 3 {
            body["@odata.nextLink"] = json!(format!(
                "{}/v1.0/users?$top=100&$skiptoken={}",
                b.get().unwrap(),
                page + 1
            ));
        }
        Resp::value(&body)
    });
    base.set(server.base.clone()).unwrap();
    let job = Job::source(&format!("{}/v1.0", server.base))
        .path("/users")
        .query("$top", 100)
        .records(".value")
        .paginate("next_url")
        .pagination("next_url", ".\"@odata.nextLink\"")
        .mapping("{id, email: .mail}");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 4);
    assert_eq!(ids(&report), expected_ids(242));
    assert_eq!(server.request_count(), 4);
}

#[test]
fn cursors_past_an_empty_page_read_every_user() {
    let server = Server::start(|req| {
        let page: usize = match req.query("cursor").as_deref() {
            None | Some("") => 0,
            Some(c) => c.trim_start_matches('c').parse().unwrap(),
        };
        let next = if page < 3 {
            json!(format!("c{}", page + 1))
        } else {
            Value::Null
        };
        Resp::value(&json!({"data": graph_page(page), "next": next}))
    });
    let job = Job::source(&server.base)
        .path("/users")
        .query("cursor", "{{cursor}}")
        .records(".data")
        .paginate("cursor")
        .pagination("cursor", ".next")
        .mapping("{id, email: .mail}");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 4);
    assert_eq!(ids(&report), expected_ids(242));
}

#[test]
fn link_headers_past_an_empty_page_read_every_user() {
    let server = Server::start(|req| {
        let page: usize = req.query("page").map_or(0, |p| p.parse().unwrap());
        let resp = Resp::value(&json!(graph_page(page)));
        if page < 3 {
            resp.with_header("Link", &format!("</users?page={}>; rel=\"next\"", page + 1))
        } else {
            resp
        }
    });
    let job = Job::source(&server.base)
        .path("/users")
        .paginate("link_header")
        .mapping("{id, email: .mail}");
    let report = fetch_json(job);
    assert_eq!(report["pages"], 4);
    assert_eq!(ids(&report), expected_ids(242));
}

#[test]
fn an_explicit_stop_on_empty_still_follows_a_named_next_page() {
    let server = Server::start(|req| {
        let page: usize = req.query("page").map_or(0, |p| p.parse().unwrap());
        let resp = Resp::value(&json!(graph_page(page)));
        if page < 3 {
            resp.with_header("Link", &format!("</users?page={}>; rel=next", page + 1))
        } else {
            resp
        }
    });
    let job = Job::source(&server.base)
        .path("/users")
        .paginate("link_header")
        .pagination("stop_on_empty", true)
        .mapping("{id, email: .mail}");
    assert_eq!(ids(&fetch_json(job)), expected_ids(242));
}

/// An API of `n` users, `size` a page, by page number (1-based) or offset,
/// answering `past_end` (status, body) beyond the last record.
fn ending_server(n: usize, size: usize, past_end: (u16, &'static str)) -> Server {
    Server::start(move |req| {
        let first = match (req.query("page"), req.query("offset")) {
            (Some(p), _) => (p.parse::<usize>().unwrap() - 1) * size,
            (None, Some(o)) => o.parse().unwrap(),
            (None, None) => 0,
        };
        if first >= n {
            let (status, body) = past_end;
            return Resp {
                status,
                headers: Vec::new(),
                body: body.as_bytes().to_vec(),
            };
        }
        let users: Vec<_> = (first..(first + size).min(n)).map(user).collect();
        Resp::value(&json!({ "users": users }))
    })
}

#[test]
fn no_content_past_the_end_ends_a_page_listing() {
    // 6 users in pages of 3: the short-page rule cannot stop it, page 3 is 204.
    for past_end in [(204, ""), (200, ""), (200, " \r\n")] {
        let server = ending_server(6, 3, past_end);
        let job = Job::source(&server.base)
            .path("/users")
            .query("page", "{{page}}")
            .records(".users")
            .paginate("page")
            .pagination("stop_on_empty", true)
            .set("concurrency", 1)
            .mapping("{id, email: .mail}");
        let report = fetch_json(job);
        assert_eq!(ids(&report), expected_ids(6), "{past_end:?}");
        assert_eq!(report["pages"], 3, "{past_end:?}");
        assert_eq!(server.request_count(), 3);
    }
}

#[test]
fn no_content_past_the_end_ends_an_offset_listing() {
    let server = ending_server(8, 4, (204, ""));
    let job = Job::source(&server.base)
        .path("/users")
        .query("$skip", "{{offset}}")
        .query("$top", "{{limit}}")
        .query("offset", "{{offset}}")
        .records(".users")
        .paginate("offset")
        .pagination("limit", 4)
        .mapping("{id, email: .mail}");
    let report = fetch_json(job);
    assert_eq!(ids(&report), expected_ids(8));
    let offsets: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query("offset").unwrap())
        .collect();
    assert_eq!(offsets, ["0", "4", "8"]);
}

#[test]
fn no_content_before_the_total_is_still_incomplete() {
    let server = Server::start(|req| match req.query("page").as_deref() {
        Some("1") => Resp::value(&json!({"total": 5, "users": [user(0), user(1)]})),
        _ => Resp {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        },
    });
    let job = Job::source(&server.base)
        .path("/users")
        .query("page", "{{page}}")
        .records(".users")
        .set("concurrency", 1)
        .paginate("page")
        .total(".total")
        .mapping("{id, email: .mail}");
    let out = fetch(&job.write()).run();
    out.expect(1);
    assert!(
        out.stderr.contains("total of 5 records but 2 were read"),
        "{}",
        out.stderr
    );
}

/// A SCIM 2.0 source of `n` users that answers at most `cap` a page,
/// whatever `count` asked for.
fn capped_scim_source(n: usize, cap: usize) -> Server {
    Server::start(move |req| {
        let start: usize = req.query("startIndex").unwrap().parse().unwrap();
        let count: usize = req.query("count").unwrap().parse().unwrap();
        let page: Vec<_> = (start - 1..(start - 1 + count.min(cap)).min(n))
            .map(|i| json!({"id": format!("u{i}"), "userName": format!("user{i}@example.com")}))
            .collect();
        Resp::status(
            200,
            "application/scim+json",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": n,
                "startIndex": start,
                "itemsPerPage": page.len(),
                "Resources": page,
            })
            .to_string(),
        )
    })
}

fn scim_source_job(base: &str, concurrency: u64) -> Job {
    Job::source(base)
        .path("/scim/v2/Users")
        .query("startIndex", "{{offset}}")
        .query("count", "{{limit}}")
        .records(".Resources")
        .set("concurrency", concurrency)
        .paginate("offset")
        .pagination("start", 1)
        .pagination("limit", 100)
        .total(".totalResults")
        .count(".itemsPerPage")
        .mapping("{id, email: .userName}")
}

#[test]
fn a_scim_source_that_caps_count_is_read_from_the_next_record() {
    for concurrency in [1, 4] {
        let server = capped_scim_source(242, 30);
        let report = fetch_json(scim_source_job(&server.base, concurrency));
        assert_eq!(ids(&report), expected_ids(242), "concurrency {concurrency}");
        let mut starts: Vec<usize> = server
            .requests()
            .iter()
            .map(|r| r.query("startIndex").unwrap().parse().unwrap())
            .collect();
        starts.sort_unstable();
        let expected: Vec<usize> = (0..9).map(|i| 1 + 30 * i).collect();
        assert_eq!(starts, expected, "concurrency {concurrency}");
    }
}

#[test]
fn a_directory_that_caps_count_is_listed_whole() {
    // The directory answers at most 5 users a page (and 4 from startIndex 11
    // on), asked for 10.
    let dir = Server::start(|req| {
        if req.path() != "/scim/v2/Users" {
            return Resp::status(404, "application/scim+json", r#"{"status": "404"}"#);
        }
        let start: usize = req.query("startIndex").unwrap().parse().unwrap();
        let count: usize = req.query("count").unwrap().parse().unwrap();
        let cap = if start > 10 { 4 } else { 5 };
        let page: Vec<_> = (start - 1..(start - 1 + count.min(cap)).min(23))
            .map(|i| json!({"id": format!("a{i}"), "userName": format!("user{i}@example.com")}))
            .collect();
        Resp::status(
            200,
            "application/scim+json",
            json!({"totalResults": 23, "itemsPerPage": page.len(), "Resources": page}).to_string(),
        )
    });
    let users: Vec<_> = (0..23)
        .map(|i| (format!("e{i}"), format!("user{i}@example.com")))
        .collect();
    let source = common::one_page_source(&users);
    let job = Job::source(&source.base)
        .records(".users")
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .sink("page_size", 10)
        .sync("max_changes", 100)
        .write();
    let report = sync(&job).dry_run().output_json().quiet().expect(0).json();
    assert_eq!(report["summary"]["link"], 23, "{report}");
    let starts: Vec<usize> = dir
        .requests()
        .iter()
        .filter(|r| r.path() == "/scim/v2/Users")
        .map(|r| r.query("startIndex").unwrap().parse().unwrap())
        .collect();
    // Each page read from the record after the last one returned (pages
    // fetched ahead at the first page's size may come on top).
    for start in [1, 6, 11, 15, 19, 23] {
        assert!(starts.contains(&start), "{start} not in {starts:?}");
    }
}
