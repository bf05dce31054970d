//! A request as the client sends it and a response as it was read: headers,
//! body, the credentials' marks, and how both are shown in messages (URLs
//! without user info, bodies cut and masked).

use anyhow::{Result, bail};
use url::Url;

use crate::redact;

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
    pub(super) fn is_secret_header(&self, name: &str, value: &str) -> bool {
        self.secret_headers
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
            || redact::contains_secret(value)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(super) fn has_header(&self, name: &str) -> bool {
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

    /// The wait this answer asks for before another try: `Retry-After`, else
    /// the rate-limit reset headers (`X-Rate-Limit-Reset`, `RateLimit-Reset`).
    pub(crate) fn wait_hint(&self) -> Option<std::time::Duration> {
        super::retry::wait_hint(
            |name| self.header(name).map(str::to_owned),
            std::time::SystemTime::now(),
        )
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
pub(super) fn shown_start(body: &[u8]) -> String {
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
