//! Salesforce `GET /services/data/vXX.X/query?q=SOQL`, as
//! developer.salesforce.com documents the REST API: a bearer token from the
//! client credentials flow (`/services/oauth2/token`), batches of up to 2,000
//! records as `{"totalSize", "done", "nextRecordsUrl", "records": […]}` with
//! `attributes` on each record. Quirk: `nextRecordsUrl` is relative to the
//! host (`/services/data/v62.0/query/01gD…-2000`), absent once `done`.

use serde_json::{Value, json};

use super::common::{Req, Resp, Server};
use super::{Recipe, assert_same_users, form_field, json_status, sorted};

pub const RECIPE: Recipe = Recipe {
    file: "salesforce.toml",
    secrets: &[
        ("SALESFORCE_CLIENT_ID", "3MVG9consumer.key"),
        ("SALESFORCE_CLIENT_SECRET", "sf-consumer-secret"),
    ],
    beside: None,
};

const TOKEN: &str = "00Dxx0000001gPL!AQ4AQFake.Access.Token";
const USERS: usize = 4500;
const BATCH: usize = 2000;
const LOCATOR: &str = "01gD0000002HU6KIAW";

fn user(i: usize) -> Value {
    let id = format!("005D{i:011}AAE");
    json!({
        "attributes": {"type": "User", "url": format!("/services/data/v62.0/sobjects/User/{id}")},
        "Id": id,
        "Email": format!("agent.n{i}@acme.com"),
        "IsActive": i % 30 != 8,
        "UserType": if i % 45 == 2 { "CsnOnly" } else { "Standard" },
    })
}

/// The records of the one query this org answers, fields as selected.
fn matching(soql: &str) -> Option<Vec<Value>> {
    let rest = soql.strip_prefix("SELECT Id, Email FROM User")?;
    let active = rest.contains("IsActive = true");
    let standard = rest.contains("UserType = 'Standard'");
    Some(
        (0..USERS)
            .map(user)
            .filter(|u| {
                (!active || u["IsActive"] == true) && (!standard || u["UserType"] == "Standard")
            })
            .map(|u| json!({"attributes": u["attributes"], "Id": u["Id"], "Email": u["Email"]}))
            .collect(),
    )
}

fn batch(records: &[Value], offset: usize) -> Resp {
    let end = (offset + BATCH).min(records.len());
    let mut body = json!({
        "totalSize": records.len(),
        "done": end == records.len(),
        "records": records[offset..end],
    });
    if end < records.len() {
        body["nextRecordsUrl"] = json!(format!("/services/data/v62.0/query/{LOCATOR}-{end}"));
    }
    Resp::value(&body)
}

fn error(status: u16, code: &str, message: &str) -> Resp {
    json_status(status, &json!([{"message": message, "errorCode": code}]))
}

fn token(req: &Req) -> Resp {
    let field = |name| form_field(req, name).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return json_status(400, &json!({"error": "unsupported_grant_type"}));
    }
    if field("client_id") != RECIPE.secrets[0].1 || field("client_secret") != RECIPE.secrets[1].1 {
        return json_status(
            400,
            &json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
        );
    }
    Resp::value(&json!({
        "access_token": TOKEN,
        "signature": "c2lnbmF0dXJl",
        "scope": "api",
        "instance_url": "https://acme.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAA",
        "token_type": "Bearer",
        "issued_at": "1764979200000",
    }))
}

pub fn replica() -> Server {
    Server::start(|req| {
        if (req.method.as_str(), req.path()) == ("POST", "/services/oauth2/token") {
            return token(req);
        }
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid");
        }
        // Query locators are stateless here: the query is the one this org answers.
        let all = || {
            matching("SELECT Id, Email FROM User WHERE IsActive = true AND UserType = 'Standard'")
                .unwrap()
        };
        match req.path() {
            "/services/data/v62.0/query" => match req.query("q").as_deref().and_then(matching) {
                Some(records) => batch(&records, 0),
                None => error(400, "MALFORMED_QUERY", "unexpected query"),
            },
            path => match path
                .strip_prefix(&format!("/services/data/v62.0/query/{LOCATOR}-"))
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(offset) if offset < all().len() => batch(&all(), offset),
                _ => error(404, "NOT_FOUND", "The requested resource does not exist"),
            },
        }
    })
}

#[test]
fn salesforce_follows_the_relative_next_records_url() {
    let server = replica();
    let job = RECIPE.pointed_at(
        &server.base,
        Some(&format!("{}/services/oauth2/token", server.base)),
    );
    let expected: Vec<_> = (0..USERS)
        .map(user)
        .filter(|u| u["IsActive"] == true && u["UserType"] == "Standard")
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap().to_owned();
            (s("Id"), s("Email"))
        })
        .collect();
    assert_same_users(&RECIPE.fetch(&job), &sorted(expected));
    let paths: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .filter(|p| p.starts_with("/services/data/"))
        .collect();
    assert_eq!(
        paths,
        [
            "/services/data/v62.0/query".to_owned(),
            format!("/services/data/v62.0/query/{LOCATOR}-2000"),
            format!("/services/data/v62.0/query/{LOCATOR}-4000"),
        ]
    );
}
