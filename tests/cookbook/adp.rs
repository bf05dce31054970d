//! ADP Workforce Now `GET /hr/v2/workers`, as developers.adp.com documents
//! it: mutual TLS with the certificate ADP signed on the token request
//! (`accounts.adp.com/auth/oauth/v2/token`, client credentials) and on every
//! API call (`api.adp.com`), OData `$top` (at most 100), `$skip` and
//! `$filter`, `{"workers": […]}` with `associateOID`, `workerID.idValue`,
//! `person.legalName`, `businessCommunication.emails[].emailUri`. Quirk: a
//! `$skip` past the last worker is answered `204 No Content`.

use std::path::Path;

use serde_json::{Value, json};

use super::common::tls::{Pki, TlsServer};
use super::common::{Req, Resp};
use super::{Recipe, assert_same_users, form_field, json_status, sorted, token_answer};

pub const RECIPE: Recipe = Recipe {
    file: "adp-workforce-now.toml",
    secrets: &[
        ("ADP_CLIENT_ID", "adp-data-connector-client"),
        ("ADP_CLIENT_SECRET", "adp-data-connector-secret"),
    ],
    beside: Some(client_certificate),
};

/// A certificate and key where the config names them.
fn client_certificate(dir: &Path) {
    let pki = Pki::for_client("acme data connector");
    std::fs::write(dir.join("adp-client.pem"), &pki.client_cert_pem).unwrap();
    std::fs::write(dir.join("adp-client.key"), &pki.client_key_pem).unwrap();
}

const TOKEN: &str = "adp-bearer-2f7c9e";
/// A multiple of the page size: the 204 is the only end marker.
const WORKERS: usize = 320;
const ACTIVE_FILTER: &str = "workers/workAssignments/assignmentStatus/statusCode/codeValue eq 'A'";

fn worker(i: usize) -> Value {
    let status = if i % 16 == 5 { "T" } else { "A" };
    let mut w = json!({
        "associateOID": format!("G3{:014X}", 0x5EED_0000_u64 + i as u64 * 7919),
        "workerID": {"idValue": format!("AC{i:05}")},
        "person": {"legalName": {"givenName": "Agent", "familyName1": format!("N{i}"), "formattedName": format!("N{i}, Agent")}},
        "workAssignments": [{"assignmentStatus": {"statusCode": {"codeValue": status}}}],
    });
    if i % 50 != 9 {
        w["businessCommunication"] =
            json!({"emails": [{"emailUri": format!("agent.n{i}@acme.com")}]});
    }
    w
}

fn active() -> Vec<Value> {
    (0..WORKERS)
        .map(worker)
        .filter(|w| w["workAssignments"][0]["assignmentStatus"]["statusCode"]["codeValue"] == "A")
        .collect()
}

fn error(status: u16, message: &str) -> Resp {
    json_status(
        status,
        &json!({"confirmMessage": {"resourceMessages": [{"processMessages": [{"userMessage": {"messageTxt": message}}]}]}}),
    )
}

/// `accounts.adp.com`: client credentials in the body or as HTTP Basic.
fn token(req: &Req) -> Resp {
    if (req.method.as_str(), req.path()) != ("POST", "/auth/oauth/v2/token") {
        return error(404, "not found");
    }
    let (id, secret) = (RECIPE.secrets[0].1, RECIPE.secrets[1].1);
    let in_body = form_field(req, "client_id").as_deref() == Some(id)
        && form_field(req, "client_secret").as_deref() == Some(secret);
    let in_header = req.header("authorization") == Some(&super::basic(id, secret));
    if form_field(req, "grant_type").as_deref() != Some("client_credentials") {
        return json_status(400, &json!({"error": "unsupported_grant_type"}));
    }
    if !(in_body || in_header) {
        return json_status(401, &json!({"error": "invalid_client"}));
    }
    token_answer(TOKEN)
}

/// `api.adp.com`.
fn workers(req: &Req) -> Resp {
    if (req.method.as_str(), req.path()) != ("GET", "/hr/v2/workers") {
        return error(404, "not found");
    }
    if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return error(401, "Invalid or expired token");
    }
    let number = |name, default| {
        req.query(name)
            .map_or(Some(default), |v| v.parse::<usize>().ok())
    };
    let (Some(top), Some(skip)) = (number("$top", 50), number("$skip", 0)) else {
        return error(400, "$top and $skip are numbers");
    };
    if !(1..=100).contains(&top) {
        return error(400, "$top must be between 1 and 100");
    }
    let all: Vec<Value> = match req.query("$filter").as_deref() {
        None => (0..WORKERS).map(worker).collect(),
        Some(ACTIVE_FILTER) => active(),
        Some(_) => return error(400, "unsupported $filter"),
    };
    if skip >= all.len() {
        return Resp {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        };
    }
    let page: Vec<Value> = all.into_iter().skip(skip).take(top).collect();
    Resp::value(&json!({"workers": page}))
}

#[test]
fn adp_uses_the_client_certificate_everywhere_and_ends_on_204() {
    let pki = Pki::for_client("acme data connector");
    let accounts = TlsServer::mutual_http(&pki, token);
    let api = TlsServer::mutual_http(&pki, workers);
    let job = RECIPE.pointed_at(
        &api.base(),
        Some(&format!("{}/auth/oauth/v2/token", accounts.base())),
    );
    job.write("adp-client.pem", &pki.client_cert_pem);
    job.write("adp-client.key", &pki.client_key_pem);
    // The replica's CA is trusted as a private CA would be, through the
    // environment: the config is the shipped one.
    let ca = job.write("replica-ca.pem", &pki.ca_pem);
    let expected: Vec<_> = active()
        .into_iter()
        .filter(|w| w.get("businessCommunication").is_some())
        .map(|w| {
            let email = w["businessCommunication"]["emails"][0]["emailUri"]
                .as_str()
                .unwrap()
                .to_owned();
            (w["associateOID"].as_str().unwrap().to_owned(), email)
        })
        .collect();
    let got = RECIPE.fetch_with(&job, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    assert_same_users(&got, &sorted(expected));
    assert_eq!(accounts.requests().len(), 1);
    let skips: Vec<_> = api
        .requests()
        .iter()
        .map(|r| r.query("$skip").unwrap())
        .collect();
    // 300 active workers: three full pages, then the 204.
    assert_eq!(skips, ["0", "100", "200", "300"]);
}

#[test]
fn adp_without_the_client_certificate_is_refused_at_the_handshake() {
    let pki = Pki::for_client("acme data connector");
    let accounts = TlsServer::mutual_http(&pki, token);
    let api = TlsServer::mutual_http(&pki, workers);
    let text = super::with_value(
        &super::with_value(&super::shipped(RECIPE.file), "base_url", &api.base()),
        "token_url",
        &format!("{}/auth/oauth/v2/token", accounts.base()),
    );
    // The same job with a certificate the replica's CA never signed.
    let job = super::common::Job::raw(text).write();
    let stranger = Pki::for_client("someone else");
    job.write("adp-client.pem", &stranger.client_cert_pem);
    job.write("adp-client.key", &stranger.client_key_pem);
    let ca = job.write("replica-ca.pem", &pki.ca_pem);
    let out = RECIPE
        .run(&["fetch"])
        .config(&job)
        .env("SSL_CERT_FILE", ca.to_str().unwrap())
        .args(&["--output", "json"])
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(accounts.requests().is_empty() && api.requests().is_empty());
}
