//! How a client proves who it is: the `Auth` kinds, the header each one makes,
//! and `OAuth2` client-credentials tokens, fetched once and cached until they near
//! their expiry or are rejected.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{Client, display_url, shown_start};
use crate::redact;

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
    OAuth2(OAuth2),
}

/// `OAuth2` client-credentials grant (RFC 6749 §4.4).
#[derive(Debug)]
pub(crate) struct OAuth2 {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: Option<String>,
    /// Send the client credentials as HTTP Basic (true) or in the form body.
    pub basic_client_auth: bool,
    /// Put before the token in `Authorization`, e.g. `Bearer`; empty: the
    /// token alone (Talkdesk's STS tokens).
    pub token_prefix: String,
    /// Extra form fields of the token request.
    pub token_params: Vec<(String, String)>,
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
        let mut cached = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = match (cached.as_ref(), rejected, &self.auth) {
            (Some(tok), Some((_, sent)), Some(Auth::OAuth2(oauth))) => {
                oauth
                    .authorization(tok.token.expose_secret())
                    .expose_secret()
                    == sent.expose_secret()
            }
            _ => false,
        };
        if same {
            *cached = None;
        }
    }

    fn oauth_token(&self, oauth: &OAuth2) -> Result<SecretString> {
        let mut cached = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tok) = cached.as_ref()
            && tok.expires.is_none_or(|at| Instant::now() < at)
        {
            return Ok(tok.token.clone());
        }
        let fresh = fetch_token(&self.agent, oauth)?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }
}

fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {encoded}")
}

fn fetch_token(agent: &ureq::Agent, oauth: &OAuth2) -> Result<CachedToken> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut form = "grant_type=client_credentials".to_owned();
    if let Some(scope) = &oauth.scope {
        let _ = write!(form, "&scope={}", enc(scope));
    }
    for (name, value) in &oauth.token_params {
        let _ = write!(form, "&{}={}", enc(name), enc(value));
    }
    let mut builder = ureq::http::Request::builder()
        .method("POST")
        .uri(oauth.token_url.as_str())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json");
    if oauth.basic_client_auth {
        builder = builder.header(
            "Authorization",
            basic_auth(
                &enc(&oauth.client_id),
                &enc(oauth.client_secret.expose_secret()),
            ),
        );
    } else {
        let _ = write!(
            form,
            "&client_id={}&client_secret={}",
            enc(&oauth.client_id),
            enc(oauth.client_secret.expose_secret())
        );
    }
    let url = display_url(&oauth.token_url);
    let request = builder
        .body(form.into_bytes())
        .map_err(|e| anyhow!("invalid token request: {e}"))?;
    let started = Instant::now();
    let mut resp = agent
        .run(request)
        .map_err(|e| anyhow!("OAuth2 token request to {url} failed: {e}"))?;
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
    let expires = json
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        // Renew a little early so a token never expires mid-request.
        .map(|secs| started + Duration::from_secs(secs.saturating_sub(30).max(1)));
    Ok(CachedToken {
        token: token.to_owned().into(),
        expires,
    })
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
