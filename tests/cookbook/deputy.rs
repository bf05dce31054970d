//! Deputy `POST /api/v1/resource/Employee/QUERY`, as developer.deputy.com
//! documents the Resource API: a bearer token, a JSON body with `search`,
//! `join`, `start` and `max`, at most 500 records an answer, the answer a bare
//! array of Employee objects (`Id`, `DisplayName`, `Active`, `Contact`), the
//! contact's fields only when `ContactObject` is joined. And a page that
//! fails in passing (503 with `Retry-After`): the POST only reads, so it may
//! be sent again.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, json_status, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "deputy.toml",
    secrets: &[("DEPUTY_TOKEN", "deputy-permanent-token-6f1e")],
    beside: None,
};

const EMPLOYEES: usize = 1234;

fn employee(i: usize, joined: bool) -> Value {
    let mut e = json!({
        "Id": 100 + i,
        "Company": 1,
        "FirstName": "Agent",
        "LastName": format!("N{i}"),
        "DisplayName": format!("Agent N{i}"),
        "Active": i % 25 != 11,
        "Contact": 9000 + i,
    });
    if joined {
        e["ContactObject"] = json!({
            "Id": 9000 + i,
            "Email": format!("agent.n{i}@acme.com"),
            "Phone1": null,
        });
    }
    e
}

fn error(status: u16, message: &str) -> Resp {
    json_status(
        status,
        &json!({"error": {"code": status, "message": message}}),
    )
}

pub fn replica() -> Server {
    let unavailable_once = std::sync::atomic::AtomicBool::new(true);
    Server::start(move |req| {
        if (req.method.as_str(), req.path()) != ("POST", "/api/v1/resource/Employee/QUERY") {
            return error(404, "Not found");
        }
        let expected = format!("Bearer {}", RECIPE.secrets[0].1);
        if req.header("authorization") != Some(expected.as_str()) {
            return error(401, "Access denied");
        }
        let Ok(query) = serde_json::from_str::<Value>(&req.body) else {
            return error(400, "The request body is not JSON");
        };
        let start = query["start"].as_u64().unwrap_or(0) as usize;
        if start == 500 && unavailable_once.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return error(503, "Service temporarily unavailable").with_header("Retry-After", "1");
        }
        // At most 500 records an answer, whatever `max` asks.
        let max = query["max"].as_u64().unwrap_or(500).min(500) as usize;
        let joined = query["join"]
            .as_array()
            .is_some_and(|j| j.iter().any(|o| o == "ContactObject"));
        let active_only = query["search"]
            .as_object()
            .into_iter()
            .flat_map(|s| s.values())
            .any(|c| c["field"] == "Active" && c["type"] == "eq" && c["data"] == true);
        let page: Vec<Value> = (0..EMPLOYEES)
            .map(|i| employee(i, joined))
            .filter(|e| !active_only || e["Active"] == true)
            .skip(start)
            .take(max)
            .collect();
        Resp::value(&Value::Array(page))
    })
}

#[test]
fn deputy_posts_the_query_page_by_page() {
    let server = replica();
    let job = RECIPE.pointed_at(&server.base, None);
    let expected: Vec<_> = (0..EMPLOYEES)
        .map(|i| employee(i, true))
        .filter(|e| e["Active"] == true)
        .map(|e| {
            let email = e["ContactObject"]["Email"].as_str().unwrap().to_owned();
            (e["Id"].to_string(), email)
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let starts: Vec<_> = server
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["start"].clone())
        .collect();
    // 1184 active employees: two full pages (the second asked again after
    // its 503) and a short last one.
    assert_eq!(starts, [json!(0), json!(500), json!(500), json!(1000)]);
}
