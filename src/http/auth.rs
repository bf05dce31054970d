//! How a client proves who it is: the `Auth` kinds, the header each one makes,
//! and `OAuth2` tokens (client credentials or a JWT bearer assertion), fetched
//! once and cached until they near their expiry or are rejected. A token
//! endpoint that refuses the client is asked at most [`TOKEN_REFUSALS_MAX`]
//! times in a row: after that the refusal is the answer, not another request,
//! until [`TOKEN_LOCKOUT`] has passed (a long-running listener asks again
//! then; a batch run has stopped its writes long before).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::jwt::{self, JwtBearer};
use super::{Client, display_url, shown_start};
use crate::redact;

/// Refused token requests in a row after which a client stops asking.
pub(crate) const TOKEN_REFUSALS_MAX: u32 = 3;

/// How long a client that was refused [`TOKEN_REFUSALS_MAX`] times in a row
/// answers with the last refusal instead of asking again.
const TOKEN_LOCKOUT: Duration = Duration::from_secs(300);

/// The longest a token is kept without asking again, whatever its
/// `expires_in` says: a day.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The token endpoint refused the client (HTTP 400, 401 or 403): retrying
/// with the same credentials cannot help. A write that fails with it counts
/// as a refusal of the directory.
#[derive(Debug, Clone)]
pub(crate) struct TokenRefused {
    pub message: String,
    /// A token request was sent and refused; false when the client did not
    /// ask again (the refusals before it stand): nothing was sent at all.
    pub asked: bool,
}

impl std::fmt::Display for TokenRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenRefused {}

/// How a request proves who it is. Secret parts never appear in `Debug`.
#[derive(Debug)]
pub(crate) enum Auth {
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
    Header {
        name: String,
        value: SecretString,
    },
    OAuth2(Box<OAuth2>),
}

/// An `OAuth2` token source: the token endpoint, the grant, and how the token
/// is then sent.
#[derive(Debug)]
pub(crate) struct OAuth2 {
    pub token_url: Url,
    pub grant: Grant,
    pub scope: Option<String>,
    /// Put before the token in `Authorization`, e.g. `Bearer`; empty: the
    /// token alone (Talkdesk's STS tokens).
    pub token_prefix: String,
    /// Extra form fields of the token request.
    pub token_params: Vec<(String, String)>,
}

/// How the client asks for a token.
#[derive(Debug)]
pub(crate) enum Grant {
    /// Client credentials (RFC 6749 §4.4).
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
        /// Send the client credentials as HTTP Basic (true) or in the form body.
        basic_client_auth: bool,
    },
    /// A signed assertion (RFC 7523).
    JwtBearer(Box<JwtBearer>),
}

impl OAuth2 {
    /// The `Authorization` value that carries `token`.
    fn authorization(&self, token: &str) -> SecretString {
        if self.token_prefix.is_empty() {
            token.to_owned().into()
        } else {
            format!("{} {token}", self.token_prefix).into()
        }
    }
}

#[derive(Debug)]
pub(super) struct CachedToken {
    token: SecretString,
    expires: Option<Instant>,
}

/// What a client remembers of its token endpoint: the token, and the
/// refusals in a row (with the last one's message).
#[derive(Debug, Default)]
pub(super) struct TokenState {
    cached: Option<CachedToken>,
    refusals: u32,
    last_refusal: Option<(TokenRefused, Instant)>,
}

impl Client {
    /// The header that carries the credentials, fetching an `OAuth2` token if needed.
    pub(super) fn auth_header(&self) -> Result<Option<(String, SecretString)>> {
        Ok(match &self.auth {
            None => None,
            Some(Auth::Bearer(token)) => Some((
                "Authorization".into(),
                format!("Bearer {}", token.expose_secret()).into(),
            )),
            Some(Auth::Basic { username, password }) => Some((
                "Authorization".into(),
                basic_auth(username, password.expose_secret()).into(),
            )),
            Some(Auth::Header { name, value }) => Some((name.clone(), value.clone())),
            Some(Auth::OAuth2(oauth)) => {
                let token = self.oauth_token(oauth)?;
                Some((
                    "Authorization".into(),
                    oauth.authorization(token.expose_secret()),
                ))
            }
        })
    }

    /// Forget the cached token if it is the one `rejected` carried (and not one
    /// another thread fetched since).
    pub(super) fn drop_token(&self, rejected: Option<&(String, SecretString)>) {
        let mut state = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = match (state.cached.as_ref(), rejected, &self.auth) {
            (Some(tok), Some((_, sent)), Some(Auth::OAuth2(oauth))) => {
                oauth
                    .authorization(tok.token.expose_secret())
                    .expose_secret()
                    == sent.expose_secret()
            }
            _ => false,
        };
        if same {
            state.cached = None;
        }
    }

    fn oauth_token(&self, oauth: &OAuth2) -> Result<SecretString> {
        let mut state = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tok) = state.cached.as_ref()
            && tok.expires.is_none_or(|at| Instant::now() < at)
        {
            return Ok(tok.token.clone());
        }
        if state.refusals >= TOKEN_REFUSALS_MAX
            && let Some((refused, at)) = &state.last_refusal
            && at.elapsed() < TOKEN_LOCKOUT
        {
            return Err(anyhow::Error::new(TokenRefused {
                message: format!(
                    "{} (not asked again after {} refusals in a row)",
                    refused.message, state.refusals
                ),
                asked: false,
            }));
        }
        match fetch_token(&self.agent, oauth) {
            Ok(fresh) => {
                let token = fresh.token.clone();
                state.cached = Some(fresh);
                state.refusals = 0;
                state.last_refusal = None;
                Ok(token)
            }
            Err(e) => {
                if let Some(refused) = e.downcast_ref::<TokenRefused>() {
                    state.refusals += 1;
                    state.last_refusal = Some((refused.clone(), Instant::now()));
                }
                Err(e)
            }
        }
    }
}

fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {encoded}")
}

/// The form body of a token request, and the client's Basic header if the
/// grant sends one.
fn token_form(oauth: &OAuth2) -> Result<(String, Option<String>)> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut basic = None;
    let mut form = String::new();
    match &oauth.grant {
        Grant::ClientCredentials {
            client_id,
            client_secret,
            basic_client_auth,
        } => {
            form.push_str("grant_type=client_credentials");
            if let Some(scope) = &oauth.scope {
                let _ = write!(form, "&scope={}", enc(scope));
            }
            if *basic_client_auth {
                basic = Some(basic_auth(
                    &enc(client_id),
                    &enc(client_secret.expose_secret()),
                ));
            } else {
                let _ = write!(
                    form,
                    "&client_id={}&client_secret={}",
                    enc(client_id),
                    enc(client_secret.expose_secret())
                );
            }
        }
        Grant::JwtBearer(jwt) => {
            let assertion = jwt.assertion(oauth.scope.as_deref(), std::time::SystemTime::now())?;
            let _ = write!(
                form,
                "grant_type={}&assertion={}",
                enc(jwt::GRANT_TYPE),
                assertion.expose_secret()
            );
            if !jwt.scope_in_claims
                && let Some(scope) = &oauth.scope
            {
                let _ = write!(form, "&scope={}", enc(scope));
            }
        }
    }
    for (name, value) in &oauth.token_params {
        let _ = write!(form, "&{}={}", enc(name), enc(value));
    }
    Ok((form, basic))
}

fn fetch_token(agent: &ureq::Agent, oauth: &OAuth2) -> Result<CachedToken> {
    let (form, basic) = token_form(oauth)?;
    let mut builder = ureq::http::Request::builder()
        .method("POST")
        .uri(oauth.token_url.as_str())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json");
    if let Some(basic) = basic {
        builder = builder.header("Authorization", basic);
    }
    let url = display_url(&oauth.token_url);
    let request = builder
        .body(form.into_bytes())
        .map_err(|e| anyhow!("invalid token request: {e}"))?;
    let started = Instant::now();
    let mut resp = agent.run(request).map_err(|e| {
        anyhow!(
            "OAuth2 token request to {url} failed: {}",
            super::transport_reason(&e)
        )
    })?;
    let status = resp.status().as_u16();
    crate::progress::debug(&format!(
        "POST {url} -> HTTP {status} in {} ms (token request)",
        started.elapsed().as_millis()
    ));
    let body = resp
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_vec()
        .with_context(|| format!("reading the OAuth2 token response of {url}"))?;
    if matches!(status, 400 | 401 | 403) {
        return Err(anyhow::Error::new(TokenRefused {
            message: format!(
                "OAuth2 token request to {url} was refused, HTTP {status}: {}",
                shown_start(&body)
            ),
            asked: true,
        }));
    }
    if !(200..300).contains(&status) {
        bail!(
            "OAuth2 token request to {url} answered HTTP {status}: {}",
            shown_start(&body)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("the OAuth2 token response of {url} is not JSON"))?;
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| anyhow!("the OAuth2 token response of {url} has no access_token"))?;
    redact::register(token);
    if let Some(bad) = header_value_flaw(token) {
        bail!(
            "the OAuth2 token response of {url} has an access_token that cannot go into the Authorization header: it holds {bad}"
        );
    }
    let expires = json
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        // Renew early so a token never expires on its way: 30 s before its
        // end, or half way through a lifetime shorter than a minute (a
        // token that lives one second is used for half a second, never at
        // its last instant); a lifetime past a day (or past what a clock can
        // count) is a day.
        .map(|secs| {
            let lifetime = Duration::from_secs(secs).min(MAX_TOKEN_LIFETIME);
            let early = (lifetime / 2).min(Duration::from_secs(30));
            started.checked_add(lifetime - early).unwrap_or(started)
        });
    Ok(CachedToken {
        token: token.to_owned().into(),
        expires,
    })
}

/// Why `value` cannot be an HTTP header value (RFC 9110 §5.5), if it cannot:
/// a line break or another control character would end or split the header.
pub(crate) fn header_value_flaw(value: &str) -> Option<&'static str> {
    if value.contains(['\r', '\n']) {
        Some("a line break (CR or LF)")
    } else if value.chars().any(|c| c.is_control() && c != '\t') {
        Some("a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_like_rfc7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
    }
}
