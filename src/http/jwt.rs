//! The `OAuth2` JWT bearer grant (RFC 7523): a short-lived assertion signed with
//! the client's private key — RS256 for an RSA key, ES256 for a P-256 key —
//! exchanged for an access token. Google service accounts and Salesforce's
//! server-to-server flow use it.
//!
//! Signing is `ring`'s, the crate that already does the TLS of every request
//! here: `jsonwebtoken`'s current majors sign with either `aws-lc-rs` (a second
//! native crypto stack) or RustCrypto's `rsa` (RUSTSEC-2023-0071). A JWT's
//! framing is base64url of two JSON objects, written below.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use secrecy::SecretString;

use crate::redact;

/// How long an assertion is valid: RFC 7523 asks for a short life, Google
/// accepts up to an hour.
pub(crate) const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The grant type of RFC 7523 §2.1.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A private key that signs assertions. Its bytes are never shown.
pub(crate) enum SigningKey {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rs256(_) => "SigningKey(RS256, private)",
            SigningKey::Es256(_) => "SigningKey(ES256, private)",
        })
    }
}

impl SigningKey {
    /// The key of a PEM file: RSA (PKCS#8 or PKCS#1) or EC P-256 (PKCS#8).
    /// The error says what is wrong, never what the file holds; every base64
    /// line of the key is registered as a secret first.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, String> {
        register_pem_lines(pem);
        let der = super::tls::private_key_from_pem(pem)?;
        Self::from_der(&der)
    }

    fn from_der(der: &PrivateKeyDer<'_>) -> Result<Self, String> {
        match der {
            PrivateKeyDer::Pkcs1(rsa) => RsaKeyPair::from_der(rsa.secret_pkcs1_der())
                .map(SigningKey::Rs256)
                .map_err(|e| format!("holds an RSA key that cannot be used: {e}")),
            PrivateKeyDer::Sec1(_) => Err(
                "holds an EC PRIVATE KEY (SEC1): convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
                    .to_owned(),
            ),
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der();
                if let Ok(rsa) = RsaKeyPair::from_pkcs8(bytes) {
                    return Ok(SigningKey::Rs256(rsa));
                }
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    bytes,
                    &SystemRandom::new(),
                )
                .map(SigningKey::Es256)
                .map_err(|_| {
                    "holds a key that is neither RSA nor EC P-256 (RS256 and ES256 are supported)"
                        .to_owned()
                })
            }
            _ => Err("holds a key of an unknown kind".to_owned()),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            SigningKey::Rs256(_) => "RS256",
            SigningKey::Es256(_) => "ES256",
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rs256(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| anyhow!("signing the JWT assertion failed"))?;
                Ok(out)
            }
            SigningKey::Es256(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| anyhow!("signing the JWT assertion failed")),
        }
    }
}

/// Register every base64 line of a PEM file, so that no line of a key shows
/// up in any output, whatever reads it.
fn register_pem_lines(pem: &[u8]) {
    let text = String::from_utf8_lossy(pem);
    for line in text.lines().map(str::trim) {
        if line.len() >= 16 && !line.starts_with("-----") {
            redact::register(line);
        }
    }
}

/// Who asserts what, to whom: the claims of RFC 7523 §3 besides the times.
#[derive(Debug)]
pub(crate) struct JwtBearer {
    pub key: SigningKey,
    /// `iss`: the client (a service account's `client_email`).
    pub issuer: String,
    /// `sub`: the user to act as, if any (Google's domain-wide delegation).
    pub subject: Option<String>,
    /// `aud`: the token endpoint, or what the authorization server says.
    pub audience: String,
    /// `kid` of the header: a service account's `private_key_id`.
    pub key_id: Option<String>,
    /// Put the scope into the assertion (Google's form) instead of the form body.
    pub scope_in_claims: bool,
}

impl JwtBearer {
    /// A fresh assertion, valid from `now` for [`ASSERTION_LIFETIME`], with a
    /// unique `jti`. It is a credential: registered as a secret.
    pub(crate) fn assertion(&self, scope: Option<&str>, now: SystemTime) -> Result<SecretString> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| anyhow!("no randomness for the JWT assertion's jti"))?;
        let mut header = serde_json::json!({"alg": self.key.alg(), "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        });
        if let Some(sub) = &self.subject {
            claims["sub"] = sub.as_str().into();
        }
        if self.scope_in_claims
            && let Some(scope) = scope
        {
            claims["scope"] = scope.into();
        }
        let signed = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self.key.sign(signed.as_bytes())?;
        let assertion = format!("{signed}.{}", b64.encode(signature));
        redact::register(&assertion);
        Ok(assertion.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn decode(part: &str) -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_es256_assertion_verifies_and_carries_its_claims() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        let jwt = JwtBearer {
            key: SigningKey::Es256(key),
            issuer: "svc@example.com".into(),
            subject: Some("admin@example.com".into()),
            audience: "https://idp.example/token".into(),
            key_id: Some("k1".into()),
            scope_in_claims: true,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = jwt.assertion(Some("a b"), now).unwrap();
        let second = jwt.assertion(Some("a b"), now).unwrap();
        let parts: Vec<&str> = first.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
        );
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "svc@example.com");
        assert_eq!(claims["sub"], "admin@example.com");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(claims["scope"], "a b");
        assert_eq!(claims["iat"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_300u64);
        let other: Vec<&str> = second.expose_secret().split('.').collect();
        assert_ne!(decode(other[1])["jti"], claims["jti"], "jti is unique");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // The assertion is a credential: masked wherever it would be shown.
        assert_eq!(redact::redact(first.expose_secret()), "***");
    }

    #[test]
    fn a_file_that_is_not_a_usable_key_says_why_without_its_content() {
        let err = SigningKey::from_pem(b"not a key at all").unwrap_err();
        assert!(err.contains("is not PEM"), "{err}");
        let err = SigningKey::from_pem(
            b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Rs\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(err.contains("no private key"), "{err}");
        let err = SigningKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.contains("neither RSA nor EC P-256"), "{err}");
        assert!(!err.contains("QUJD"), "{err}");
    }
}
