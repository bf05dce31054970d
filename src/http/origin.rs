//! Where a client's credentials may go: the origin a client is bound to, the
//! plain-http rule, and redirects, which are followed within the origin only.

use anyhow::{Result, anyhow, bail};
use url::Url;

use super::{Client, Request, Response, display_url};
use crate::redact;

/// How many redirects one request follows, all within its origin.
pub(super) const MAX_REDIRECTS: usize = 5;

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

impl Client {
    /// May the credentials go with `req`? An error when the request must not
    /// be sent at all: another origin (unless following those is allowed), or
    /// credentials over plain http to another machine.
    pub(super) fn credentials_for(&self, req: &Request) -> Result<bool> {
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
    // A redirect is judged against the origin of the request it answers,
    // which is the binding's own for every request that carries credentials;
    // it stays with the binding's other rules.
    #[allow(clippy::unused_self)]
    pub(super) fn redirect(&self, req: &Request, resp: &Response) -> Result<Option<Request>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Auth, Settings};

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
}
