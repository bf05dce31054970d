//! Google Workspace Admin SDK Directory `GET /admin/directory/v1/users`, as
//! developers.google.com documents it: a token from the JWT bearer grant,
//! whose RS256 assertion a service account signs (`iss` its client email,
//! `scope`, `aud` the token URI, `sub` the admin it acts as, at most an hour
//! long); `customer=my_customer`, `maxResults` (1 to 500) and `pageToken`;
//! pages of `{"kind", "users": […], "nextPageToken"}` with `id`,
//! `primaryEmail`, `suspended`, `archived`. Quirk: a token asked without `sub`
//! is granted, but the Directory API refuses it with 403.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::common::{Req, Resp, Server, jwt};
use super::{Recipe, assert_same_users, form_field, json_status, sorted, token_answer};

pub const RECIPE: Recipe = Recipe {
    file: "google-workspace.toml",
    secrets: &[],
    beside: Some(|dir: &Path| {
        write_key(dir, "https://oauth2.googleapis.com/token");
    }),
};

const CLIENT_EMAIL: &str = "agentsync@acme-directory.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
const ADMIN: &str = "admin@acme.com";
const DELEGATED: &str = "ya29.delegated-token";
const UNDELEGATED: &str = "ya29.service-account-only";
const USERS: usize = 1234;

/// A service-account key file as the Cloud console downloads it.
fn write_key(dir: &Path, token_uri: &str) {
    let key = json!({
        "type": "service_account",
        "project_id": "acme-directory",
        "private_key_id": "4f1b2c3d4e5f60718293a4b5c6d7e8f901234567",
        "private_key": jwt::private_key_pem(),
        "client_email": CLIENT_EMAIL,
        "client_id": "104857600000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    std::fs::write(dir.join("google-service-account.json"), key.to_string()).unwrap();
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `oauth2.googleapis.com/token`.
fn token(req: &Req, token_uri: &str, public_key: &[u8]) -> Resp {
    let invalid = |why: &str| {
        json_status(
            400,
            &json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if form_field(req, "grant_type").as_deref()
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return json_status(400, &json!({"error": "unsupported_grant_type"}));
    }
    let (header, claims, verified) = jwt::decode(
        &form_field(req, "assertion").unwrap_or_default(),
        public_key,
    );
    if !verified || header.is_null() || claims.is_null() {
        return invalid("Invalid JWT Signature.");
    }
    let t = now();
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    if header["alg"] != "RS256" || claims["iss"] != CLIENT_EMAIL || claims["aud"] != token_uri {
        return invalid("Invalid JWT: iss or aud");
    }
    if iat > t + 60 || exp <= t || exp > iat + 3600 {
        return invalid(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    if claims["scope"] != SCOPE {
        return json_status(400, &json!({"error": "invalid_scope"}));
    }
    match claims.get("sub") {
        None => token_answer(UNDELEGATED),
        Some(sub) if sub == ADMIN => token_answer(DELEGATED),
        Some(_) => json_status(401, &json!({"error": "unauthorized_client"})),
    }
}

fn user(i: usize) -> Value {
    json!({
        "kind": "admin#directory#user",
        "id": format!("1{:020}", 7_000_000_000_u64 + i as u64 * 104_729),
        "primaryEmail": format!("agent.n{i}@acme.com"),
        "name": {"givenName": "Agent", "familyName": format!("N{i}"), "fullName": format!("Agent N{i}")},
        "isAdmin": false,
        "suspended": i % 60 == 21,
        "archived": i % 97 == 40,
    })
}

fn api_error(status: u16, message: &str) -> Resp {
    json_status(
        status,
        &json!({"error": {"code": status, "message": message, "errors": [{"message": message}]}}),
    )
}

/// `admin.googleapis.com`: `pageToken` is the offset, disguised.
fn users(req: &Req) -> Resp {
    match req.header("authorization") {
        Some(a) if a == format!("Bearer {DELEGATED}") => {}
        Some(a) if a == format!("Bearer {UNDELEGATED}") => {
            return api_error(403, "Not Authorized to access this resource/api");
        }
        _ => return api_error(401, "Login Required."),
    }
    if req.query("customer").as_deref() != Some("my_customer") {
        return api_error(400, "Bad Request");
    }
    let max: usize = req
        .query("maxResults")
        .map_or(Some(100), |m| m.parse().ok())
        .unwrap_or(0);
    if !(1..=500).contains(&max) {
        return api_error(400, "Invalid Input: maxResults");
    }
    let start = match req.query("pageToken") {
        None => 0,
        Some(t) => match t
            .strip_prefix("Q0FFU")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return api_error(400, "Invalid Input: pageToken"),
        },
    };
    let end = (start + max).min(USERS);
    let mut body = json!({
        "kind": "admin#directory#users",
        "etag": "\"sKcrIxw7AkEsZQB3-jF6nIG6sHDk\"",
        "users": (start..end).map(user).collect::<Vec<_>>(),
    });
    if end < USERS {
        body["nextPageToken"] = json!(format!("Q0FFU{end}"));
    }
    Resp::value(&body)
}

/// One server for both hosts: `/token` and the Directory API.
pub fn replica() -> Server {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = base.clone();
    let public = jwt::public_key();
    let server = Server::start(move |req| match (req.method.as_str(), req.path()) {
        ("POST", "/token") => {
            let token_uri = format!("{}/token", seen.get().map_or("", String::as_str));
            token(req, &token_uri, &public)
        }
        ("GET", "/admin/directory/v1/users") => users(req),
        _ => api_error(404, "Not Found"),
    });
    base.set(server.base.clone()).unwrap();
    server
}

fn job(server: &Server, text: &str) -> super::common::JobDir {
    let text = super::with_value(
        text,
        "base_url",
        &format!("{}/admin/directory/v1", server.base),
    );
    let job = super::common::Job::raw(text).write();
    write_key(job.dir.path(), &format!("{}/token", server.base));
    job
}

#[test]
fn google_signs_an_assertion_for_the_admin_and_follows_the_page_tokens() {
    let server = replica();
    // Only base_url changes; the token URL is the key file's token_uri.
    let job = job(&server, &super::shipped(RECIPE.file));
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["suspended"] == false && u["archived"] == false)
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap().to_owned();
            (s("id"), s("primaryEmail"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let tokens: Vec<_> = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/admin/directory/v1/users")
        .map(|r| r.query("pageToken"))
        .collect();
    // No pageToken at all on the first page.
    assert_eq!(
        tokens,
        [
            None,
            Some("Q0FFU500".to_owned()),
            Some("Q0FFU1000".to_owned())
        ]
    );
}

#[test]
fn google_without_a_subject_gets_a_token_the_directory_refuses() {
    let server = replica();
    let text = super::shipped(RECIPE.file);
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("subject = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let out = RECIPE.run(&["fetch"]).config(&job(&server, &without)).run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("403"), "{}", out.stderr);
}
