//! What a client trusts, what it shows and how it reaches the network: the
//! bundled, system and `ca_file` root certificates, the client certificate of
//! mutual TLS (checked against its key before any request), and the refusal
//! of a SOCKS proxy in the environment.

use std::sync::{Arc, OnceLock};

use anyhow::Result;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// Which file of a client identity a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityFile {
    Certificate,
    Key,
}

/// What is wrong with a client certificate or its key, without any of the
/// key's bytes: the message says what to fix.
#[derive(Debug)]
pub(crate) struct IdentityError {
    pub file: IdentityFile,
    pub message: String,
}

fn identity_error(file: IdentityFile, message: impl Into<String>) -> IdentityError {
    IdentityError {
        file,
        message: message.into(),
    }
}

/// What a key that belongs to another certificate is told.
pub(crate) const KEY_MISMATCH: &str = "does not match the certificate";

/// Does `bytes` look like PEM at all (a `-----BEGIN ` line)?
fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The one private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC),
/// unencrypted. The error says what the file holds instead; never its bytes.
pub(crate) fn private_key_from_pem(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if !looks_like_pem(pem_bytes) {
        return Err("is not PEM (no -----BEGIN line)".to_owned());
    }
    if pem_bytes.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
        return Err(
            "holds an encrypted private key: agentsync reads an unencrypted key (protect the file with its permissions), e.g. `openssl pkcs8 -topk8 -nocrypt`"
                .to_owned(),
        );
    }
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(
            "holds no private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_owned(),
        ),
        // The error names a position or a section, never the key's content.
        Err(e) => Err(format!("is not valid PEM: {e}")),
    }
}

/// The client certificate of mutual TLS: the chain in `cert_pem` (the
/// client's own certificate first) and its private key in `key_pem`, checked
/// to belong together.
pub(crate) fn client_identity(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<ureq::tls::ClientCert, IdentityError> {
    use IdentityFile::{Certificate, Key};
    if !looks_like_pem(cert_pem) {
        return Err(identity_error(
            Certificate,
            "is not PEM (no -----BEGIN line)",
        ));
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| identity_error(Certificate, format!("is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(identity_error(
            Certificate,
            "holds no certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let key = private_key_from_pem(key_pem).map_err(|m| identity_error(Key, m))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        identity_error(
            Key,
            format!(
                "holds a private key that cannot be used (RSA, ECDSA P-256/P-384 or Ed25519): {e}"
            ),
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(identity_error(Key, KEY_MISMATCH));
        }
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => {
            return Err(identity_error(
                Certificate,
                format!("holds a certificate that cannot be read: {e}"),
            ));
        }
    }
    let certs: Vec<ureq::tls::Certificate<'static>> = chain
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    // The same first key that was checked above, in ureq's type.
    let key = ureq::tls::PrivateKey::from_pem(key_pem)
        .map_err(|e| identity_error(Key, format!("cannot be read: {e}")))?;
    Ok(ureq::tls::ClientCert::new_with_certs(&certs, key))
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
