//! A SCIM 2.0 service provider's `GET /Users`, as RFC 7644 §3.4.2 defines it:
//! a bearer token, `startIndex` (from 1) and `count`, a ListResponse with
//! `totalResults`, `startIndex`, `itemsPerPage` and `Resources`, users with
//! `id`, `userName`, `emails[]` (`value`, `type`, `primary`) and `active`.
//! Quirk: the provider answers at most 50 users a page, fewer than asked.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "scim.toml",
    secrets: &[("SCIM_TOKEN", "scim-bearer-token-77")],
    beside: None,
};

const USERS: usize = 180;
const MAX_PAGE: usize = 50;

fn user(i: usize) -> Value {
    let id = format!("2819c223-7f76-453a-919d-{i:012}");
    let mut u = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id,
        "userName": format!("agent{i}@acme.com"),
        "active": i % 20 != 13,
        "meta": {"resourceType": "User"},
    });
    match i % 3 {
        // A work address that is the primary one, after a home address.
        0 => {
            u["emails"] = json!([
                {"value": format!("home{i}@example.net"), "type": "home"},
                {"value": format!("Agent.{i}@acme.com"), "type": "work", "primary": true},
            ])
        }
        // One address, not marked primary: userName is the email.
        1 => u["emails"] = json!([{"value": format!("other{i}@acme.com"), "type": "other"}]),
        // No emails at all.
        _ => {}
    }
    u
}

fn email_of(u: &Value) -> String {
    u["emails"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["primary"] == true))
        .map_or(&u["userName"], |e| &e["value"])
        .as_str()
        .unwrap()
        .to_owned()
}

fn error(status: u16, detail: &str) -> Resp {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    });
    Resp::status(status, "application/scim+json", body.to_string())
}

pub fn replica() -> Server {
    Server::start(|req| {
        if req.path() != "/scim/v2/Users" {
            return error(404, "no such endpoint");
        }
        if req.header("authorization") != Some(&format!("Bearer {}", RECIPE.secrets[0].1)) {
            return error(401, "authorization failure");
        }
        let number = |name, default| {
            req.query(name)
                .map_or(Some(default), |v| v.parse::<usize>().ok())
        };
        let (Some(start), Some(count)) = (number("startIndex", 1), number("count", MAX_PAGE))
        else {
            return error(400, "startIndex and count are integers");
        };
        // RFC 7644: a startIndex below 1 is taken as 1.
        let start = start.max(1);
        let page: Vec<Value> = (0..USERS)
            .skip(start - 1)
            .take(count.min(MAX_PAGE))
            .map(user)
            .collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": USERS,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        });
        Resp::status(200, "application/scim+json", body.to_string())
    })
}

#[test]
fn scim_steps_by_what_each_capped_page_held() {
    let server = replica();
    let job = RECIPE.pointed_at(&format!("{}/scim/v2", server.base), None);
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["active"] == true)
        .map(|u| (u["id"].as_str().unwrap().to_owned(), email_of(&u)))
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let mut starts: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.query("startIndex").unwrap().parse().unwrap())
        .collect();
    // Pages after the first may be read at once: compare the set.
    starts.sort();
    // 100 asked, 50 answered each time: no user between the pages is lost.
    assert_eq!(starts, [1, 51, 101, 151]);
}
