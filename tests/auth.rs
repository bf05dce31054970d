//! How agentsync proves who it is to systems that ask for more than a token:
//! a client certificate (mutual TLS, on the API and its token endpoint) and
//! the OAuth2 JWT bearer grant (RFC 7523), against servers made here that
//! check them.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::jwt;
use common::tls::{Pki, TlsServer};
use common::{Job, Req, Resp, Server, agentsync, fetch, fixture};

const USERS: &str = r#"{"users": [{"id": "7", "email": "a@x.com"}]}"#;

/// The API of a system like ADP's: a token endpoint and the users, both
/// behind mutual TLS; the users only with the token.
fn adp_like(pki: &Pki) -> TlsServer {
    TlsServer::mutual(
        pki,
        Box::new(|head: &str, body: &str| {
            let line = head.lines().next().unwrap_or("");
            if line.starts_with("POST /auth/oauth/v2/token ") {
                if body.contains("grant_type=client_credentials") {
                    return (
                        200,
                        r#"{"access_token": "adp-tok-1", "expires_in": 3600}"#.into(),
                    );
                }
                return (400, r#"{"error": "unsupported_grant_type"}"#.into());
            }
            if line.starts_with("GET /users ") {
                if head.contains("Bearer adp-tok-1") {
                    return (200, USERS.into());
                }
                return (401, r#"{"error": "no token"}"#.into());
            }
            (404, "{}".into())
        }),
    )
}

/// A job reading `server`'s users with the token request, trusting the test
/// CA; the client certificate keys are added by the test.
fn adp_job(server: &TlsServer) -> Job {
    Job::source(&server.base())
        .path("/users")
        .records(".users")
        .set("retries", 0)
        .set("ca_file", "ca.pem")
        .auth("kind", "oauth2")
        .auth(
            "token_url",
            format!("{}/auth/oauth/v2/token", server.base()),
        )
        .auth("client_id_env", "ADP_ID")
        .auth("client_secret_env", "ADP_SECRET")
}

fn with_secrets(run: common::Run) -> common::Run {
    run.env("ADP_ID", "adp-client")
        .env("ADP_SECRET", "adp-secret-1")
}

#[test]
fn mutual_tls_shows_the_client_certificate_to_the_api_and_its_token_endpoint() {
    let pki = Pki::new();
    let server = adp_like(&pki);
    let dir = adp_job(&server)
        .set("client_cert_file", "certs/client.pem")
        .set("client_key_file", "certs/client.key")
        .write();
    dir.write("ca.pem", &pki.ca_pem);
    std::fs::create_dir(dir.path("certs")).unwrap();
    dir.write("certs/client.pem", &pki.client_cert_pem);
    dir.write("certs/client.key", &pki.client_key_pem);
    let out = with_secrets(fetch(&dir)).output_json().expect(0);
    assert_eq!(
        out.json()["users"],
        serde_json::json!([{"id": "7", "email": "a@x.com"}])
    );
    let served = server.served();
    assert!(
        served[0].starts_with("POST /auth/oauth/v2/token"),
        "{served:?}"
    );
    assert!(served[1].starts_with("GET /users"), "{served:?}");
}

#[test]
fn mutual_tls_without_a_client_certificate_is_refused_by_the_server_and_the_fix_named() {
    let pki = Pki::new();
    let server = adp_like(&pki);
    let dir = adp_job(&server).write();
    dir.write("ca.pem", &pki.ca_pem);
    let out = with_secrets(fetch(&dir)).run();
    out.expect(1);
    // TLS 1.3 refuses after the client's last handshake message: the client
    // reads the server's alert (then the fix is named), or finds the
    // connection closed while it was still sending.
    if out.stderr.contains("CertificateRequired") {
        assert!(out.stderr.contains("client_cert_file"), "{}", out.stderr);
    } else {
        assert!(
            out.stderr.contains("Broken pipe") || out.stderr.contains("reset"),
            "{}",
            out.stderr
        );
    }
    assert!(server.served().is_empty(), "{:?}", server.served());
}

#[test]
fn client_certificate_files_that_cannot_work_are_config_errors_naming_the_file() {
    let pki = Pki::new();
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "missing.pem",
            "client.key",
            "client_cert_file",
            "cannot read",
        ),
        ("junk.pem", "client.key", "client_cert_file", "is not PEM"),
        (
            "client.key",
            "client.key",
            "client_cert_file",
            "holds no certificate",
        ),
        (
            "client.pem",
            "client.pem",
            "client_key_file",
            "holds no private key",
        ),
        ("client.pem", "junk.pem", "client_key_file", "is not PEM"),
        (
            "client.pem",
            "other.key",
            "client_key_file",
            "does not match the certificate",
        ),
    ];
    for (cert, key, named, what) in cases {
        let dir = Job::source("https://127.0.0.1:9")
            .path("/users")
            .records(".users")
            .set("client_cert_file", cert)
            .set("client_key_file", key)
            .write();
        dir.write("client.pem", &pki.client_cert_pem);
        dir.write("client.key", &pki.client_key_pem);
        dir.write("other.key", &pki.other_key_pem);
        dir.write("junk.pem", "this is not a certificate\n");
        let out = agentsync(&["check"]).config(&dir).expect(2);
        let file = if named == "client_cert_file" {
            cert
        } else {
            key
        };
        assert!(
            out.stderr.contains(&format!("[source] {named}:")) && out.stderr.contains(file),
            "{cert} + {key}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(what), "{cert} + {key}: {}", out.stderr);
        if what.starts_with("does not match") {
            assert!(out.stderr.contains("client.pem"), "{}", out.stderr);
        }
        // No line of a key is ever shown.
        for line in pki
            .client_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!out.stderr.contains(line), "{}", out.stderr);
        }
    }
    // The same keys on the sink and on an action with its own base_url.
    for (table, set) in [
        (
            "[sink]",
            (|job: Job, key: &str, value: &str| job.sink(key, value)) as fn(Job, &str, &str) -> Job,
        ),
        ("[actions.punch]", |job: Job, key: &str, value: &str| {
            job.action("punch", key, value)
        }),
    ] {
        let mut job = Job::source("https://127.0.0.1:9")
            .path("/users")
            .records(".users")
            .sink_scim("https://127.0.0.1:9/scim/v2")
            .action("punch", "path", "/p")
            .action("punch", "base_url", "https://127.0.0.1:9");
        job = set(job, "client_cert_file", "client.pem");
        job = set(job, "client_key_file", "other.key");
        let dir = job.write();
        dir.write("client.pem", &pki.client_cert_pem);
        dir.write("other.key", &pki.other_key_pem);
        let out = agentsync(&["check"]).config(&dir).expect(2);
        assert!(
            out.stderr.contains(&format!("{table} client_key_file:"))
                && out.stderr.contains("does not match the certificate"),
            "{table}: {}",
            out.stderr
        );
    }
    // One of the two alone is an error too.
    let dir = Job::source("https://127.0.0.1:9")
        .set("client_cert_file", "client.pem")
        .write();
    let out = agentsync(&["check"]).config(&dir).expect(2);
    assert!(
        out.stderr.contains("needs client_key_file"),
        "{}",
        out.stderr
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token endpoint that grants `granted` only for an assertion whose RS256
/// signature verifies, and an API that wants that token.
fn jwt_server(issuer: &'static str, audience_path: &'static str) -> Server {
    let public = jwt::public_key();
    Server::start(move |req: &Req| {
        if req.path() == audience_path && req.method == "POST" {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
                .into_owned()
                .collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
                return Resp::status(
                    400,
                    "application/json",
                    r#"{"error":"unsupported_grant_type"}"#,
                );
            }
            let (header, claims, verified) =
                jwt::decode(&get("assertion").unwrap_or_default(), &public);
            let t = now();
            let fresh = claims["iat"].as_u64().is_some_and(|iat| iat <= t + 5)
                && claims["exp"]
                    .as_u64()
                    .is_some_and(|exp| exp > t && exp <= t + 3600);
            if verified && header["alg"] == "RS256" && claims["iss"] == issuer && fresh {
                return Resp::json(
                    r#"{"access_token": "jwt-granted-1", "expires_in": 3600, "token_type": "Bearer"}"#,
                );
            }
            return Resp::status(400, "application/json", r#"{"error":"invalid_grant"}"#);
        }
        if req.path() == "/users" {
            if req.header("authorization") == Some("Bearer jwt-granted-1") {
                return Resp::json(USERS);
            }
            return Resp::status(401, "application/json", "{}");
        }
        Resp::status(404, "application/json", "{}")
    })
}

#[test]
fn the_jwt_bearer_grant_signs_an_rs256_assertion_the_token_endpoint_verifies() {
    let server = jwt_server("sync@acme.example", "/services/oauth2/token");
    let token_url = format!("{}/services/oauth2/token", server.base);
    let dir = Job::source(&server.base)
        .path("/users")
        .records(".users")
        .auth("kind", "oauth2")
        .auth("grant", "jwt_bearer")
        .auth("token_url", token_url.as_str())
        .auth("private_key_file", "keys/sync.pem")
        .auth("issuer", "sync@acme.example")
        .auth("subject", "admin@acme.example")
        .auth("audience", "https://login.acme.example")
        .auth("scope", "users.read")
        .write();
    std::fs::create_dir(dir.path("keys")).unwrap();
    dir.write("keys/sync.pem", &fixture("jwt/test-rsa-key.pem"));
    let out = fetch(&dir).output_json().expect(0);
    assert_eq!(out.json()["users"][0]["id"], "7");

    let token_req = &server.requests()[0];
    let form: Vec<(String, String)> = url::form_urlencoded::parse(token_req.body.as_bytes())
        .into_owned()
        .collect();
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
    let (header, claims, verified) = jwt::decode(assertion, &jwt::public_key());
    assert!(verified, "the RS256 signature verifies with the public key");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "sync@acme.example");
    assert_eq!(claims["sub"], "admin@acme.example");
    assert_eq!(claims["aud"], "https://login.acme.example");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 3600, "short-lived: {iat}..{exp}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // RFC 7523's form: the scope is a form field, not a claim.
    assert!(form.contains(&("scope".to_owned(), "users.read".to_owned())));
    assert!(claims.get("scope").is_none());
    // The key never shows, and neither does the assertion, even with -v.
    let verbose = fetch(&dir).arg("-v").expect(0);
    let key = fixture("jwt/test-rsa-key.pem");
    for line in key
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(' '))
    {
        assert!(!verbose.stderr.contains(line), "{}", verbose.stderr);
    }
    assert!(
        !verbose.stderr.contains(&assertion[..40]),
        "{}",
        verbose.stderr
    );
}

#[test]
fn a_google_service_account_key_gives_issuer_audience_scope_and_token_url() {
    let server = jwt_server("agentsync@acme-project.iam.gserviceaccount.com", "/token");
    let account = serde_json::json!({
        "type": "service_account",
        "project_id": "acme-project",
        "private_key_id": "0123abcd",
        "private_key": fixture("jwt/test-rsa-key.pem"),
        "client_email": "agentsync@acme-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": format!("{}/token", server.base),
    });
    let dir = Job::source(&server.base)
        .path("/users")
        .records(".users")
        .auth("kind", "oauth2")
        .auth("grant", "jwt_bearer")
        .auth("service_account_file", "sa.json")
        .auth("subject", "admin@acme.example")
        .auth(
            "scope",
            "https://www.googleapis.com/auth/admin.directory.user.readonly",
        )
        .write();
    dir.write("sa.json", &account.to_string());
    let out = fetch(&dir).output_json().expect(0);
    assert_eq!(out.json()["users"][0]["email"], "a@x.com");

    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(server.requests()[0].body.as_bytes())
            .into_owned()
            .collect();
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
    let (header, claims, verified) = jwt::decode(assertion, &jwt::public_key());
    assert!(verified);
    assert_eq!(header["kid"], "0123abcd");
    assert_eq!(claims["aud"], format!("{}/token", server.base));
    assert_eq!(claims["sub"], "admin@acme.example");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/admin.directory.user.readonly"
    );
    assert!(
        form.iter().all(|(k, _)| k != "scope"),
        "Google's form: scope in the claims"
    );
}

#[test]
fn jwt_bearer_key_files_that_cannot_work_are_config_errors() {
    let key = fixture("jwt/test-rsa-key.pem");
    let cases: [(&str, &str, &str); 5] = [
        ("private_key_file", "missing.pem", "cannot read"),
        ("private_key_file", "junk.pem", "is not PEM"),
        ("service_account_file", "junk.pem", "is not JSON"),
        (
            "service_account_file",
            "no-key.json",
            "has no \"private_key\"",
        ),
        (
            "service_account_file",
            "bad-key.json",
            "private_key is not PEM",
        ),
    ];
    for (name, file, what) in cases {
        let mut job = Job::source("https://127.0.0.1:9")
            .path("/users")
            .auth("kind", "oauth2")
            .auth("grant", "jwt_bearer")
            .auth(name, file);
        if name == "private_key_file" {
            job = job
                .auth("token_url", "https://127.0.0.1:9/token")
                .auth("issuer", "i")
                .auth("audience", "a");
        }
        let dir = job.write();
        dir.write("junk.pem", "junk\n");
        dir.write(
            "no-key.json",
            r#"{"client_email": "a@b.c", "token_uri": "https://127.0.0.1:9/t"}"#,
        );
        dir.write(
            "bad-key.json",
            &serde_json::json!({"client_email": "a@b.c", "token_uri": "https://127.0.0.1:9/t", "private_key": "not a key"}).to_string(),
        );
        let out = agentsync(&["check"]).config(&dir).expect(2);
        assert!(
            out.stderr.contains(&format!("[source.auth].{name}")) || out.stderr.contains(name),
            "{file}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(file), "{file}: {}", out.stderr);
        assert!(out.stderr.contains(what), "{file}: {}", out.stderr);
    }
    // A grant needs its key; the client-credentials keys do not fit it.
    let dir = Job::source("https://127.0.0.1:9")
        .auth("kind", "oauth2")
        .auth("grant", "jwt_bearer")
        .auth("token_url", "https://127.0.0.1:9/token")
        .write();
    let out = agentsync(&["check"]).config(&dir).expect(2);
    assert!(
        out.stderr.contains("needs service_account_file"),
        "{}",
        out.stderr
    );
    let dir = Job::source("https://127.0.0.1:9")
        .auth("kind", "oauth2")
        .auth("grant", "jwt_bearer")
        .auth("private_key_file", "k.pem")
        .auth("client_id_env", "X")
        .write();
    dir.write("k.pem", &key);
    let out = agentsync(&["check"]).config(&dir).expect(2);
    assert!(
        out.stderr
            .contains("client_id_env is for the client_credentials grant"),
        "{}",
        out.stderr
    );
}
