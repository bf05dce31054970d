//! Is an event its sender's? Standard Webhooks (HMAC-SHA256 over
//! `{id}.{timestamp}.{body}`, any one `v1,` signature matching, the timestamp
//! within the tolerance either way), an ECDSA P-256 signature of the raw body,
//! or a shared secret in a header. Every comparison takes constant time; the
//! secret and the key are read when the listener starts.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hyper::HeaderMap;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::metrics::Reason;
use crate::config::ListenAuth;
use crate::exit;
use crate::template::EnvLookup;

/// How the listener checks each event.
pub(crate) enum Verifier {
    StandardWebhooks {
        key: SecretBox<Vec<u8>>,
        tolerance: Duration,
    },
    EcdsaP256 {
        key: Box<VerifyingKey>,
        header: String,
    },
    Header {
        header: String,
        secret: SecretBox<Vec<u8>>,
    },
}

/// The secret in environment variable `var`, or the usage error that stops
/// the listener.
fn secret(var: &str, env: EnvLookup, auth: &str) -> Result<String> {
    match env(var) {
        Some(v) if !v.is_empty() => {
            crate::redact::register(&v);
            Ok(v)
        }
        _ => Err(exit::usage(format!(
            "[listen] auth = {auth:?}: environment variable {var} is not set; the listener does not start without its secret"
        ))),
    }
}

impl Verifier {
    /// The verifier of `auth`, with its secret or key read now.
    pub(crate) fn load(auth: &ListenAuth, tolerance: Duration, env: EnvLookup) -> Result<Self> {
        match auth {
            ListenAuth::StandardWebhooks { secret_env } => {
                let text = secret(secret_env, env, auth.name())?;
                let key = match text.strip_prefix("whsec_") {
                    Some(b64) => STANDARD.decode(b64.trim()).map_err(|_| {
                        exit::usage(format!(
                            "[listen] {secret_env}: the text after whsec_ is not base64"
                        ))
                    })?,
                    None => text.into_bytes(),
                };
                Ok(Verifier::StandardWebhooks {
                    key: SecretBox::new(Box::new(key)),
                    tolerance,
                })
            }
            ListenAuth::Header { header, secret_env } => Ok(Verifier::Header {
                header: header.clone(),
                secret: SecretBox::new(Box::new(
                    secret(secret_env, env, auth.name())?.into_bytes(),
                )),
            }),
            ListenAuth::EcdsaP256 {
                public_key_file,
                signature_header,
            } => {
                let shown = public_key_file.display();
                let pem = std::fs::read_to_string(public_key_file)
                    .with_context(|| format!("reading [listen] public_key_file {shown}"))
                    .map_err(|e| exit::usage(format!("{e:#}")))?;
                let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
                    exit::usage(format!(
                        "[listen] public_key_file {shown}: not a PEM public key of P-256: {e}"
                    ))
                })?;
                Ok(Verifier::EcdsaP256 {
                    key: Box::new(key),
                    header: signature_header.clone(),
                })
            }
        }
    }

    /// Check one request's headers and raw body, at Unix time `now`.
    pub(crate) fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Reason> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        match self {
            Verifier::StandardWebhooks { key, tolerance } => {
                let (Some(id), Some(timestamp), Some(signatures)) = (
                    text("webhook-id"),
                    text("webhook-timestamp"),
                    text("webhook-signature"),
                ) else {
                    return Err(Reason::Unsigned);
                };
                let ts: i64 = timestamp.parse().map_err(|_| Reason::BadSignature)?;
                let window = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
                if now.abs_diff(ts) > window.unsigned_abs() {
                    return Err(Reason::Stale);
                }
                let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
                    .map_err(|_| Reason::BadSignature)?;
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                let matched = signatures
                    .split_whitespace()
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .filter_map(|b64| STANDARD.decode(b64).ok())
                    .any(|sig| mac.clone().verify_slice(&sig).is_ok());
                if matched {
                    Ok(())
                } else {
                    Err(Reason::BadSignature)
                }
            }
            Verifier::EcdsaP256 { key, header } => {
                let b64 = text(header).ok_or(Reason::Unsigned)?;
                let der = STANDARD.decode(b64).map_err(|_| Reason::BadSignature)?;
                let signature = Signature::from_der(&der).map_err(|_| Reason::BadSignature)?;
                key.verify(body, &signature)
                    .map_err(|_| Reason::BadSignature)
            }
            Verifier::Header { header, secret } => {
                let given = headers.get(header.as_str()).ok_or(Reason::Unsigned)?;
                if bool::from(given.as_bytes().ct_eq(secret.expose_secret())) {
                    Ok(())
                } else {
                    Err(Reason::BadSignature)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn signed(key: &[u8], id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert("webhook-timestamp", HeaderValue::from(ts));
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(&format!("v1,AAAA v1,{sig}")).unwrap(),
        );
        h
    }

    #[test]
    fn standard_webhooks_signatures_and_the_window() {
        let env = |_: &str| Some(format!("whsec_{}", STANDARD.encode(b"0123456789abcdef")));
        let auth = ListenAuth::StandardWebhooks {
            secret_env: "S".into(),
        };
        let v = Verifier::load(&auth, Duration::from_secs(300), &env).unwrap();
        let body = br#"{"id":"e1"}"#;
        let now = 1_700_000_000;
        let ok = signed(b"0123456789abcdef", "msg_1", now, body);
        assert_eq!(v.verify(&ok, body, now), Ok(()));
        assert_eq!(v.verify(&ok, body, now + 299), Ok(()));
        assert_eq!(v.verify(&ok, body, now - 301), Err(Reason::Stale));
        assert_eq!(v.verify(&ok, body, now + 301), Err(Reason::Stale));
        assert_eq!(v.verify(&ok, b"{}", now), Err(Reason::BadSignature));
        let other = signed(b"another key, not the right one", "msg_1", now, body);
        assert_eq!(v.verify(&other, body, now), Err(Reason::BadSignature));
        assert_eq!(
            v.verify(&HeaderMap::new(), body, now),
            Err(Reason::Unsigned)
        );
    }
}
