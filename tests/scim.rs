//! SCIM the way real directories speak it: what `/ServiceProviderConfig`
//! says, one request per write with `If-Match`, the 412 race, a directory
//! that refuses writes, hostile listings, the filter lookup of `action`, the
//! Talkdesk preset, and agents whose external ID someone else writes.

mod common;

use std::sync::{Arc, Mutex};

use common::{Job, Req, Resp, Scim, Server, agentsync, sync};
#[cfg(feature = "mock")]
use common::{JobDir, Mock};
use serde_json::{Value, json};

/// A sync from `src` to the SCIM directory at `scim_base`.
fn scim_job(src: &Server, scim_base: &str) -> Job {
    Job::source(&src.base)
        .path("/users")
        .records(".users")
        .set("retries", 0)
        .sink_scim(scim_base)
        .sink("retries", 0)
}

#[cfg(feature = "mock")]
fn mock_email(n: usize) -> String {
    format!("user+{n}@talkdesk.com")
}

/// `count` source users for agents of the mock that have no external ID yet
/// (with `--users 1`, every agent from 2 on but each tenth).
#[cfg(feature = "mock")]
fn unlinked_users(count: usize) -> Vec<(String, String)> {
    (2..)
        .filter(|n| n % 10 != 0)
        .take(count)
        .map(|n| (format!("u{n}"), mock_email(n)))
        .collect()
}

#[cfg(feature = "mock")]
fn stat(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {stats}"))
}

/// 40 links at 4 requests per second: 40 write requests, no read before any.
#[cfg(feature = "mock")]
fn forty_links(extra: &[&str]) {
    let mut args = vec!["--users", "1", "--agents", "60"];
    args.extend_from_slice(extra);
    let mock = Mock::start(&args);
    let src = source(&unlinked_users(40));
    let job = scim_job(&src, &format!("{}/scim/v2", mock.base))
        .sink("rate_limit", 4)
        .sync("max_changes", 100)
        .write();
    let report = sync(&job).output_json().quiet().expect(0).json();
    assert_eq!(report["summary"]["link"], 40);
    let stats = mock.get("/_mock/stats");
    assert_eq!(
        stat(&stats, "scim_patch") + stat(&stats, "scim_put"),
        40,
        "{stats}"
    );
    assert_eq!(stat(&stats, "scim_get"), 0, "{stats}");
    assert_eq!(stat(&stats, "service_provider_config"), 1, "{stats}");
}

fn source(users: &[(String, String)]) -> Server {
    common::one_page_source(users)
}

#[test]
#[cfg(feature = "mock")]
fn forty_links_at_four_per_second_are_forty_write_requests() {
    forty_links(&[]);
}

#[test]
#[cfg(feature = "mock")]
fn forty_links_with_a_slow_directory_are_forty_write_requests() {
    forty_links(&["--latency-ms", "300"]);
}

#[test]
#[cfg(feature = "mock")]
fn update_auto_patches_where_the_directory_can_and_puts_where_not() {
    for (flags, patches, puts) in [(&[][..], 5, 0), (&["--no-patch"][..], 0, 5)] {
        let mut args = vec!["--users", "1", "--agents", "20"];
        args.extend_from_slice(flags);
        let mock = Mock::start(&args);
        let src = source(&unlinked_users(5));
        let job = scim_job(&src, &format!("{}/scim/v2", mock.base)).write();
        sync(&job).quiet().expect(0);
        let stats = mock.get("/_mock/stats");
        assert_eq!(stat(&stats, "scim_patch"), patches, "{flags:?}: {stats}");
        assert_eq!(stat(&stats, "scim_put"), puts, "{flags:?}: {stats}");
        assert_eq!(stat(&stats, "scim_get"), 0, "{flags:?}: {stats}");
        let linked = mock.get(&format!(
            "/scim/v2/Users?filter=userName%20eq%20%22{}%22",
            mock_email(2).replace('+', "%2B")
        ));
        assert_eq!(linked["Resources"][0]["externalId"], "u2", "{flags:?}");
        // The PUT sent back what the listing held: nothing was lost.
        assert_eq!(linked["Resources"][0]["name"]["formatted"], "User 2");
    }
}

#[test]
#[cfg(feature = "mock")]
fn explicit_patch_on_a_directory_without_patch_is_a_usage_error() {
    let mock = Mock::start(&["--users", "1", "--agents", "20", "--no-patch"]);
    let src = source(&unlinked_users(5));
    let job = scim_job(&src, &format!("{}/scim/v2", mock.base))
        .sink("update", "patch")
        .write();
    let out = sync(&job).run();
    out.expect(2);
    assert!(
        out.stderr.contains("does not support PATCH"),
        "{}",
        out.stderr
    );
    let stats = mock.get("/_mock/stats");
    assert_eq!(
        stat(&stats, "scim_patch") + stat(&stats, "scim_put"),
        0,
        "{stats}"
    );
    // Exit 2 means nothing was fetched either: the directory's configuration
    // is read before the source.
    assert!(src.requests().is_empty(), "{:?}", src.requests());
    // The run is journaled (every run is), as failed, with nothing applied.
    let journal = job.journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["ending"], "failed");
    assert_eq!(journal[0]["changes"], json!([]));
}

#[test]
#[cfg(feature = "mock")]
fn without_versions_the_user_is_read_again_before_each_write() {
    let mock = Mock::start(&["--users", "1", "--agents", "20", "--no-etag"]);
    let src = source(&unlinked_users(3));
    let job = scim_job(&src, &format!("{}/scim/v2", mock.base)).write();
    sync(&job).quiet().expect(0);
    let stats = mock.get("/_mock/stats");
    assert_eq!(stat(&stats, "scim_get"), 3, "{stats}");
    assert_eq!(stat(&stats, "scim_patch"), 3, "{stats}");
}

/// A directory of one user `a1` (a@x.com) at version 1, whose version moves
/// to 2 behind agentsync's back: the re-read shows `reread` (merged into the
/// user). Writes honour `If-Match`. `patch` is what its config says.
fn racing_directory(patch: bool, reread: Value) -> (Server, Arc<Mutex<Vec<Value>>>) {
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "a1", "userName": "a@x.com", "name": {"formatted": "A"},
        "meta": {"resourceType": "User", "version": "W/\"1\""}});
    let written = Arc::new(Mutex::new(Vec::new()));
    let log = written.clone();
    let server = Server::start(move |req: &Req| {
        let scim =
            |status: u16, v: Value| Resp::status(status, "application/scim+json", v.to_string());
        match (req.method.as_str(), req.path()) {
            ("GET", "/scim/v2/ServiceProviderConfig") => scim(
                200,
                json!({"patch": {"supported": patch}, "filter": {"supported": false},
                       "etag": {"supported": true}}),
            ),
            ("GET", "/scim/v2/Users") => scim(
                200,
                json!({"totalResults": 1, "itemsPerPage": 1, "startIndex": 1, "Resources": [user]}),
            ),
            ("GET", "/scim/v2/Users/a1") => {
                let mut now = user.clone();
                for (k, v) in reread.as_object().unwrap() {
                    now[k] = v.clone();
                }
                now["meta"]["version"] = json!("W/\"2\"");
                scim(200, now).with_header("ETag", "W/\"2\"")
            }
            (_, "/scim/v2/Users/a1") => {
                log.lock().unwrap().push(json!({
                    "method": req.method, "if_match": req.header("if-match"),
                    "body": serde_json::from_str::<Value>(&req.body).unwrap_or_default()}));
                if req.header("if-match") == Some("W/\"2\"") {
                    scim(200, user.clone())
                } else {
                    scim(412, json!({"status": "412", "detail": "version mismatch"}))
                }
            }
            _ => scim(404, json!({"detail": "not here"})),
        }
    });
    (server, written)
}

#[test]
fn a_412_is_read_again_and_retried_once_when_still_as_planned() {
    for patch in [true, false] {
        let (dir, written) = racing_directory(patch, json!({"title": "Lead"}));
        let src = source(&[("7".into(), "A@x.com".into())]);
        let job = scim_job(&src, &format!("{}/scim/v2", dir.base)).write();
        let report = sync(&job).output_json().expect(0).json();
        assert_eq!(report["changes"][0]["status"], "applied");
        let written = written.lock().unwrap();
        let tags: Vec<_> = written.iter().map(|w| w["if_match"].clone()).collect();
        assert_eq!(tags, [json!("W/\"1\""), json!("W/\"2\"")], "patch {patch}");
        let method = if patch { "PATCH" } else { "PUT" };
        assert!(written.iter().all(|w| w["method"] == method));
        if !patch {
            // Rebuilt from the user as read again, without its meta.
            let body = &written[1]["body"];
            assert_eq!(body["title"], "Lead");
            assert_eq!(body["externalId"], "7");
            assert!(body.get("meta").is_none(), "{body}");
        }
    }
}

#[test]
fn a_412_on_a_user_changed_since_the_listing_fails_untouched() {
    for reread in [
        json!({"externalId": "manual"}),
        json!({"userName": "someone.else@x.com"}),
    ] {
        let (dir, written) = racing_directory(true, reread.clone());
        let src = source(&[("7".into(), "a@x.com".into())]);
        let job = scim_job(&src, &format!("{}/scim/v2", dir.base)).write();
        let report = sync(&job).output_json().expect(3).json();
        let change = &report["changes"][0];
        assert_eq!(change["status"], "failed");
        let error = change["error"].as_str().unwrap();
        assert!(error.contains("changed since it was listed"), "{error}");
        assert_eq!(
            written.lock().unwrap().len(),
            1,
            "{reread}: no second write"
        );
    }
}

#[test]
fn a_directory_refusing_writes_stops_them_the_rest_skipped() {
    let users: Vec<Value> = (1..=9)
        .map(|n| {
            json!({"id": format!("a{n}"), "userName": format!("{n}@x.com"),
                        "meta": {"version": "W/\"1\""}})
        })
        .collect();
    let dir = Server::start(move |req: &Req| {
        let scim =
            |status: u16, v: Value| Resp::status(status, "application/scim+json", v.to_string());
        match (req.method.as_str(), req.path()) {
            ("GET", "/scim/v2/ServiceProviderConfig") => {
                scim(200, json!({"patch": {"supported": true}}))
            }
            ("GET", "/scim/v2/Users") => scim(
                200,
                json!({"totalResults": users.len(), "Resources": users}),
            ),
            _ => {
                // Slow enough that the stop is seen before a second write starts.
                std::thread::sleep(std::time::Duration::from_millis(100));
                scim(
                    403,
                    json!({"status": "403", "detail": "the token may not write users"}),
                )
            }
        }
    });
    let src_users: Vec<_> = (1..=9)
        .map(|n| (n.to_string(), format!("{n}@x.com")))
        .collect();
    let src = source(&src_users);
    let job = scim_job(&src, &format!("{}/scim/v2", dir.base))
        .sink("concurrency", 1)
        .write();
    let out = sync(&job).output_json().run();
    out.expect(3);
    let report = out.json();
    let changes = report["changes"].as_array().unwrap();
    let failed = changes
        .iter()
        .take_while(|c| c["status"] == "failed")
        .count();
    // Three refusals in a row stop the writes; the one already in flight
    // when the third came back (or, on a loaded machine, the next) may still end.
    assert!((3..=5).contains(&failed), "{report}");
    for c in &changes[failed..] {
        assert_eq!(c["status"], "skipped", "{c}");
        let why = c["error"].as_str().unwrap();
        assert!(why.contains("the token may not write users"), "{why}");
    }
    let writes = dir.requests().iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, failed);
}

/// `configs/talkdesk.toml`, pointed at this mock.
#[cfg(feature = "mock")]
fn talkdesk_job(mock: &Mock) -> JobDir {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/talkdesk.toml"
    ))
    .unwrap();
    Job::raw(text.replace("http://127.0.0.1:8787", &mock.base)).write()
}

#[cfg(feature = "mock")]
fn talkdesk_env(run: common::Run) -> common::Run {
    run.env("TALKDESK_CLIENT_ID", "mock-client")
        .env("TALKDESK_CLIENT_SECRET", "mock-secret")
}

#[test]
#[cfg(feature = "mock")]
fn the_talkdesk_config_syncs_the_mock_in_talkdesk_mode() {
    let mock = Mock::start(&["--talkdesk", "--users", "12", "--agents", "12"]);
    let job = talkdesk_job(&mock);
    // No client credentials: a config error, nothing sent.
    let out = sync(&job).run();
    out.expect(2);
    assert!(out.stderr.contains("TALKDESK_CLIENT_ID"), "{}", out.stderr);

    let report = talkdesk_env(sync(&job).output_json()).expect(0).json();
    assert!(report["summary"]["link"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["summary"]["failed"], 0);
    let stats = mock.get("/_mock/stats");
    assert_eq!(stat(&stats, "token"), 1, "{stats}");
    assert_eq!(stat(&stats, "unauthorized"), 0, "{stats}");
    assert_eq!(stat(&stats, "scim_patch"), 0, "the preset PUTs: {stats}");
    let writes =
        report["summary"]["link"].as_u64().unwrap() + report["summary"]["update"].as_u64().unwrap();
    assert_eq!(stat(&stats, "scim_put"), writes, "{stats}");
    // A second run has nothing to do.
    let again = talkdesk_env(sync(&job).output_json()).expect(0).json();
    assert!(again["changes"].as_array().unwrap().is_empty(), "{again}");
}

#[test]
#[cfg(feature = "mock")]
fn an_action_looks_one_agent_up_with_a_filter() {
    let mock = Mock::start(&["--talkdesk", "--users", "12", "--agents", "12"]);
    let job = talkdesk_job(&mock);
    // Agent 3 is linked to "3" in the mock's seed; its email holds a "+".
    let out = talkdesk_env(agentsync(&["action", "punch", "--agent", &mock_email(3)]))
        .config(&job)
        .args(&["--set", "event=login"])
        .output_json()
        .expect(0);
    let result = &out.json_lines()[0];
    assert_eq!(result["external_id"], "3");
    // Two requests and a token: the filter and the punch, no configuration
    // read and no listing.
    let stats = mock.get("/_mock/stats");
    assert_eq!(stat(&stats, "scim_filter"), 1, "{stats}");
    assert_eq!(stat(&stats, "punches"), 1, "{stats}");
    assert_eq!(stat(&stats, "service_provider_config"), 0, "{stats}");
    assert_eq!(stat(&stats, "scim_list"), 0, "{stats}");
    assert_eq!(stat(&stats, "token"), 1, "{stats}");
}

#[test]
#[cfg(feature = "mock")]
fn an_action_lists_a_directory_without_filters() {
    let mock = Mock::start(&["--no-filter", "--users", "12", "--agents", "12"]);
    let job = mock.punch_job();
    agentsync(&["action", "punch", "--agent", &mock_email(3)])
        .config(&job)
        .args(&["--set", "event=login"])
        .quiet()
        .expect(0);
    // The filter is tried once, refused, and the directory listed.
    let stats = mock.get("/_mock/stats");
    assert_eq!(stat(&stats, "scim_filter"), 1, "{stats}");
    assert!(stat(&stats, "scim_list") >= 1, "{stats}");
    assert_eq!(stat(&stats, "punches"), 1, "{stats}");
}

#[test]
fn contested_agents_are_reported_and_skipped_when_asked() {
    let scim = Scim::start(&[("a1", "a@x.com", None), ("a2", "b@x.com", None)], &[]);
    let src = source(&[
        ("1".into(), "a@x.com".into()),
        ("2".into(), "b@x.com".into()),
    ]);
    let job = scim_job(&src, &scim.base()).sync("journal", "job.journal.jsonl");
    let warn = job.clone().write();
    sync(&warn).quiet().expect(0);
    let run = warn.journal()[0]["run"].as_str().unwrap().to_owned();
    // An identity provider maps its own value into externalId.
    scim.set_external_id("a1", "idp-jdoe");

    let report = sync(&warn).dry_run().output_json().expect(0).json();
    assert_eq!(report["summary"]["contested"], 1);
    assert_eq!(
        report["contested"],
        json!([{"email": "a@x.com", "agent_id": "a1", "external_id": "idp-jdoe",
                "set_by_us": "1", "run": run}])
    );
    assert_eq!(report["changes"][0]["agent_id"], "a1", "warn still writes");
    let human = sync(&warn).dry_run().expect(0);
    assert!(human.stdout.contains("1 contested"), "{}", human.stdout);

    // The same job, now with on_contested = "skip": the agent is left alone.
    // (Another config reading this journal would not see the job's runs.)
    let skip = warn;
    let text = job.sync("on_contested", "skip").text();
    std::fs::write(&skip.config, text).unwrap();
    let report = sync(&skip).output_json().expect(0).json();
    assert_eq!(report["summary"]["contested"], 1);
    assert!(report["changes"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(scim.external_id("a1").as_deref(), Some("idp-jdoe"));
}

/// A directory whose listing pages are `pages` (each a ListResponse), served
/// by `startIndex` order of asking; every write answers 500.
fn listing(pages: Vec<Value>) -> Server {
    let pages = Arc::new(pages);
    Server::start(move |req: &Req| {
        let scim =
            |status: u16, v: &Value| Resp::status(status, "application/scim+json", v.to_string());
        match (req.method.as_str(), req.path()) {
            ("GET", "/scim/v2/ServiceProviderConfig") => {
                Resp::status(404, "text/html", "<h1>no</h1>")
            }
            ("GET", "/scim/v2/Users") => {
                let start: usize = req.query("startIndex").unwrap().parse().unwrap();
                // Pages hold two users: page n starts at 2n - 1.
                match pages.get((start - 1) / 2) {
                    Some(page) => scim(200, page),
                    None => scim(200, &json!({"totalResults": 0, "Resources": []})),
                }
            }
            _ => scim(500, &json!({"detail": "no writes here"})),
        }
    })
}

fn users(ids: std::ops::RangeInclusive<usize>) -> Value {
    ids.map(|n| json!({"id": format!("a{n}"), "userName": format!("{n}@x.com")}))
        .collect()
}

#[test]
fn hostile_listings_are_errors_before_anything_is_written() {
    let src = source(&[("1".into(), "1@x.com".into())]);
    // Each case: the pages, what the error says, the most requests it may cost.
    let cases = [
        (
            vec![json!({"totalResults": 100_000_000, "Resources": users(1..=2)})],
            "max_pages",
            2,
        ),
        (
            vec![
                json!({"totalResults": 3, "Resources": users(1..=2)}),
                json!({"totalResults": 3, "Resources": users(3..=4)}),
            ],
            "more users than its totalResults",
            3,
        ),
        (
            vec![
                json!({"totalResults": 5, "Resources": users(1..=2)}),
                json!({"totalResults": 5, "Resources": []}),
            ],
            "an empty page before the end",
            4,
        ),
        (
            vec![
                json!({"totalResults": 4, "Resources": users(1..=2)}),
                json!({"totalResults": 9, "Resources": users(3..=4)}),
            ],
            "totalResults was 4",
            3,
        ),
    ];
    for (pages, why, most) in cases {
        let dir = listing(pages);
        let job = scim_job(&src, &format!("{}/scim/v2", dir.base))
            .sink("page_size", 2)
            .write();
        let out = sync(&job).run();
        out.expect(1);
        assert!(out.stderr.contains(why), "{why}: {}", out.stderr);
        assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
        let requests = dir.requests();
        assert!(requests.iter().all(|r| r.method == "GET"));
        // A huge total is refused on the first page, not page by page.
        assert!(requests.len() <= most, "{why}: {} requests", requests.len());
    }
}

#[test]
fn string_totals_missing_resources_and_the_work_email_are_read() {
    let src = source(&[("1".into(), "work1@x.com".into())]);
    let dir = listing(vec![
        json!({"totalResults": "3", "itemsPerPage": 2, "Resources": [
            {"id": "a1", "emails": [{"value": "home1@x.com", "type": "home"},
                                    {"value": "work1@x.com", "type": "work"}]},
            {"id": "a2", "emails": [{"value": "2@x.com"}]}]}),
        json!({"totalResults": "3", "Resources": [{"id": "a3", "emails": [{"value": "3@x.com"}]}]}),
    ]);
    let job = scim_job(&src, &format!("{}/scim/v2", dir.base))
        .sink("page_size", 2)
        .sink("email_attribute", "emails")
        .write();
    let report = sync(&job).dry_run().output_json().expect(0).json();
    assert_eq!(report["sink"]["agents"], 3);
    assert_eq!(report["changes"][0]["agent_id"], "a1");

    let empty = listing(vec![json!({"totalResults": 0})]);
    let none = scim_job(&src, &format!("{}/scim/v2", empty.base)).write();
    let report = sync(&none).dry_run().output_json().expect(0).json();
    assert_eq!(report["sink"]["agents"], 0);
}

#[test]
fn a_user_read_again_must_be_the_one_asked_for() {
    let dir = Server::start(|req: &Req| {
        let scim = |v: Value| Resp::status(200, "application/scim+json", v.to_string());
        match (req.method.as_str(), req.path()) {
            ("GET", "/scim/v2/Users") => scim(json!({"totalResults": 1,
                "Resources": [{"id": "a1", "userName": "a@x.com"}]})),
            // Another user than the one asked for, with the same email.
            ("GET", "/scim/v2/Users/a1") => scim(json!({"id": "a2", "userName": "a@x.com"})),
            ("GET", _) => Resp::status(404, "application/json", "{}"),
            _ => Resp::status(500, "application/json", "{}"),
        }
    });
    let src = source(&[("7".into(), "a@x.com".into())]);
    let job = scim_job(&src, &format!("{}/scim/v2", dir.base)).write();
    let report = sync(&job).output_json().expect(3).json();
    let error = report["changes"][0]["error"].as_str().unwrap();
    assert!(error.contains("instead of the one asked for"), "{error}");
    assert!(dir.requests().iter().all(|r| r.method == "GET"));
}

#[test]
fn an_action_lists_when_the_filter_answer_is_not_the_email_asked_for() {
    let dir = Server::start(|req: &Req| {
        let scim = |v: Value| Resp::status(200, "application/scim+json", v.to_string());
        match (req.method.as_str(), req.path()) {
            ("GET", "/scim/v2/ServiceProviderConfig") => {
                scim(json!({"filter": {"supported": true, "maxResults": 50}}))
            }
            // The filter is ignored: everyone comes back.
            ("GET", "/scim/v2/Users") => scim(json!({"totalResults": "3", "Resources": [
                {"id": "a1", "userName": "a@x.com", "externalId": "1"},
                {"id": "a2", "userName": "b+2@x.com", "externalId": "2"},
                {"id": "a3", "userName": "c@x.com", "externalId": "3"}]})),
            _ => Resp::status(500, "application/json", "{}"),
        }
    });
    let api = Server::start(|_| Resp::json("{}"));
    let job = Job::source(&api.base)
        .records(".users")
        .sink_scim(&format!("{}/scim/v2", dir.base))
        .action("ping", "path", "/ping/{{external_id}}")
        .write();
    let out = agentsync(&["action", "ping", "--agent", "B+2@x.com"])
        .config(&job)
        .output_json()
        .expect(0);
    assert_eq!(out.json_lines()[0]["external_id"], "2");
    let asked: Vec<_> = dir
        .requests()
        .iter()
        .filter(|r| r.path() == "/scim/v2/Users")
        .map(|r| r.query("filter"))
        .collect();
    assert_eq!(
        asked,
        [Some("userName eq \"B+2@x.com\"".to_owned()), None],
        "one filter, then the listing"
    );
    // On the wire: a `+` kept as %2B, spaces as %20.
    let filter = dir
        .requests()
        .iter()
        .find(|r| r.query("filter").is_some())
        .unwrap()
        .url
        .clone();
    assert!(
        filter.contains("B%2B2%40x.com") && !filter.contains('+'),
        "{filter}"
    );
    assert_eq!(api.requests()[0].path(), "/ping/2");
}
