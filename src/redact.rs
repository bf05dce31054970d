//! The one place that keeps secrets out of output: every credential and every
//! value read from the environment is registered here, and every message that
//! leaves the process passes through [`redact`].

use std::sync::{Mutex, OnceLock};

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember a value that must never be printed. Very short values are not
/// registered: masking every "1" in a message would hide more than it protects.
pub(crate) fn register(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut list = registry().lock().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|s| s == secret) {
        list.push(secret.to_owned());
        // Longest first, so a secret that contains another is masked whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Replace every registered secret in `text` with `***`.
pub(crate) fn redact(text: &str) -> String {
    let list = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
        // Values also travel percent-encoded in URLs.
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        if encoded != *secret && out.contains(encoded.as_str()) {
            out = out.replace(encoded.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_plain_and_encoded() {
        register("s3cr3t/t0ken");
        let msg = "GET https://x/?k=s3cr3t%2Ft0ken failed; header s3cr3t/t0ken";
        let out = redact(msg);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out.matches("***").count(), 2);
    }

    #[test]
    fn short_values_are_not_masked() {
        register("abc");
        assert_eq!(redact("abc page"), "abc page");
    }
}
