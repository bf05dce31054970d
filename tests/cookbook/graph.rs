//! Microsoft Graph `GET /v1.0/users`, as learn.microsoft.com documents it:
//! an app-only token from the client credentials grant with the `.default`
//! scope, `$select` and `$top` (1 to 999), `{"value": […]}` pages linked by
//! an absolute `@odata.nextLink` with a `$skiptoken`, absent on the last page.
//! Quirk: a page may be empty and still carry `@odata.nextLink`.

use serde_json::{Value, json};

use super::common::{Req, Resp, Server};
use super::{Recipe, assert_same_users, form_field, json_status, sorted, token_answer};

pub const RECIPE: Recipe = Recipe {
    file: "microsoft-graph.toml",
    secrets: &[
        ("GRAPH_CLIENT_ID", "7f3c0a52-graph-client"),
        ("GRAPH_CLIENT_SECRET", "graph~secret.value"),
    ],
    beside: None,
};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImdyYXBoIn0.app-only";
const USERS: usize = 1200;

fn user(i: usize) -> Value {
    let id = format!("{i:08x}-5c1e-4d2a-9f00-{i:012x}");
    json!({
        "id": id,
        // Every 70th is a room or service account without a mailbox.
        "mail": if i % 70 == 3 { Value::Null } else { json!(format!("Agent.{i}@contoso.com")) },
        "userPrincipalName": format!("agent.{i}@contoso.onmicrosoft.com"),
        // Every 50th account is disabled.
        "accountEnabled": i % 50 != 7,
        "displayName": format!("Agent {i}"),
        "jobTitle": "Agent",
    })
}

fn error(status: u16, code: &str, message: &str) -> Resp {
    json_status(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn token(req: &Req) -> Resp {
    let field = |name| form_field(req, name).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return json_status(400, &json!({"error": "unsupported_grant_type"}));
    }
    if field("client_id") != RECIPE.secrets[0].1 || field("client_secret") != RECIPE.secrets[1].1 {
        return json_status(401, &json!({"error": "invalid_client"}));
    }
    if field("scope") != "https://graph.microsoft.com/.default" {
        return json_status(400, &json!({"error": "invalid_scope"}));
    }
    token_answer(TOKEN)
}

/// `/v1.0/users`: `$skiptoken` is `d{offset}` for a page of users, or
/// `e{offset}` for the empty page that comes before the one at `offset`.
fn users(base: &str, req: &Req) -> Resp {
    if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return error(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    let top: usize = match req.query("$top").map(|t| t.parse()) {
        None => 100,
        Some(Ok(n)) if (1..=999).contains(&n) => n,
        Some(_) => {
            return error(
                400,
                "Request_UnsupportedQuery",
                "Invalid page size specified. Must be between 1 and 999 inclusive.",
            );
        }
    };
    let (empty, offset) = match req.query("$skiptoken") {
        None => (false, 0),
        Some(t) => match (t.get(..1), t.get(1..).and_then(|n| n.parse::<usize>().ok())) {
            (Some("d"), Some(n)) => (false, n),
            (Some("e"), Some(n)) => (true, n),
            _ => return error(400, "Request_BadRequest", "Invalid $skiptoken."),
        },
    };
    let select = req.query("$select");
    let project = |u: Value| match &select {
        None => u,
        Some(fields) => Value::Object(
            fields
                .split(',')
                .filter_map(|f| Some((f.to_owned(), u.get(f)?.clone())))
                .collect(),
        ),
    };
    let page: Vec<Value> = if empty {
        Vec::new()
    } else {
        (offset..(offset + top).min(USERS))
            .map(user)
            .map(project)
            .collect()
    };
    // After the first page comes an empty one that still links onwards.
    let next = if empty {
        Some(format!("d{offset}"))
    } else if offset + top >= USERS {
        None
    } else if offset == 0 {
        Some(format!("e{}", offset + top))
    } else {
        Some(format!("d{}", offset + top))
    };
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "value": page,
    });
    if let Some(token) = next {
        // The next link repeats the request's other query options.
        let mut url = url::Url::parse(&format!("{base}/v1.0/users")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &select {
                q.append_pair("$select", s);
            }
            q.append_pair("$top", &top.to_string());
            q.append_pair("$skiptoken", &token);
        }
        body["@odata.nextLink"] = json!(url.as_str());
    }
    Resp::value(&body)
}

pub fn replica() -> Server {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = base.clone();
    let server = Server::start(move |req| match (req.method.as_str(), req.path()) {
        ("POST", "/contoso.onmicrosoft.com/oauth2/v2.0/token") => token(req),
        ("GET", "/v1.0/users") => users(seen.get().map_or("", String::as_str), req),
        _ => error(404, "Request_ResourceNotFound", "no such resource"),
    });
    base.set(server.base.clone()).unwrap();
    server
}

#[test]
fn graph_reads_every_page_past_an_empty_one() {
    let server = replica();
    let job = RECIPE.pointed_at(
        &format!("{}/v1.0", server.base),
        Some(&format!(
            "{}/contoso.onmicrosoft.com/oauth2/v2.0/token",
            server.base
        )),
    );
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["accountEnabled"] == true && !u["mail"].is_null())
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap().to_owned();
            (s("id"), s("mail"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let listing: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/v1.0/users")
        .collect();
    // The query options as the documentation writes them: `$` and `,` are
    // allowed in a query (RFC 3986) and sent as they are.
    assert!(
        listing[0]
            .url
            .ends_with("?$select=id,mail,userPrincipalName,accountEnabled&$top=999"),
        "{}",
        listing[0].url
    );
    let skiptokens: Vec<_> = listing.iter().map(|r| r.query("$skiptoken")).collect();
    // Page 1, the empty page, page 2: the empty page did not end the listing.
    assert_eq!(
        skiptokens,
        [None, Some("e999".to_owned()), Some("d999".to_owned())]
    );
}
