//! Zendesk `GET /api/v2/users.json`, as developer.zendesk.com documents it:
//! API-token auth (HTTP Basic, `{email}/token` and the token), cursor
//! pagination switched on by `page[size]` (at most 100), pages of
//! `{"users": […], "meta": {"has_more", "after_cursor", "before_cursor"},
//! "links": {"next", "prev"}}` with `page[after]` in the next link. Quirk: the
//! last page still carries a `links.next`; `meta.has_more` is the end marker.

use serde_json::{Value, json};

use super::common::{Resp, Server};
use super::{Recipe, assert_same_users, basic, json_status, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "zendesk.toml",
    secrets: &[
        ("ZENDESK_USER", "ops@acme.com/token"),
        ("ZENDESK_API_TOKEN", "zd-api-token-9a8b7c"),
    ],
    beside: None,
};

const USERS: usize = 260;

fn user(i: usize) -> Value {
    let role = match i % 10 {
        0..=5 => "agent",
        6 => "admin",
        _ => "end-user",
    };
    json!({
        "id": 36_000_000_000_u64 + i as u64,
        "name": format!("Agent N{i}"),
        "email": format!("agent.n{i}@acme.com"),
        "role": role,
        "active": i % 31 != 3,
        "suspended": false,
    })
}

/// Cursors are opaque to the client: the position, disguised.
fn cursor(position: usize) -> String {
    format!("eyJvIjoiaWQiLCJ2IjoiaVFBQUFBQUFBQUE9In0{position:05}")
}

fn position(cursor: &str) -> Option<usize> {
    cursor
        .strip_prefix("eyJvIjoiaWQiLCJ2IjoiaVFBQUFBQUFBQUE9In0")?
        .parse()
        .ok()
}

pub fn replica() -> Server {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = base.clone();
    let server = Server::start(move |req| {
        if req.path() != "/api/v2/users.json" {
            return json_status(404, &json!({"error": "InvalidEndpoint"}));
        }
        let auth = basic(RECIPE.secrets[0].1, RECIPE.secrets[1].1);
        if req.header("authorization") != Some(auth.as_str()) {
            return json_status(401, &json!({"error": "Couldn't authenticate you"}));
        }
        let Some(size) = req
            .query("page[size]")
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return json_status(
                400,
                &json!({"error": "offset pagination is not served here"}),
            );
        };
        if !(1..=100).contains(&size) {
            return json_status(400, &json!({"error": "InvalidPaginationParameter"}));
        }
        let start = match req.query("page[after]") {
            None => 0,
            Some(c) => match position(&c) {
                Some(p) => p,
                None => return json_status(400, &json!({"error": "InvalidPaginationParameter"})),
            },
        };
        let end = (start + size).min(USERS);
        let users: Vec<Value> = (start..end).map(user).collect();
        let base = seen.get().map_or("", String::as_str);
        let link = |param: &str, c: &str| {
            let mut url = url::Url::parse(&format!("{base}/api/v2/users.json")).unwrap();
            url.query_pairs_mut()
                .append_pair("page[size]", &size.to_string())
                .append_pair(param, c);
            url.to_string()
        };
        Resp::value(&json!({
            "users": users,
            "meta": {
                "has_more": end < USERS,
                "after_cursor": cursor(end),
                "before_cursor": cursor(start),
            },
            // Present on the last page too.
            "links": {
                "next": link("page[after]", &cursor(end)),
                "prev": link("page[before]", &cursor(start)),
            },
        }))
    });
    base.set(server.base.clone()).unwrap();
    server
}

#[test]
fn zendesk_follows_the_cursor_until_has_more_is_false() {
    let server = replica();
    let job = RECIPE.pointed_at(&server.base, None);
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["role"] != "end-user" && u["active"] == true)
        .map(|u| (u["id"].to_string(), u["email"].as_str().unwrap().to_owned()))
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    // Three pages of 100, 100 and 60: the last page's next link is not followed.
    assert_eq!(server.request_count(), 3);
}
