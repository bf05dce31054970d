//! The test RSA key (`fixtures/jwt/test-rsa-key.pem`) as an authorization
//! server holds it, and the RS256 check such a server makes of an assertion.

use base64::Engine as _;
use serde_json::Value;

/// The test key, PEM, without its first line of explanation.
pub fn private_key_pem() -> String {
    let text = super::fixture("jwt/test-rsa-key.pem");
    let start = text.find("-----BEGIN").unwrap();
    text[start..].to_owned()
}

/// The public half of the test key (PKCS#1 DER).
pub fn public_key() -> Vec<u8> {
    let pem = private_key_pem();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec()
}

/// The header and claims of a JWT, decoded (`null` where a part is not
/// JSON), and whether its RS256 signature verifies with `public_key`
/// (PKCS#1 DER).
pub fn decode(jwt: &str, public_key: &[u8]) -> (Value, Value, bool) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return (Value::Null, Value::Null, false);
    };
    let json = |p: &str| {
        b64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let signature = b64.decode(signature).unwrap_or_default();
    let verified = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(format!("{header}.{claims}").as_bytes(), &signature)
    .is_ok();
    (json(header), json(claims), verified)
}
