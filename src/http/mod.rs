//! The one HTTP client every request goes through — source pages, sink reads and
//! writes, actions, OAuth2 tokens. It owns authentication, timeouts, retries with
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::redact;

/// Largest response body read into memory.
pub(crate) const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

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

/// OAuth2 client-credentials grant (RFC 6749 §4.4).
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
        }
    }
}

/// How many redirects one request follows, all within its origin.
const MAX_REDIRECTS: usize = 5;

/// One request, fully rendered.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// May this request be sent twice? GET, PUT, PATCH of one attribute: yes. A POST
    /// of an action: only when it surely never reached the server.
    pub idempotent: bool,
    /// Names of the headers that carry secrets (rendered from `{{env.NAME}}`):
    /// like the auth, they go to the client's origin only.
    pub secret_headers: Vec<String>,
}

impl Request {
    pub(crate) fn get(url: Url) -> Self {
        Request {
            method: "GET".into(),
            url,
            headers: Vec::new(),
            body: None,
            idempotent: true,
            secret_headers: Vec::new(),
        }
    }

    /// Is header `name: value` a credential? Marked so when rendered, or
    /// holding a registered secret whatever its name.
    fn is_secret_header(&self, name: &str, value: &str) -> bool {
        self.secret_headers
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            || redact::contains_secret(value)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("none")
    }

    /// The first characters of the body as text, for error messages. Secrets
    /// are masked before it is cut, so that no part of one is shown.
    pub(crate) fn body_start(&self) -> String {
        shown_start(&self.body)
    }

    /// Turn a non-2xx answer into an error naming the status, the URL and the
    /// start of the body.
    pub(crate) fn error_for_status(self, method: &str, url: &Url) -> Result<Response> {
        if self.is_success() {
            return Ok(self);
        }
        bail!(
            "{method} {} answered HTTP {}: {}",
            display_url(url),
            self.status,
            self.body_start()
        )
    }
}

/// The first characters of a body as text on one line, for error messages.
/// Secrets are masked before it is cut, so that no part of one is shown.
fn shown_start(body: &[u8]) -> String {
    const MAX: usize = 300;
    const SCANNED: usize = 64 * 1024;
    let text = redact::redact(&String::from_utf8_lossy(&body[..body.len().min(SCANNED)]));
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A URL as it may be shown: no user info; secrets masked by the caller's redaction.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    redact::redact(shown.as_str())
}

/// An origin (scheme, host, port) as it may be shown.
fn show_origin(url: &Url) -> String {
    redact::redact(&url.origin().ascii_serialization())
}

/// Is the URL's host this machine?
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where a client's credentials belong, and what it does with URLs elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    /// The endpoint's base URL: its origin is the one the credentials go to.
    pub base: Url,
    /// Credentials may travel over http:// to a host that is not this machine.
    pub allow_insecure_http: bool,
    /// A request to another origin is sent without credentials (true) or
    /// refused (false).
    pub follow_other_origins: bool,
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
    /// The earliest instant the next request may start (rate limit, no burst).
    next_slot: Mutex<Instant>,
    token: Mutex<Option<CachedToken>>,
}

#[derive(Debug)]
struct CachedToken {
    token: SecretString,
    expires: Option<Instant>,
}

/// How long a host's addresses are reused before it is looked up again (as
/// curl's DNS cache does).
const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// Looks each host up once a minute at most. ureq's own resolver looks the host
/// up again for every request, even one that goes out on a kept-alive
/// connection, and with a timeout set it does so on a new thread: one thread per
/// page. (ureq's resolver interface is marked as outside its semver promise; the
/// version is pinned by Cargo.lock.)
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ureq::unversioned::resolver::ResolvedSocketAddrs)>>,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        if let Some((at, addrs)) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// The bundled Mozilla roots and the system's, read once.
fn base_roots() -> &'static Arc<Vec<ureq::tls::Certificate<'static>>> {
    static ROOTS: OnceLock<Arc<Vec<ureq::tls::Certificate<'static>>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der));
        // A system store that cannot be read (none in a scratch image, a
        // wrong SSL_CERT_FILE) leaves the bundled roots: said on -v, as a
        // request that fails for it names the certificate anyway.
        let system = rustls_native_certs::load_native_certs();
        for err in &system.errors {
            crate::progress::debug(&format!("system trust store: {err}"));
        }
        let system = system
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned());
        Arc::new(bundled.chain(system).collect())
    })
}

/// The roots a client trusts: the bundled and system ones, and `extra`.
fn trusted_roots(extra: &[ureq::tls::Certificate<'static>]) -> ureq::tls::RootCerts {
    let base = base_roots();
    if extra.is_empty() {
        return ureq::tls::RootCerts::Specific(Arc::clone(base));
    }
    base.iter().chain(extra).cloned().into()
}

/// The proxy variables ureq reads, in its order.
const PROXY_VARS: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Refuse a SOCKS proxy in the environment: ureq is built without SOCKS
/// support and would connect directly instead, around the proxy a network
/// may require. The value is not shown: it may hold a password.
pub(crate) fn refuse_socks_proxy(env: impl Fn(&str) -> Option<String>) -> Result<()> {
    for name in PROXY_VARS {
        let Some(value) = env(name) else { continue };
        let scheme = value
            .trim()
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if let Some(scheme) = scheme.filter(|s| s.starts_with("socks")) {
            return Err(crate::exit::usage(format!(
                "{name} names a SOCKS proxy ({scheme}://...), which agentsync does not support: use an HTTP proxy (http://HOST:PORT) or unset {name}"
            )));
        }
    }
    Ok(())
}

/// Why an attempt failed, and whether another try may help.
enum Attempt {
    Done(Response),
    Retry {
        reason: String,
        wait: Option<Duration>,
        last: Option<Response>,
    },
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
                    .build(),
            )
            .build();
        Client {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                CachingResolver::default(),
            ),
            settings,
            auth,
            binding: None,
            next_slot: Mutex::new(Instant::now()),
            token: Mutex::new(None),
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

    /// May the credentials go with `req`? An error when the request must not
    /// be sent at all: another origin (unless following those is allowed), or
    /// credentials over plain http to another machine.
    fn credentials_for(&self, req: &Request) -> Result<bool> {
        let Some(binding) = &self.binding else {
            return Ok(false);
        };
        if req.url.origin() != binding.base.origin() {
            if binding.follow_other_origins {
                return Ok(false);
            }
            bail!(
                "{} {}: refused: {} is another origin than the endpoint's {}, and credentials stay with their origin (set [pagination] follow_other_origins = true to follow it without credentials)",
                req.method,
                display_url(&req.url),
                show_origin(&req.url),
                show_origin(&binding.base)
            );
        }
        let has_secrets =
            self.auth.is_some() || req.headers.iter().any(|(n, v)| req.is_secret_header(n, v));
        if has_secrets
            && req.url.scheme() == "http"
            && !is_loopback(&req.url)
            && !binding.allow_insecure_http
        {
            bail!(
                "{} {}: refused: credentials would travel unencrypted over http:// to {}; use https:// or set allow_insecure_http = true",
                req.method,
                display_url(&req.url),
                show_origin(&req.url)
            );
        }
        Ok(true)
    }

    /// The request a redirect answer points to, if `resp` is one. Only a
    /// redirect within the origin is followed; any other is an error naming
    /// both origins.
    fn redirect(&self, req: &Request, resp: &Response) -> Result<Option<Request>> {
        if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(None);
        }
        let Some(location) = resp.header("location") else {
            return Ok(None);
        };
        let target = req.url.join(location.trim()).map_err(|e| {
            anyhow!(
                "{} {} redirected to an invalid URL: {e}",
                req.method,
                display_url(&req.url)
            )
        })?;
        if target.origin() != req.url.origin() {
            bail!(
                "{} {} redirected (HTTP {}) to another origin, {} (from {}): not followed, redirects are followed only within the origin",
                req.method,
                display_url(&req.url),
                resp.status,
                show_origin(&target),
                show_origin(&req.url)
            );
        }
        crate::progress::debug(&format!(
            "{} {}: HTTP {}, following to {}",
            req.method,
            display_url(&req.url),
            resp.status,
            display_url(&target)
        ));
        let mut next = req.clone();
        next.url = target;
        // 303, and 301/302 after a POST as every client does: the answer is
        // fetched with a GET.
        if resp.status == 303 || (matches!(resp.status, 301 | 302) && req.method == "POST") {
            next.method = "GET".into();
            next.body = None;
            next.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
            next.idempotent = true;
        }
        Ok(Some(next))
    }

    /// One request (no redirects), retried as its method allows; with the
    /// auth and secret headers when `credentials`.
    fn send_once(&self, req: &Request, credentials: bool) -> Result<Response> {
        let mut refreshed_token = false;
        let mut attempt = 0u32;
        loop {
            let auth_header = if credentials {
                self.auth_header()?
            } else {
                None
            };
            match self.attempt(req, auth_header.as_ref(), credentials)? {
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
                Attempt::Retry { reason, wait, last } => {
                    if attempt >= self.settings.retries {
                        if let Some(resp) = last {
                            return Ok(resp);
                        }
                        bail!(
                            "{} {}: {reason} (after {} attempt{})",
                            req.method,
                            display_url(&req.url),
                            attempt + 1,
                            if attempt == 0 { "" } else { "s" }
                        );
                    }
                    let wait = wait
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.settings.max_retry_wait);
                    crate::progress::debug(&format!(
                        "{} {}: {reason}; retrying in {:.1}s",
                        req.method,
                        display_url(&req.url),
                        wait.as_secs_f64()
                    ));
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    /// Exponential backoff with full jitter: a random wait in [0, base·2^n].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.settings.max_retry_wait);
        ceiling.mul_f64(fastrand::f64().max(0.05))
    }

    fn wait_for_slot(&self) {
        if self.settings.rate_limit <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / self.settings.rate_limit);
        let start = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + interval;
            start
        };
        let now = Instant::now();
        if start > now {
            std::thread::sleep(start - now);
        }
    }

    fn attempt(
        &self,
        req: &Request,
        auth_header: Option<&(String, SecretString)>,
        credentials: bool,
    ) -> Result<Attempt> {
        self.wait_for_slot();

        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url.as_str());
        for (name, value) in &req.headers {
            if !credentials && req.is_secret_header(name, value) {
                continue;
            }
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = auth_header
            && !req.has_header(name)
        {
            builder = builder.header(name.as_str(), value.expose_secret());
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
            Err(err) => return self.transport_failure(req, err),
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
            .limit(MAX_BODY_BYTES)
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
        let wait = resp
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        Ok(Attempt::Retry {
            reason: format!("HTTP {status}"),
            wait,
            last: Some(resp),
        })
    }

    fn transport_failure(&self, req: &Request, err: ureq::Error) -> Result<Attempt> {
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
            ureq::Error::ConnectionFailed => "connection failed".to_owned(),
            other => other.to_string(),
        };
        let transient = !matches!(
            err,
            ureq::Error::BadUri(_)
                | ureq::Error::Http(_)
                | ureq::Error::InvalidProxyUrl
                | ureq::Error::Tls(_)
        );
        if transient && (req.idempotent || never_sent) {
            Ok(Attempt::Retry {
                reason,
                wait: None,
                last: None,
            })
        } else {
            bail!("{} {}: {reason}", req.method, display_url(&req.url))
        }
    }

    /// The header that carries the credentials, fetching an OAuth2 token if needed.
    fn auth_header(&self) -> Result<Option<(String, SecretString)>> {
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
    fn drop_token(&self, rejected: Option<&(String, SecretString)>) {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
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
        form.push_str(&format!("&scope={}", enc(scope)));
    }
    for (name, value) in &oauth.token_params {
        form.push_str(&format!("&{}={}", enc(name), enc(value)));
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
        form.push_str(&format!(
            "&client_id={}&client_secret={}",
            enc(&oauth.client_id),
            enc(oauth.client_secret.expose_secret())
        ));
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
        .and_then(|e| e.as_u64())
        // Renew a little early so a token never expires mid-request.
        .map(|secs| started + Duration::from_secs(secs.saturating_sub(30).max(1)));
    Ok(CachedToken {
        token: token.to_owned().into(),
        expires,
    })
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(12))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn basic_auth_encodes_like_rfc7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
    }

    /// The plain-http rule holds for every URL credentials would go to, and
    /// is checked before anything is sent (no lookup, no connection).
    #[test]
    fn credentials_never_leave_over_remote_plain_http() {
        let bound = |base: &str, insecure: bool| {
            Client::new(
                Settings {
                    retries: 0,
                    ..Settings::default()
                },
                Some(Auth::Bearer("tok-http-rule".to_owned().into())),
            )
            .bound(Binding {
                base: Url::parse(base).unwrap(),
                allow_insecure_http: insecure,
                follow_other_origins: false,
            })
        };
        let client = bound("http://api.invalid/v1", false);
        let req = Request::get(Url::parse("http://api.invalid/v1/users?page=2").unwrap());
        let err = client.send(&req).unwrap_err().to_string();
        assert!(err.contains("unencrypted"), "{err}");
        // Another origin: refused, both named.
        let req = Request::get(Url::parse("https://other.invalid/x").unwrap());
        let err = client.send(&req).unwrap_err().to_string();
        assert!(
            err.contains("https://other.invalid") && err.contains("http://api.invalid"),
            "{err}"
        );
        // Allowed: the request goes out (and fails to resolve the host).
        let client = bound("http://api.invalid/v1", true);
        let req = Request::get(Url::parse("http://api.invalid/v1/users").unwrap());
        let err = client.send(&req).unwrap_err().to_string();
        assert!(!err.contains("unencrypted"), "{err}");
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        let client = Client::new(
            Settings {
                max_retry_wait: Duration::from_secs(2),
                ..Settings::default()
            },
            None,
        );
        for n in 0..20 {
            assert!(client.backoff(n) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn hosts_are_looked_up_once_per_scheme_and_authority() {
        use ureq::unversioned::resolver::Resolver;
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let resolve = |uri: &str| {
            let uri: ureq::http::Uri = uri.parse().unwrap();
            let timeout = ureq::unversioned::transport::NextTimeout {
                after: ureq::unversioned::transport::time::Duration::from_secs(5),
                reason: ureq::Timeout::Resolve,
                per_read: None,
                per_write: None,
            };
            resolver.resolve(&uri, &config, timeout).unwrap().to_vec()
        };
        let first = resolve("http://127.0.0.1:8811/users?page=1");
        assert_eq!(first, ["127.0.0.1:8811".parse().unwrap()]);
        assert_eq!(resolve("http://127.0.0.1:8811/users?page=2"), first);
        assert_eq!(resolver.known.lock().unwrap().len(), 1);
        resolve("http://127.0.0.1:9000/");
        assert_eq!(resolver.known.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_socks_proxy_is_refused_and_an_http_one_is_not() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let err =
            refuse_socks_proxy(env(&[("https_proxy", "SOCKS5h://u:pw-1@proxy:1080")])).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("https_proxy names a SOCKS proxy (socks5h://"),
            "{text}"
        );
        assert!(!text.contains("pw-1"), "{text}");
        assert!(matches!(
            err.downcast_ref::<crate::exit::Error>(),
            Some(crate::exit::Error::Usage(_))
        ));
        refuse_socks_proxy(env(&[("HTTPS_PROXY", "http://proxy:3128")])).unwrap();
        refuse_socks_proxy(env(&[("NO_PROXY", "socks.example.com")])).unwrap();
        refuse_socks_proxy(env(&[])).unwrap();
    }
}
