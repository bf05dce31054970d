//! An endpoint: where requests go, how they behave (timeouts, retries, rate
//! limit, concurrency), and the credentials bound to its origin.

use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::auth::auth_from_raw;
use super::ctx::{ConfigError, Ctx};
use super::raw::RawEndpoint;
use crate::http::{self, Auth};

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
        let rate_limit = match raw.rate_limit {
            Some(rate) => {
                let r = *rate.get_ref();
                if !(r == 0.0 || (MIN_RATE..=MAX_RATE).contains(&r)) {
                    return Err(ctx.err_at(
                        rate,
                        format!(
                            "[{table}] rate_limit must be 0 (no limit) or between {MIN_RATE} and {MAX_RATE} requests per second, not {r:?}"
                        ),
                    ));
                }
                r
            }
            None => 0.0,
        };
        let key = |name: &str| format!("[{table}] {name}");
        let concurrency = bounded(&key("concurrency"), raw.concurrency, 1..=256, ctx)?.unwrap_or(4);
        let timeout_secs = bounded(&key("timeout_secs"), raw.timeout_secs, 1..=86_400, ctx)?;
        let retries = bounded(&key("retries"), raw.retries, 0..=100, ctx)?;
        let max_retry_wait_secs = bounded(
            &key("max_retry_wait_secs"),
            raw.max_retry_wait_secs,
            0..=3600,
            ctx,
        )?;
        let max_response_mb = bounded(&key("max_response_mb"), raw.max_response_mb, 1..=4096, ctx)?;
        let extra_roots = match raw.ca_file {
            Some(file) => ca_file(&format!("[{table}] ca_file"), file, ctx)?,
            None => Vec::new(),
        };
        let client_cert = client_identity(table, raw.client_cert_file, raw.client_key_file, ctx)?;
        let defaults = http::Settings::default();
        Ok(Some(Endpoint {
            base_url: base,
            settings: http::Settings {
                timeout: timeout_secs.map_or(defaults.timeout, Duration::from_secs),
                retries: retries.unwrap_or(defaults.retries),
                max_retry_wait: max_retry_wait_secs
                    .map_or(defaults.max_retry_wait, Duration::from_secs),
                rate_limit,
                extra_roots,
                client_cert,
                max_body: max_response_mb.map_or(defaults.max_body, |mb| mb * 1024 * 1024),
                ..defaults
            },
            concurrency,
            auth,
            allow_insecure_http,
            follow_other_origins: false,
        }))
    }
}

/// The slowest and fastest `rate_limit` accepted, in requests per second:
/// one request in 1000 s, a million a second.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 1_000_000.0;

/// A number within `range`, or a config error naming the key and the range.
pub(super) fn bounded<T>(
    key: &str,
    value: Option<&Spanned<T>>,
    range: std::ops::RangeInclusive<T>,
    ctx: &Ctx,
) -> Result<Option<T>, ConfigError>
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    let Some(value) = value else { return Ok(None) };
    let v = *value.get_ref();
    if range.contains(&v) {
        Ok(Some(v))
    } else {
        Err(ctx.err_at(
            value,
            format!(
                "{key} must be between {} and {}, not {v}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The client certificate of mutual TLS, from `cert` and `key` (both or
/// neither), checked to be PEM and to belong together.
fn client_identity(
    table: &str,
    cert: Option<&Spanned<String>>,
    key: Option<&Spanned<String>>,
    ctx: &Ctx,
) -> Result<Option<ureq::tls::ClientCert>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(cert), None) => {
            return Err(ctx.err_at(
                cert,
                format!("[{table}] client_cert_file needs client_key_file, the certificate's private key"),
            ));
        }
        (None, Some(key)) => {
            return Err(ctx.err_at(
                key,
                format!("[{table}] client_key_file needs client_cert_file, the certificate it belongs to"),
            ));
        }
    };
    let read = |name: &str, file: &Spanned<String>| {
        let path = super::relative_to_config(ctx.path(), file.get_ref());
        std::fs::read(&path).map_err(|e| {
            ctx.err_at(
                file,
                format!("[{table}] {name}: cannot read {}: {e}", path.display()),
            )
        })
    };
    let cert_pem = read("client_cert_file", cert)?;
    let key_pem = read("client_key_file", key)?;
    http::client_identity(&cert_pem, &key_pem)
        .map(Some)
        .map_err(|e| {
            let (name, file) = match e.file {
                http::IdentityFile::Certificate => ("client_cert_file", cert),
                http::IdentityFile::Key => ("client_key_file", key),
            };
            let path = super::relative_to_config(ctx.path(), file.get_ref());
            let mut message = format!("[{table}] {name}: {} {}", path.display(), e.message);
            if e.message == http::KEY_MISMATCH {
                let cert_path = super::relative_to_config(ctx.path(), cert.get_ref());
                message.push_str(&format!(" in {}", cert_path.display()));
            }
            ctx.err_at(file, message)
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
            err.message
                .contains("token_env: environment variable NOPE is not set"),
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
