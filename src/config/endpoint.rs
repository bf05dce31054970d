//! An endpoint: where requests go, how they behave (timeouts, retries, rate
//! limit, concurrency), and the credentials bound to its origin.

use std::time::Duration;

use secrecy::ExposeSecret;
use toml::Spanned;
use url::Url;

use super::ctx::{ConfigError, Ctx};
use super::raw::{ClientAuth, RawAuth, RawEndpoint};
use crate::http::{self, Auth, OAuth2};
use crate::redact;

/// Where requests go and how they behave.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub base_url: Url,
    pub settings: http::Settings,
    pub concurrency: usize,
    pub auth: Option<Auth>,
    /// `allow_insecure_http`: credentials may go over http:// to another machine.
    pub allow_insecure_http: bool,
    /// A URL on another origin (a next page) is followed without credentials
    /// instead of refused; set from `[pagination] follow_other_origins`.
    pub follow_other_origins: bool,
}

impl Endpoint {
    /// A client for this endpoint, bound to its origin. The credentials move into it.
    pub(crate) fn client(&mut self) -> http::Client {
        http::Client::new(self.settings.clone(), self.auth.take()).bound(http::Binding {
            base: self.base_url.clone(),
            allow_insecure_http: self.allow_insecure_http,
            follow_other_origins: self.follow_other_origins,
        })
    }

    /// The endpoint declared in table `[table]`, or `None` if it has no `base_url`.
    pub(super) fn from_raw(
        table: &str,
        raw: RawEndpoint<'_>,
        ctx: &Ctx,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = raw.base_url else {
            return Ok(None);
        };
        let base = ctx.url(&format!("[{table}] base_url"), base_url)?;
        let auth = raw
            .auth
            .map(|a| auth_from_raw(&format!("[{table}.auth]"), a, ctx))
            .transpose()?;
        let allow_insecure_http = raw.allow_insecure_http == Some(true);
        if let Some(Auth::OAuth2(oauth)) = &auth
            && insecure(&oauth.token_url)
            && !allow_insecure_http
        {
            return Err(ctx.err_at(
                raw.auth.expect("auth is set"),
                format!(
                    "[{table}.auth] token_url: the client secret would travel unencrypted over http:// to {}; use https:// or set allow_insecure_http = true",
                    oauth.token_url.host_str().unwrap_or("?")
                ),
            ));
        }
        if auth.is_some() && insecure(&base) && !allow_insecure_http {
            return Err(ctx.err_at(
                base_url,
                format!(
                    "[{table}] base_url: credentials would travel unencrypted over http:// to {}; use https:// or set allow_insecure_http = true",
                    base.host_str().unwrap_or("?")
                ),
            ));
        }
        if let Some(rate) = raw.rate_limit
            && !(rate.get_ref().is_finite() && *rate.get_ref() >= 0.0)
        {
            return Err(ctx.err_at(
                rate,
                format!("[{table}] rate_limit must be 0 or a positive number"),
            ));
        }
        if let Some(c) = raw.concurrency
            && *c.get_ref() == 0
        {
            return Err(ctx.err_at(c, format!("[{table}] concurrency must be at least 1")));
        }
        let extra_roots = match raw.ca_file {
            Some(file) => ca_file(&format!("[{table}] ca_file"), file, ctx)?,
            None => Vec::new(),
        };
        let defaults = http::Settings::default();
        Ok(Some(Endpoint {
            base_url: base,
            settings: http::Settings {
                timeout: raw
                    .timeout_secs
                    .map_or(defaults.timeout, Duration::from_secs),
                retries: raw.retries.unwrap_or(defaults.retries),
                max_retry_wait: raw
                    .max_retry_wait_secs
                    .map_or(defaults.max_retry_wait, Duration::from_secs),
                rate_limit: raw.rate_limit.map_or(0.0, |r| *r.get_ref()),
                extra_roots,
                ..defaults
            },
            concurrency: raw.concurrency.map_or(4, |c| *c.get_ref()),
            auth,
            allow_insecure_http,
            follow_other_origins: false,
        }))
    }
}

/// The credentials of table `key`, read from the environment.
fn auth_from_raw(key: &str, raw: &Spanned<RawAuth>, ctx: &Ctx) -> Result<Auth, ConfigError> {
    let at = raw.span();
    Ok(match raw.get_ref() {
        RawAuth::Bearer { token_env } => {
            Auth::Bearer(ctx.env_secret(at, Some("token_env"), token_env, key)?)
        }
        RawAuth::Basic {
            username_env,
            password_env,
        } => {
            let username = ctx.env_secret(at.clone(), Some("username_env"), username_env, key)?;
            let password = ctx.env_secret(at, Some("password_env"), password_env, key)?;
            redact::register_basic(username.expose_secret(), password.expose_secret());
            Auth::Basic {
                username: username.expose_secret().to_owned(),
                password,
            }
        }
        RawAuth::Header { name, value_env } => {
            if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ctx.error(
                    Some(at),
                    format!("{key}: {name:?} is not a valid header name"),
                ));
            }
            Auth::Header {
                name: name.clone(),
                value: ctx.env_secret(at, Some("value_env"), value_env, key)?,
            }
        }
        RawAuth::Oauth2 {
            token_url,
            client_id_env,
            client_secret_env,
            scope,
            client_auth,
            token_prefix,
            token_params,
        } => {
            // The grant's own fields are agentsync's to send.
            if let Some(name) = token_params.keys().find(|k| {
                ["grant_type", "client_id", "client_secret", "scope"].contains(&k.as_str())
            }) {
                return Err(ctx.error(
                    Some(at),
                    format!("{key}.token_params: {name} is set by agentsync, not here"),
                ));
            }
            let token_prefix = token_prefix.clone().unwrap_or_else(|| "Bearer".into());
            if token_prefix.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(ctx.error(
                    Some(at),
                    format!("{key}.token_prefix must be one word, like \"Bearer\", or \"\""),
                ));
            }
            let token_url = ctx.url(
                &format!("{key}.token_url"),
                &Spanned::new(at.clone(), token_url.clone()),
            )?;
            let client_id =
                ctx.env_secret(at.clone(), Some("client_id_env"), client_id_env, key)?;
            let client_secret =
                ctx.env_secret(at, Some("client_secret_env"), client_secret_env, key)?;
            // The client's Basic header holds both form-encoded (RFC 6749 §2.3.1).
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            redact::register_basic(
                &enc(client_id.expose_secret()),
                &enc(client_secret.expose_secret()),
            );
            Auth::OAuth2(OAuth2 {
                token_url,
                client_id: client_id.expose_secret().to_owned(),
                client_secret,
                scope: scope.clone(),
                basic_client_auth: !matches!(client_auth, Some(ClientAuth::Body)),
                token_prefix,
                token_params: token_params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
        }
    })
}

/// The certificates of the PEM bundle `file` (relative to the config file):
/// at least one, each parsed, or a config error at the key.
fn ca_file(
    key: &str,
    file: &Spanned<String>,
    ctx: &Ctx,
) -> Result<Vec<ureq::tls::Certificate<'static>>, ConfigError> {
    let path = super::relative_to_config(ctx.path(), file.get_ref());
    let shown = path.display();
    let pem = std::fs::read(&path)
        .map_err(|e| ctx.err_at(file, format!("{key}: cannot read {shown}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(ctx.err_at(file, format!("{key}: {shown} is not PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(ctx.err_at(
            file,
            format!("{key}: {shown} holds no certificate (-----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(certs)
}

/// Would credentials sent to `url` travel in clear to another machine?
fn insecure(url: &Url) -> bool {
    url.scheme() == "http" && !http::is_loopback(url)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse_str};

    #[test]
    fn missing_secret_env_is_a_config_error() {
        let text = MINIMAL.replace(
            "records = \".users\"",
            "records = \".users\"\nauth = { kind = \"bearer\", token_env = \"NOPE\" }",
        );
        let err = parse_str(&text).unwrap_err();
        assert!(
            err.message.contains("token_env: environment variable NOPE is not set"),
            "{err}"
        );
        // The caret is under the variable's name, inside the inline table.
        let line = "auth = { kind = \"bearer\", token_env = \"NOPE\" }";
        assert_eq!(err.source_line.as_deref(), Some(line));
        assert_eq!(err.at.map(|a| a.1), line.find("\"NOPE\"").map(|c| c + 1));
    }

    #[test]
    fn credentials_over_remote_http_are_refused() {
        let text = MINIMAL
            .replace("http://127.0.0.1:8787", "http://api.example.com")
            .replace(
                "records = \".users\"",
                "records = \".users\"\nauth = { kind = \"bearer\", token_env = \"TOKEN\" }",
            );
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("unencrypted"), "{err}");
        assert!(!err.to_string().contains("tok-secret-1"));
        let ok = text.replace(
            "records = \".users\"",
            "records = \".users\"\nallow_insecure_http = true",
        );
        parse_str(&ok).unwrap();
    }
}
