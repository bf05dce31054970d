//! Hostile values bound for URL paths: identifiers from the directory or the
//! source that would leave their one path segment once the URL parser has read
//! them. Every server listens on 127.0.0.1 and is started and stopped by its
//! test.

mod common;

use common::{Job, Resp, Scim, Server, agentsync, sync};
use serde_json::json;

/// Ids that are `.` or `..` once the URL parser drops tabs and line breaks.
const HOSTILE_IDS: [&str; 5] = ["\t..", "..\n", ".\r.", ".\t", "\n"];

#[test]
fn control_characters_around_dots_in_scim_agent_ids_write_nothing() {
    for update in ["patch", "put"] {
        let mut users: Vec<_> = HOSTILE_IDS
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"id": format!("{i}"), "email": format!("bad{i}@x.com")}))
            .collect();
        users.push(json!({"id": "10", "email": "ok@x.com"}));
        users.push(json!({"id": "11", "email": "fine@x.com"}));
        let src = Server::start(move |_| Resp::value(&json!({ "users": users })));
        let emails: Vec<String> = (0..HOSTILE_IDS.len())
            .map(|i| format!("bad{i}@x.com"))
            .collect();
        let mut agents: Vec<(&str, &str, Option<&str>)> = HOSTILE_IDS
            .iter()
            .zip(&emails)
            .map(|(id, email)| (*id, email.as_str(), None))
            .collect();
        agents.push(("k10", "ok@x.com", None));
        agents.push(("k11", "fine@x.com", None));
        let dir = Scim::start(&agents, &[]);
        let job = Job::source(&src.base)
            .records(".users")
            .sink_scim(&dir.base())
            .sink("update", update)
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
        assert_eq!(failed, emails, "{update}: {report}");
        assert!(
            out.stdout.contains("control character"),
            "{update}: {report}"
        );
        // Only the directory's configuration, the listing and the good
        // agents were asked for: no write to `/scim/v2/` or `/scim/v2/Users/`.
        for req in dir.server.requests() {
            let good = ["/scim/v2/Users/k10", "/scim/v2/Users/k11"].contains(&req.path());
            let read = req.method == "GET"
                && ["/scim/v2/ServiceProviderConfig", "/scim/v2/Users"].contains(&req.path());
            assert!(good || read, "{update}: {} {:?}", req.method, req.url);
        }
        assert_eq!(dir.external_id("k10").as_deref(), Some("10"), "{update}");
        assert_eq!(dir.external_id("k11").as_deref(), Some("11"), "{update}");
        assert_eq!(dir.writes().len(), 2, "{update}");
    }
}

#[test]
fn control_characters_around_dots_in_an_action_path_send_nothing() {
    for ext in HOSTILE_IDS {
        let clock = Server::start(|_| Resp::json("{}"));
        let job = Job::source(&clock.base)
            .sink_file("agents.json")
            .action("punch", "path", "/users/{{external_id}}/punch-clock")
            .write();
        job.write(
            "agents.json",
            &json!([{"id": "k1", "email": "ann@x.com", "external_id": ext}]).to_string(),
        );
        let out = agentsync(&["action", "punch", "--agent", "ann@x.com"])
            .config(&job)
            .run();
        assert_ne!(out.code, 0, "{ext:?}: {}", out.stderr);
        assert_eq!(clock.request_count(), 0, "{ext:?}: nothing sent");
    }
}
