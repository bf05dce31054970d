//! What a client trusts and how it reaches the network: the bundled, system and
//! `ca_file` root certificates, and the refusal of a SOCKS proxy in the environment.

use std::sync::{Arc, OnceLock};

use anyhow::Result;

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
pub(super) fn trusted_roots(extra: &[ureq::tls::Certificate<'static>]) -> ureq::tls::RootCerts {
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

#[cfg(test)]
mod tests {
    use super::*;

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
