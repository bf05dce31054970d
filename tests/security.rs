//! Hostile servers against agentsync: credentials stay with their origin,
//! secrets are printed in no form, values cannot climb out of their path
//! segment, and a config's jq cannot hang or flood a run. Every server listens
//! on 127.0.0.1 and is started and stopped by its test.

mod common;

use base64::Engine as _;
use common::{Job, JobDir, Output, Req, Resp, Scim, Server, agentsync, fetch, sync};
use serde_json::{Value, json};

const TOKEN: &str = "src/tok+en 1%2";

/// Headers of a request as a JSON object, for servers that echo them.
fn headers_json(req: &Req) -> Value {
    Value::Object(
        req.headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Everything a request carried, as an echoing server sends it back.
fn echo(req: &Req) -> Value {
    json!({"Authorization": req.header("authorization"), "url": req.url,
           "body": req.body, "headers": headers_json(req)})
}

/// Does the request carry credentials: auth, an API key, or `secret`?
fn has_credentials(req: &Req, secret: &str) -> bool {
    req.header("authorization").is_some()
        || req.header("x-api-key").is_some()
        || req.headers.iter().any(|(_, v)| v.contains(secret))
        || req.url.contains("secret")
}

/// A first page of one user whose next page is `next` (in the body and as a Link).
fn first_page(next: &str) -> Resp {
    Resp::value(&json!({"users": [{"id": "1", "email": "a@x.com"}], "next": next}))
        .with_header("Link", &format!("<{next}>; rel=\"next\""))
}

/// The last page: one user, no next.
fn last_page() -> Resp {
    Resp::value(&json!({"users": [{"id": "2", "email": "b@x.com"}], "next": null}))
}

/// A source on `base` with credentials of `auth` kind, paginated by `kind`,
/// a secret header from `{{env.TRACE}}`, a file sink.
fn walking_job(base: &str, auth: &str, kind: &str) -> Job {
    let job = Job::source(base)
        .path("/p1")
        .records(".users")
        .header("X-Trace", "{{env.TRACE}}")
        .paginate(kind)
        .sink_file("agents.json");
    let job = if kind == "next_url" {
        job.pagination("next_url", ".next")
    } else {
        job
    };
    match auth {
        "bearer" => job.bearer("TOKEN"),
        "basic" => job
            .auth("kind", "basic")
            .auth("username_env", "USER")
            .auth("password_env", "TOKEN"),
        "header" => job
            .auth("kind", "header")
            .auth("name", "X-Api-Key")
            .auth("value_env", "TOKEN"),
        _ => unreachable!(),
    }
}

fn with_secrets(run: common::Run) -> Output {
    run.env("TOKEN", TOKEN)
        .env("USER", "walker")
        .env("TRACE", "trace-secret-77")
        .run()
}

const AGENTS: &str = r#"[{"id": "k1", "email": "a@x.com", "external_id": null}]"#;

#[test]
fn s01_a_next_page_on_another_origin_is_refused_and_gets_nothing() {
    for auth in ["bearer", "basic", "header"] {
        for kind in ["next_url", "link_header"] {
            let other = Server::start(|_| last_page());
            let next = format!("{}/p2", other.base);
            let src = Server::start(move |_| first_page(&next));
            let job = walking_job(&src.base, auth, kind).write();
            job.write("agents.json", AGENTS);
            let out = with_secrets(sync(&job));
            out.expect(1);
            assert!(
                out.stderr.contains(&src.base) && out.stderr.contains(&other.base),
                "{auth}/{kind}: both origins named:\n{}",
                out.stderr
            );
            assert!(
                out.stderr.contains("follow_other_origins"),
                "{}",
                out.stderr
            );
            assert_eq!(
                other.request_count(),
                0,
                "{auth}/{kind}: nothing sent there"
            );
            assert!(has_credentials(&src.requests()[0], "trace-secret-77"));
            assert_eq!(job.read("agents.json"), AGENTS, "nothing written");
        }
    }
}

#[test]
fn s02_with_follow_other_origins_the_other_origin_gets_no_credentials() {
    for auth in ["bearer", "basic", "header"] {
        for kind in ["next_url", "link_header"] {
            let other = Server::start(|_| last_page());
            let next = format!("{}/p2", other.base);
            let src = Server::start(move |_| first_page(&next));
            let job = walking_job(&src.base, auth, kind)
                .pagination("follow_other_origins", true)
                .write();
            let out = with_secrets(fetch(&job).output_json());
            out.expect(0);
            assert_eq!(out.json()["users"].as_array().unwrap().len(), 2);
            let got = other.requests();
            assert_eq!(got.len(), 1, "{auth}/{kind}");
            assert!(
                !has_credentials(&got[0], "trace-secret-77"),
                "{auth}/{kind}: credentials went to the other origin: {:?}",
                got[0].headers
            );
        }
    }
}

#[test]
fn s03_redirects_are_followed_within_the_origin_only() {
    for status in [301, 302, 303, 307, 308] {
        let other = Server::start(|_| last_page());
        let elsewhere = format!("{}/p1", other.base);
        let src = Server::start(move |_| {
            Resp::status(status, "text/plain", "moved").with_header("Location", &elsewhere)
        });
        let job = walking_job(&src.base, "header", "next_url").write();
        job.write("agents.json", AGENTS);
        let out = with_secrets(sync(&job));
        out.expect(1);
        assert!(
            out.stderr.contains("redirected") && out.stderr.contains(&other.base),
            "{}",
            out.stderr
        );
        assert_eq!(
            other.request_count(),
            0,
            "HTTP {status}: nothing sent there"
        );
        assert_eq!(job.read("agents.json"), AGENTS);
    }
    // Within the origin: followed, with the credentials.
    let src = Server::start(|req| match req.path() {
        "/p1" => Resp::status(307, "text/plain", "moved").with_header("Location", "/moved"),
        _ => last_page(),
    });
    let job = walking_job(&src.base, "bearer", "next_url").write();
    let out = with_secrets(fetch(&job).output_json());
    out.expect(0);
    let got = src.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].path(), "/moved");
    assert!(has_credentials(&got[1], "trace-secret-77"));
}

/// A SCIM directory for `agents` (id, email, external ID) that echoes the
/// request (its Authorization included) into the error of every write to
/// `fail` and of every write setting an external ID to "7".
fn echoing_directory(agents: &[(&str, &str, Option<&str>)], fail: &'static str) -> Server {
    let users: Vec<Value> = agents
        .iter()
        .map(|(id, email, ext)| {
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "id": id, "userName": email, "externalId": ext})
        })
        .collect();
    let users = std::sync::Mutex::new(users);
    Server::start(move |req| {
        let scim =
            |status: u16, v: Value| Resp::status(status, "application/scim+json", v.to_string());
        let mut users = users.lock().unwrap();
        if req.method == "GET" && req.path() == "/scim/v2/Users" {
            return scim(
                200,
                json!({"totalResults": users.len(), "startIndex": 1,
                       "itemsPerPage": users.len(), "Resources": *users}),
            );
        }
        let id = req.path().trim_start_matches("/scim/v2/Users/").to_owned();
        let Some(user) = users.iter_mut().find(|u| u["id"] == id) else {
            return scim(404, json!({"detail": "no such user", "echo": echo(req)}));
        };
        if req.method == "GET" {
            return scim(200, user.clone());
        }
        let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
        let value = body["Operations"][0]["value"].clone();
        if id == fail || value == "7" {
            return scim(400, json!({"detail": format!("denied {}", echo(req))}));
        }
        user["externalId"] = value;
        scim(200, user.clone())
    })
}

/// Every form a secret can take on the wire or in output.
fn forms(secret: &str) -> Vec<String> {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');
    let mut out = vec![
        secret.to_owned(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        utf8_percent_encode(secret, UNRESERVED).to_string(),
    ];
    // The part before the first `+`: a secret half printed is printed.
    out.push(secret.split('+').next().unwrap().to_owned());
    out
}

fn basic_forms(user: &str, pass: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pair = format!("{user}:{pass}");
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|e| e.encode(&pair))
        .collect()
}

#[track_caller]
fn assert_clean(what: &str, text: &str, banned: &[String]) {
    let lower = text.to_lowercase();
    for b in banned {
        assert!(
            !lower.contains(&b.to_lowercase()),
            "{what}: a form of a secret ({b:?}) was printed:\n{text}"
        );
    }
}

#[test]
fn s04_no_secret_is_printed_in_any_form_by_any_command() {
    let secrets = [
        ("SRC_TOKEN", TOKEN),
        ("QKEY", "qk/ey+val ue%9"),
        ("SINK_TOKEN", "sink/tok+en 3%x"),
        ("ACT_PASS", "pa/ss+wo rd%5"),
        ("TRACE", "tr/ace+hdr v%7"),
        ("CSECRET", "cs/se+cret z%3"),
    ];
    let mut banned: Vec<String> = secrets.iter().flat_map(|(_, s)| forms(s)).collect();
    banned.extend(basic_forms("actor", "pa/ss+wo rd%5"));
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    banned.extend(basic_forms(&enc("client-77"), &enc("cs/se+cret z%3")));

    // A source that echoes everything when a page fails, an action endpoint
    // that echoes everything always, a directory that echoes into its errors,
    // a token endpoint that echoes the form and the Basic header it got.
    let source = Server::start(|req| match req.path() {
        "/users" => Resp::value(&json!({"users": [
            {"id": "8", "email": "ann@x.com"}, {"id": "9", "email": "bo@x.com"}],
            "seen": echo(req)})),
        _ => Resp::status(500, "application/json", echo(req).to_string()),
    });
    let clock = Server::start(|req| {
        let status = if req.body.contains("fail") { 400 } else { 200 };
        Resp::status(status, "application/json", echo(req).to_string())
    });
    let tokens = Server::start(|req| Resp::status(401, "application/json", echo(req).to_string()));
    let dir = echoing_directory(
        &[("a1", "ann@x.com", Some("7")), ("a2", "bo@x.com", None)],
        "a2",
    );
    let config = |path: &str, source_auth: &str| {
        format!(
            r#"
[source]
base_url = "{src}"
path = "{path}"
query = {{ key = "{{{{env.QKEY}}}}", page = "{{{{page}}}}" }}
headers = {{ X-Trace = "{{{{env.TRACE}}}}" }}
records = ".users"
retries = 0
{source_auth}

[pagination]
kind = "page"
has_more = "false"

[sink]
kind = "scim"
base_url = "{dir}/scim/v2"
update = "patch"
retries = 0
auth = {{ kind = "bearer", token_env = "SINK_TOKEN" }}

[actions.punch]
base_url = "{clock}"
path = "/users/{{{{external_id}}}}/punch-clock"
query = {{ k = "{{{{env.QKEY}}}}" }}
headers = {{ X-Trace = "{{{{env.TRACE}}}}" }}
body = '{{"event": "{{{{var.event}}}}", "key": "{{{{env.QKEY}}}}"}}'
auth = {{ kind = "basic", username_env = "ACT_USER", password_env = "ACT_PASS" }}
"#,
            src = source.base,
            dir = dir.base,
            clock = clock.base,
        )
    };
    let bearer = r#"auth = { kind = "bearer", token_env = "SRC_TOKEN" }"#;
    let good = Job::raw(config("/users", bearer)).write();
    let failing = Job::raw(config("/fail", bearer)).write();
    let oauth = |client_auth: &str| {
        Job::raw(config(
            "/users",
            &format!(
                r#"auth = {{ kind = "oauth2", token_url = "{}/oauth/token", client_id_env = "CID", client_secret_env = "CSECRET", client_auth = "{client_auth}" }}"#,
                tokens.base
            ),
        ))
        .write()
    };
    let (oauth_body, oauth_basic) = (oauth("body"), oauth("basic"));
    let events = good.write(
        "events.jsonl",
        "{\"email\": \"ann@x.com\", \"vars\": {\"event\": \"in\"}}\n{\"email\": \"ann@x.com\", \"vars\": {\"event\": \"fail\"}}\n",
    );
    let events = events.to_str().unwrap();

    let run = |job: &JobDir, args: &[&str]| {
        let mut run = agentsync(args)
            .config(job)
            .env("ACT_USER", "actor")
            .env("CID", "client-77");
        for (name, value) in secrets {
            run = run.env(name, value);
        }
        run.run()
    };
    let mut outputs = Vec::new();
    let mut check = |what: &str, job: &JobDir, args: &[&str], code: i32| {
        let out = run(job, args);
        assert_eq!(out.code, code, "{what}\n{}\n{}", out.stdout, out.stderr);
        assert_clean(what, &out.stdout, &banned);
        assert_clean(what, &out.stderr, &banned);
        outputs.push(format!("{}{}", out.stdout, out.stderr));
        out
    };
    check("check", &good, &["check"], 0);
    check(
        "dry run",
        &good,
        &["-v", "--dry-run", "--output", "json"],
        0,
    );
    check("fetch", &good, &["fetch", "-v", "--output", "json"], 0);
    check("fetch failing", &failing, &["fetch", "-v"], 1);
    check("sync failing", &failing, &["-v"], 1);
    check("sync", &good, &["-v"], 3);
    check("sync json", &good, &["--output", "json"], 3);
    for extra in [&["-v"][..], &["--output", "json"][..]] {
        let mut args = vec![
            "action",
            "punch",
            "--agent",
            "ann@x.com",
            "--set",
            "event=in",
        ];
        args.extend_from_slice(extra);
        check("action", &good, &args, 0);
        let mut args = vec!["action", "punch", "--events", events];
        args.extend_from_slice(extra);
        check("action --events", &good, &args, 3);
    }
    check(
        "action failing",
        &good,
        &[
            "action",
            "punch",
            "--agent",
            "ann@x.com",
            "--set",
            "event=fail",
        ],
        1,
    );
    let history = check("history", &good, &["history", "--output", "json"], 0);
    let run_id = history.json()[0]["run"].as_str().unwrap().to_owned();
    check("revert", &good, &["revert", &run_id, "-v"], 3);
    check("oauth2 body", &oauth_body, &["fetch", "-v"], 1);
    check(
        "oauth2 basic",
        &oauth_basic,
        &["fetch", "-v", "--output", "json"],
        1,
    );

    // The files written: the journal.
    let journal_path = good.journal_path().expect("the runs made a journal");
    let journal = std::fs::read_to_string(journal_path).unwrap();
    assert_clean("journal", &journal, &banned);
    // The servers did echo secrets, and those were masked, not missed.
    let all = outputs.concat();
    assert!(
        all.contains("***"),
        "nothing was masked: the echoes never came back"
    );
    assert!(tokens.request_count() >= 2 && clock.request_count() >= 4);
    assert!(journal.contains("***"), "{journal}");
}

#[test]
fn s05_dot_segments_in_an_action_path_send_nothing() {
    for ext in ["..", ".", ""] {
        let clock = Server::start(|_| Resp::json("{}"));
        let job = Job::source(&clock.base)
            .bearer("TOKEN")
            .sink_file("agents.json")
            .action("punch", "path", "/users/{{external_id}}/punch-clock")
            .write();
        job.write(
            "agents.json",
            &json!([{"id": "k1", "email": "ann@x.com", "external_id": ext}]).to_string(),
        );
        let out = agentsync(&["action", "punch", "--agent", "ann@x.com"])
            .config(&job)
            .env("TOKEN", TOKEN)
            .run();
        if ext.is_empty() {
            // An empty external ID is no external ID.
            assert_ne!(out.code, 0);
        } else {
            out.expect(1);
            assert!(out.stderr.contains("ann@x.com"), "{}", out.stderr);
            assert!(out.stderr.contains("external_id"), "{}", out.stderr);
        }
        assert_eq!(clock.request_count(), 0, "{ext:?}: nothing sent");
    }
    // The agent's id in a path: the same rule.
    let clock = Server::start(|_| Resp::json("{}"));
    let job = Job::source(&clock.base)
        .sink_file("agents.json")
        .action("punch", "path", "/agents/{{agent_id}}/x")
        .write();
    job.write(
        "agents.json",
        &json!([{"id": "..", "email": "ann@x.com", "external_id": "5"}]).to_string(),
    );
    agentsync(&["action", "punch", "--agent", "ann@x.com"])
        .config(&job)
        .expect(1);
    assert_eq!(clock.request_count(), 0);
}

#[test]
fn s06_scim_agent_ids_that_are_dot_segments_are_never_written() {
    let src = Server::start(|_| {
        Resp::value(&json!({"users": [
            {"id": "1", "email": "dot@x.com"}, {"id": "2", "email": "dots@x.com"},
            {"id": "3", "email": "ok@x.com"}]}))
    });
    let dir = Scim::start(
        &[
            (".", "dot@x.com", None),
            ("..", "dots@x.com", None),
            ("k3", "ok@x.com", None),
        ],
        &[],
    );
    let job = Job::source(&src.base)
        .records(".users")
        .sink_scim(&dir.base())
        .sink("update", "patch")
        .write();
    let out = sync(&job).output_json().run();
    out.expect(3);
    let report = out.json();
    let failed: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["dot@x.com", "dots@x.com"], "{report}");
    // Only the directory's configuration, the listing and the one good agent
    // were asked for.
    for req in dir.server.requests() {
        assert!(
            req.method == "GET"
                && ["/scim/v2/ServiceProviderConfig", "/scim/v2/Users"].contains(&req.path())
                || req.path() == "/scim/v2/Users/k3",
            "{} {}",
            req.method,
            req.url
        );
    }
    assert_eq!(dir.external_id("k3").as_deref(), Some("3"));
}

/// A source of one page, syncing to `dir`, with `mapping` and one second for jq.
fn jq_job(src: &Server, dir: &Scim, mapping: &str) -> JobDir {
    let text = Job::source(&src.base)
        .records(".users")
        .mapping(mapping)
        .sink_scim(&dir.base())
        .text();
    Job::raw(text.replace("[mapping]\n", "[mapping]\ntimeout_secs = 1\n")).write()
}

#[test]
fn s07_jq_that_never_ends_or_floods_fails_the_run_before_any_write() {
    let src = Server::start(|_| {
        Resp::value(
            &json!({"users": [{"id": "1", "email": "a@x.com"}, {"id": "2", "email": "b@x.com"}]}),
        )
    });
    let dir = Scim::start(&[("k1", "a@x.com", None), ("k2", "b@x.com", None)], &[]);
    for (mapping, says) in [
        ("def f: f; f", "time budget"),
        (
            "last(range(infinite)) | {id: 1, email: \"a@x.com\"}",
            "time budget",
        ),
        (
            "range(2000) | {id: ., email: \"a@x.com\"}",
            "more than 1000 outputs",
        ),
        (
            "repeat(.) | {id: 1, email: .email}",
            "more than 1000 outputs",
        ),
    ] {
        let job = jq_job(&src, &dir, mapping);
        // `check` cannot tell: the expression compiles.
        agentsync(&["check"]).config(&job).expect(0);
        let out = sync(&job).run();
        out.expect(1);
        assert!(out.stderr.contains(mapping), "{mapping}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{mapping}: {}", out.stderr);
        assert!(dir.writes().is_empty(), "{mapping}: nothing written");
    }
    // Page-level values take one output.
    let job = Job::source(&src.base)
        .records(".users")
        .paginate("page")
        .query("page", "{{page}}")
        .total(".users | length, 5")
        .sink_scim(&dir.base())
        .write();
    sync(&job).expect(1);
    assert!(dir.writes().is_empty());
}
