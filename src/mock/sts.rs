//! Talkdesk mode: an STS token endpoint (OAuth 2.0 client credentials, RFC 6749
//! §4.4) and the check of its tokens on SCIM requests. As Talkdesk does, the
//! token must be asked for with `token_type=opaque` and sent back as a raw
//! `Authorization: <token>` header, without the `Bearer` prefix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use super::server::Reply;

/// How long a token is accepted, as `expires_in` tells the client.
const LIFETIME: Duration = Duration::from_secs(600);

/// The one client the STS knows.
#[derive(Debug, Clone)]
pub(crate) struct TalkdeskClient {
    pub id: String,
    pub secret: String,
}

impl Default for TalkdeskClient {
    fn default() -> Self {
        TalkdeskClient {
            id: "mock-client".into(),
            secret: "mock-secret".into(),
        }
    }
}

pub(super) struct Sts {
    client: TalkdeskClient,
    /// Issued tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2).
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    let reply = Reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    );
    if status == 401 {
        reply.with_header("WWW-Authenticate", r#"Basic realm="agentsync mock""#.into())
    } else {
        reply
    }
}

/// A value of the `client_id:client_secret` pair, which RFC 6749 §2.3.1 has
/// form-encoded before it is put in Basic credentials.
fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Sts {
    pub(super) fn new(client: TalkdeskClient) -> Self {
        Sts {
            client,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// `POST /oauth/token`.
    pub(super) fn token(&self, authorization: Option<&str>, body: &str) -> Reply {
        let Some(credentials) = authorization
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, c)| c.trim())
        else {
            return oauth_error(
                401,
                "invalid_client",
                "client authentication with HTTP Basic (client_id:client_secret) is required",
            );
        };
        let pair = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let known = pair
            .as_deref()
            .and_then(|p| p.split_once(':'))
            .is_some_and(|(id, secret)| {
                form_decode(id) == self.client.id && form_decode(secret) == self.client.secret
            });
        if !known {
            return oauth_error(401, "invalid_client", "unknown client or wrong secret");
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            None => return oauth_error(400, "invalid_request", "grant_type is missing"),
            Some(other) => {
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    &format!("grant_type {other:?} is not supported; use client_credentials"),
                );
            }
        }
        if form.get("token_type").map(String::as_str) != Some("opaque") {
            return oauth_error(
                400,
                "invalid_request",
                "token_type=opaque is required: only opaque tokens are accepted by the directory",
            );
        }
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let now = Instant::now();
        {
            let mut tokens = self.tokens.lock().unwrap();
            tokens.retain(|_, expires| *expires > now);
            tokens.insert(token.clone(), now + LIFETIME);
        }
        let mut answer = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": LIFETIME.as_secs(),
        });
        if let Some(scope) = form.get("scope") {
            answer["scope"] = json!(scope);
        }
        Reply::json(200, &answer)
            .with_header("Cache-Control", "no-store".into())
            .with_header("Pragma", "no-cache".into())
    }

    /// The `Authorization` header of a SCIM request: a live token, raw.
    pub(super) fn authorize(&self, authorization: Option<&str>) -> Result<(), Reply> {
        let refuse = |detail: &str| Err(Reply::scim_error(401, None, detail));
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return refuse(
                "the Authorization header is missing: send the STS token from POST /oauth/token as `Authorization: <token>`",
            );
        };
        if value
            .split_once(' ')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        {
            return refuse(
                "the STS token must be sent without the Bearer prefix: `Authorization: <token>`",
            );
        }
        match self.tokens.lock().unwrap().get(value) {
            Some(expires) if *expires > Instant::now() => Ok(()),
            Some(_) => refuse("the token has expired; ask POST /oauth/token for a new one"),
            None => refuse("unknown token; ask POST /oauth/token for one"),
        }
    }
}
