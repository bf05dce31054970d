//! The one HTTP client every request goes through — source pages, sink reads and
//! writes, actions, `OAuth2` tokens. It owns authentication, timeouts, retries with
//! backoff and `Retry-After`, the rate limit and the response size limit, and
//! keeps the credentials with their origin: a client is bound to the origin
//! (scheme, host, port) of its endpoint, and its auth and secret headers go
//! nowhere else — not to a next page on another host, not after a redirect
//! (redirects are followed here, within the origin only), not over plain
//! http:// to a host that is not this machine.
//!
//! TLS trusts the bundled Mozilla roots, the system's trust store (which
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) and an endpoint's `ca_file`.
//! Proxies come from `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`
//! (read by ureq); a SOCKS proxy there is refused before any request.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};

mod auth;
mod jwt;
mod message;
mod origin;
mod resolve;
mod retry;
mod tls;

use auth::TokenState;
pub(crate) use auth::{Auth, Grant, OAuth2, TokenRefused, header_value_flaw};
pub(crate) use jwt::{JwtBearer, SigningKey};
use message::shown_start;
pub(crate) use message::{Request, Response, display_url};
use origin::MAX_REDIRECTS;
pub(crate) use origin::{Binding, is_loopback};
use resolve::CachingResolver;
pub(crate) use retry::Interrupted;
use retry::Pacing;
use tls::trusted_roots;
pub(crate) use tls::{IdentityFile, KEY_MISMATCH, client_identity, refuse_socks_proxy};

/// Largest response body read into memory, unless an endpoint's
/// `max_response_mb` says otherwise.
pub(crate) const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The most header bytes a request sends; servers commonly refuse more than
/// 8 to 64 KiB.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Per-endpoint behaviour from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub timeout: Duration,
    pub retries: u32,
    pub max_retry_wait: Duration,
    /// Requests per second; 0 means unlimited.
    pub rate_limit: f64,
    /// First backoff step; doubled on each retry.
    pub backoff_base: Duration,
    /// Roots trusted besides the bundled and the system ones (`ca_file`).
    pub extra_roots: Vec<ureq::tls::Certificate<'static>>,
    /// The certificate shown to servers that ask for one (mutual TLS), on
    /// every request of the endpoint and its token requests.
    pub client_cert: Option<ureq::tls::ClientCert>,
    /// The largest response body read, in bytes.
    pub max_body: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(30),
            retries: 3,
            max_retry_wait: Duration::from_secs(60),
            rate_limit: 0.0,
            backoff_base: Duration::from_millis(500),
            extra_roots: Vec::new(),
            client_cert: None,
            max_body: MAX_BODY_BYTES,
        }
    }
}

/// Sends requests with auth, rate limit and retries. Shared by reference across
/// the page-fetching threads.
#[derive(Debug)]
pub(crate) struct Client {
    agent: ureq::Agent,
    settings: Settings,
    auth: Option<Auth>,
    /// The origin of the credentials; a client without one sends none.
    binding: Option<Binding>,
    /// When the next request may leave: rate limit and 429 pauses.
    pacing: Pacing,
    token: Mutex<TokenState>,
}

/// With `-v`, one line per request sent: method, URL (redacted), what came
/// back, how long it took and which attempt it was.
fn log_request(req: &Request, outcome: &Result<Attempt>, took: Duration, attempt: u32) {
    if !crate::progress::verbose() {
        return;
    }
    let answer = match outcome {
        Ok(
            Attempt::Done(resp)
            | Attempt::Retry {
                last: Some(resp), ..
            },
        ) => {
            format!("HTTP {}", resp.status)
        }
        Ok(Attempt::Retry { reason, .. }) => reason.clone(),
        Err(e) => format!("{e:#}"),
    };
    crate::progress::debug(&format!(
        "{} {} -> {answer} in {} ms (attempt {attempt})",
        req.method,
        display_url(&req.url),
        took.as_millis()
    ));
}

/// Did the TLS handshake fail on the server's certificate? rustls reports it
/// inside an I/O error of kind `InvalidData` whose message names the
/// certificate.
fn is_certificate_error(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Rustls(_) => true,
        ureq::Error::Io(e) => {
            e.kind() == std::io::ErrorKind::InvalidData && e.to_string().contains("certificate")
        }
        _ => false,
    }
}

/// A transport error in words, with the fix where one is known.
pub(crate) fn transport_reason(err: &ureq::Error) -> String {
    let text = err.to_string();
    match err {
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        other if is_certificate_error(other) => format!(
            "{other} (a server certificate from a private or inspecting CA? add the CA with ca_file)"
        ),
        _ if text.contains("CertificateRequired") => format!(
            "{text} (the server asks for a client certificate: set client_cert_file and client_key_file)"
        ),
        _ => text,
    }
}

/// Why an attempt failed, and whether another try may help.
enum Attempt {
    Done(Response),
    Retry {
        reason: String,
        wait: Option<Duration>,
        last: Option<Response>,
        /// The server may have applied it (a lost answer, a gateway's error).
        landed: bool,
    },
}

/// The error of a request whose wait a signal ended.
fn interrupted(req: &Request, signal: i32, may_have_landed: bool) -> anyhow::Error {
    anyhow::Error::new(Interrupted {
        may_have_landed,
        message: format!(
            "{} {}: not sent: {} came while it waited for its turn",
            req.method,
            display_url(&req.url),
            crate::signals::name(signal)
        ),
    })
}

impl Client {
    pub(crate) fn new(settings: Settings, auth: Option<Auth>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(settings.timeout))
            .user_agent(concat!("agentsync/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(16)
            // Redirects are followed by `send`, within the origin only: ureq
            // would carry custom headers to any host a server names.
            .max_redirects(0)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(trusted_roots(&settings.extra_roots))
                    .client_cert(settings.client_cert.clone())
                    .build(),
            )
            .build();
        Client {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                CachingResolver::default(),
            ),
            pacing: Pacing::new(settings.rate_limit),
            settings,
            auth,
            binding: None,
            token: Mutex::new(TokenState::default()),
        }
    }

    /// The client bound to `binding`'s origin: only there do its credentials go.
    pub(crate) fn bound(mut self, binding: Binding) -> Self {
        self.binding = Some(binding);
        self
    }

    /// Send `req`, retrying what may be retried and following redirects within
    /// the origin. Returns the final response whatever its status; transport
    /// failures that outlast the retries are errors.
    pub(crate) fn send(&self, req: &Request) -> Result<Response> {
        let mut current = std::borrow::Cow::Borrowed(req);
        for _ in 0..=MAX_REDIRECTS {
            let credentials = self.credentials_for(&current)?;
            let resp = self.send_once(&current, credentials)?;
            let Some(next) = self.redirect(&current, &resp)? else {
                return Ok(resp);
            };
            current = std::borrow::Cow::Owned(next);
        }
        bail!(
            "{} {}: more than {MAX_REDIRECTS} redirects",
            req.method,
            display_url(&req.url)
        )
    }

    /// One request (no redirects), retried as its method allows; with the
    /// auth and secret headers when `credentials`. A 429 pauses every request
    /// of this client until the time the server named, and is retried for up
    /// to `max_retry_wait` × `retries` in all; other failures up to `retries`
    /// times. A signal ends any wait: the request is not sent (again).
    fn send_once(&self, req: &Request, credentials: bool) -> Result<Response> {
        let mut refreshed_token = false;
        let mut attempt = 0u32;
        let mut throttled = 0u32;
        let mut throttled_for = Duration::ZERO;
        let throttle_budget = self
            .settings
            .max_retry_wait
            .saturating_mul(self.settings.retries);
        // Whether an earlier try may have been applied by the server.
        let mut may_have_landed = false;
        loop {
            self.pacing
                .wait_turn()
                .map_err(|signal| interrupted(req, signal, may_have_landed))?;
            // After the wait: a token that lives a second is still fresh when
            // the request leaves.
            let auth_header = if credentials {
                self.auth_header()?
            } else {
                None
            };
            let started = Instant::now();
            let outcome = self.attempt(req, auth_header.as_ref(), credentials);
            log_request(req, &outcome, started.elapsed(), attempt + throttled + 1);
            match outcome? {
                Attempt::Done(resp) => {
                    if resp.status == 401
                        && credentials
                        && matches!(self.auth, Some(Auth::OAuth2(_)))
                        && !refreshed_token
                    {
                        // The token may have been revoked or expired early: fetch
                        // a new one, once. Another thread may have done so already.
                        refreshed_token = true;
                        self.drop_token(auth_header.as_ref());
                        continue;
                    }
                    return Ok(resp);
                }
                Attempt::Retry {
                    reason,
                    wait,
                    last,
                    landed,
                } => {
                    may_have_landed |= landed;
                    let slow_down = last.as_ref().is_some_and(|r| r.status == 429);
                    let cap = self.settings.max_retry_wait;
                    let step = if slow_down { throttled } else { attempt };
                    let wait = wait
                        .unwrap_or_else(|| retry::backoff(self.settings.backoff_base, step, cap))
                        .min(cap);
                    let spent = if slow_down {
                        self.settings.retries == 0 || throttled_for + wait > throttle_budget
                    } else {
                        attempt >= self.settings.retries
                    };
                    if spent {
                        if let Some(resp) = last {
                            return Ok(resp);
                        }
                        let tries = attempt + throttled + 1;
                        bail!(
                            "{} {}: {reason} (after {tries} attempt{})",
                            req.method,
                            display_url(&req.url),
                            if tries == 1 { "" } else { "s" }
                        );
                    }
                    crate::progress::debug(&format!(
                        "{} {}: {reason}; retrying in {:.1}s",
                        req.method,
                        display_url(&req.url),
                        wait.as_secs_f64()
                    ));
                    if slow_down {
                        // The server asked this client to slow down, not this
                        // request: every worker waits with it (in `wait_turn`).
                        self.pacing.pause_for(wait);
                        throttled += 1;
                        throttled_for += wait;
                    } else {
                        retry::sleep(wait)
                            .map_err(|signal| interrupted(req, signal, may_have_landed))?;
                        attempt += 1;
                    }
                }
            }
        }
    }

    fn attempt(
        &self,
        req: &Request,
        auth_header: Option<&(String, SecretString)>,
        credentials: bool,
    ) -> Result<Attempt> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url.as_str());
        let mut head_bytes = 0usize;
        let mut add = |builder: ureq::http::request::Builder, name: &str, value: &str| {
            // A value that cannot be a header is this request's fault: said
            // with the header's name (never its value: it may be a secret),
            // and not retried.
            if let Some(flaw) = header_value_flaw(value) {
                bail!(
                    "{} {}: header {name} cannot be sent: its value holds {flaw}",
                    req.method,
                    display_url(&req.url)
                );
            }
            head_bytes += name.len() + value.len() + 4;
            if head_bytes > MAX_HEAD_BYTES {
                bail!(
                    "{} {}: the request's headers are over {} KiB (at {name}): not sent",
                    req.method,
                    display_url(&req.url),
                    MAX_HEAD_BYTES / 1024
                );
            }
            Ok(builder.header(name, value))
        };
        for (name, value) in &req.headers {
            if !credentials && req.is_secret_header(name, value) {
                continue;
            }
            builder = add(builder, name, value)?;
        }
        if let Some((name, value)) = auth_header
            && !req.has_header(name)
        {
            builder = add(builder, name, value.expose_secret())?;
        }
        let result = match &req.body {
            Some(body) => builder
                .body(body.as_slice())
                .map_err(|e| anyhow!("invalid request: {e}"))
                .map(|r| self.agent.run(r)),
            None => builder
                .body(())
                .map_err(|e| anyhow!("invalid request: {e}"))
                .map(|r| self.agent.run(r)),
        };
        let mut resp = match result? {
            Ok(resp) => resp,
            Err(err) => return self.transport_failure(req, &err),
        };

        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = match resp
            .body_mut()
            .with_config()
            .limit(self.settings.max_body)
            .read_to_vec()
        {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(limit)) => bail!(
                "{} {}: response body is larger than the {limit}-byte limit",
                req.method,
                display_url(&req.url)
            ),
            Err(err) => {
                // The server answered, so a non-idempotent request did arrive.
                if !req.idempotent {
                    bail!(
                        "{} {}: response body could not be read: {err}",
                        req.method,
                        display_url(&req.url)
                    );
                }
                return Ok(Attempt::Retry {
                    reason: format!("response body could not be read (HTTP {status}): {err}"),
                    wait: None,
                    last: None,
                    landed: true,
                });
            }
        };
        let resp = Response {
            status,
            headers,
            body,
        };
        let retryable = match status {
            429 => true,
            502..=504 => req.idempotent,
            _ => false,
        };
        if !retryable {
            return Ok(Attempt::Done(resp));
        }
        let wait = retry::wait_hint(
            |name| resp.header(name).map(str::to_owned),
            SystemTime::now(),
        );
        Ok(Attempt::Retry {
            reason: format!("HTTP {status}"),
            wait,
            // 429 and 503 say the request was not processed (RFC 6585 §4,
            // RFC 9110 §15.6.4); a gateway's 502 or 504 says nothing of it.
            landed: !matches!(status, 429 | 503),
            last: Some(resp),
        })
    }

    fn transport_failure(&self, req: &Request, err: &ureq::Error) -> Result<Attempt> {
        let never_sent = matches!(
            err,
            ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
                | ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve)
        ) || matches!(&err, ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
        let reason = match &err {
            ureq::Error::Timeout(_) => {
                format!("timed out after {}s", self.settings.timeout.as_secs_f64())
            }
            other => transport_reason(other),
        };
        // A certificate the trust store refuses is refused again: no retry.
        let transient = !matches!(
            err,
            ureq::Error::BadUri(_)
                | ureq::Error::Http(_)
                | ureq::Error::InvalidProxyUrl
                | ureq::Error::Tls(_)
                | ureq::Error::Rustls(_)
        ) && !is_certificate_error(err);
        if transient && (req.idempotent || never_sent) {
            Ok(Attempt::Retry {
                reason,
                wait: None,
                last: None,
                landed: !never_sent,
            })
        } else {
            bail!("{} {}: {reason}", req.method, display_url(&req.url))
        }
    }
}
