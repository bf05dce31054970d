//! Okta `GET /api/v1/users`, as developer.okta.com documents it: an API
//! token sent as `Authorization: SSWS <token>`, `limit` (at most 200) and a
//! `filter` on status, the page as a bare array, the next page in a
//! `Link: <…>; rel="next"` header (beside `rel="self"`) with an `after`
//! cursor, and the rate-limit headers on every answer (`X-Rate-Limit-Reset` in
//! UTC epoch seconds). Quirk: a used-up window is answered 429 with
//! `X-Rate-Limit-Reset` and no `Retry-After`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::common::{Req, Resp, Server};
use super::{Recipe, assert_same_users, json_status, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "okta.toml",
    secrets: &[("OKTA_API_TOKEN", "00aBcD-okta-api-token")],
    beside: None,
};

const USERS: usize = 450;

fn user(i: usize) -> Value {
    let status = match i % 40 {
        5 => "DEPROVISIONED",
        9 => "SUSPENDED",
        _ => "ACTIVE",
    };
    json!({
        "id": format!("00u{i:06}abcDEF0x7"),
        "status": status,
        "created": "2025-03-01T10:00:00.000Z",
        "profile": {
            "firstName": "Agent",
            "lastName": format!("N{i}"),
            "login": format!("agent{i}@acme.com"),
            "email": format!("agent{i}@acme.com"),
        },
        "_links": {"self": {"href": format!("https://acme.okta.com/api/v1/users/00u{i:06}")}},
    })
}

fn error(status: u16, code: &str, summary: &str) -> Resp {
    json_status(
        status,
        &json!({"errorCode": code, "errorSummary": summary, "errorCauses": []}),
    )
}

/// The rate-limit headers Okta sends on every answer.
fn rate_headers(resp: Resp, remaining: usize) -> Resp {
    let reset = epoch_seconds() + 60;
    resp.with_header("X-Rate-Limit-Limit", "600")
        .with_header("X-Rate-Limit-Remaining", &remaining.to_string())
        .with_header("X-Rate-Limit-Reset", &reset.to_string())
}

fn users(base: &str, req: &Req, served: usize) -> Resp {
    let expected = format!("SSWS {}", RECIPE.secrets[0].1);
    if req.header("authorization") != Some(expected.as_str()) {
        return error(401, "E0000011", "Invalid token provided");
    }
    let limit: usize = req
        .query("limit")
        .map_or(Ok(200), |l| l.parse())
        .unwrap_or(0);
    if !(1..=200).contains(&limit) {
        return error(400, "E0000001", "Api validation failed: limit");
    }
    let filter = req.query("filter");
    if filter
        .as_deref()
        .is_some_and(|f| f != r#"status eq "ACTIVE""#)
    {
        return error(400, "E0000031", "Invalid search criteria.");
    }
    let all: Vec<Value> = (0..USERS)
        .map(user)
        .filter(|u| filter.is_none() || u["status"] == "ACTIVE")
        .collect();
    let start = match req.query("after") {
        None => 0,
        Some(after) => match all.iter().position(|u| u["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => return error(400, "E0000031", "Invalid after cursor."),
        },
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let link = |after: Option<&str>| {
        let mut url = url::Url::parse(&format!("{base}/api/v1/users")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &limit.to_string());
            if let Some(f) = &filter {
                q.append_pair("filter", f);
            }
            if let Some(a) = after {
                q.append_pair("after", a);
            }
        }
        url.to_string()
    };
    let mut resp = Resp::value(&Value::Array(page.clone()))
        .with_header("Link", &format!("<{}>; rel=\"self\"", link(None)));
    if start + limit < all.len() {
        let last = page.last().unwrap()["id"].as_str().unwrap().to_owned();
        resp = resp.with_header("Link", &format!("<{}>; rel=\"next\"", link(Some(&last))));
    }
    rate_headers(resp, 600 - served)
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The replica; with `window`, the org's rate-limit window is used up after
/// that many requests and resets two seconds later: until then every request
/// is answered 429 with the reset time, as Okta does (no `Retry-After`).
pub fn replica(window: Option<usize>) -> Server {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = base.clone();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let reset_at = std::sync::Mutex::new(None::<u64>);
    let server = Server::start(move |req| {
        let served = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if let Some(window) = window.filter(|w| served > *w) {
            let mut reset_at = reset_at.lock().unwrap();
            let reset = *reset_at.get_or_insert(epoch_seconds() + 2);
            if epoch_seconds() < reset {
                return error(
                    429,
                    "E0000047",
                    "API call exceeded rate limit due to too many requests.",
                )
                .with_header("X-Rate-Limit-Limit", &window.to_string())
                .with_header("X-Rate-Limit-Remaining", "0")
                .with_header("X-Rate-Limit-Reset", &reset.to_string());
            }
        }
        match (req.method.as_str(), req.path()) {
            ("GET", "/api/v1/users") => users(seen.get().map_or("", String::as_str), req, served),
            _ => error(404, "E0000007", "Not found"),
        }
    });
    base.set(server.base.clone()).unwrap();
    server
}

fn active_users() -> Vec<(String, String)> {
    let active = (0..USERS).map(user).filter(|u| u["status"] == "ACTIVE");
    let pairs = active.map(|u| {
        let id = u["id"].as_str().unwrap().to_owned();
        (id, u["profile"]["email"].as_str().unwrap().to_owned())
    });
    sorted(pairs.collect())
}

#[test]
fn okta_waits_for_the_rate_limit_reset() {
    let server = replica(Some(1));
    let job = RECIPE.pointed_at(&server.base, None);
    assert_same_users(&RECIPE.fetch(&job), &active_users());
    // Three pages, and one 429 between the first two: then a wait until
    // the reset it named, no request in between.
    assert_eq!(server.request_count(), 4);
}

#[test]
fn okta_follows_the_link_header_with_the_ssws_token() {
    let server = replica(None);
    let job = RECIPE.pointed_at(&server.base, None);
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["status"] == "ACTIVE")
        .map(|u| {
            let id = u["id"].as_str().unwrap().to_owned();
            (id, u["profile"]["email"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    // 440 active users, 200 a page.
    assert_eq!(server.request_count(), 3);
}
