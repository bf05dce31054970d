//! The one place that keeps secrets out of output: every credential and every
//! value read from the environment is registered here, in each form it can take
//! on the wire (percent-encoded in a path or a query, form-encoded, JSON-escaped,
//! inside a Basic header), and every message that leaves the process — stderr,
//! stdout, the journal — passes through [`redact`] or a [`Writer`].
//!
//! Matching is one pass of an Aho-Corasick automaton over the text, built again
//! only when a secret was registered since the last build.

use std::io::{self, Write};
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a masked secret is replaced with.
const MASK: &str = "***";

/// Secrets shorter than this are masked only as whole words (between
/// characters that are not letters or digits): a two-letter password would
/// otherwise be masked inside every word that contains it.
const SHORT: usize = 4;

/// The percent-encode sets a value meets on its way into a URL: the url
/// crate's path, path segment and query sets, and the template's path segment.
const URL_QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
const URL_PATH: &AsciiSet = &URL_QUERY.add(b'`').add(b'?').add(b'{').add(b'}');
const URL_SEGMENT: &AsciiSet = &URL_PATH.add(b'/').add(b'%');
/// Everything but RFC 3986's unreserved characters, as most encoders do.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// JavaScript's `encodeURIComponent`, which servers echo with.
const JS_COMPONENT: &AsciiSet = &COMPONENT
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*');

#[derive(Default)]
struct Registry {
    /// Every form of every secret, longest first.
    patterns: Vec<String>,
    /// Built from `patterns`; `None` when a secret was added since.
    automaton: Option<Arc<AhoCorasick>>,
}

fn registry() -> &'static RwLock<Registry> {
    static SECRETS: OnceLock<RwLock<Registry>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Registry::default()))
}

/// Remember a value that must never be printed, in every form it may take.
pub(crate) fn register(secret: &str) {
    if secret.is_empty() {
        return;
    }
    add(forms(secret));
}

/// Remember the HTTP Basic credentials `user:pass` as they travel: base64 of
/// the pair, standard and URL-safe, with and without padding. `user` and `pass`
/// are registered on their own by whoever read them.
pub(crate) fn register_basic(user: &str, pass: &str) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pair = format!("{user}:{pass}");
    add([STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|engine| engine.encode(&pair))
        .collect());
}

/// What a query key or value keeps as written: RFC 3986's unreserved
/// characters, `*` (as form encoding keeps it) and `$ , : @ / ?`, which a
/// query may hold (OData's `$top`, a `since=2024-01-01T00:00:00Z`, a path in
/// a value); `& = + # ;` and the rest are percent-encoded.
const QUERY_COMPONENT: &AsciiSet = &COMPONENT
    .remove(b'*')
    .remove(b'$')
    .remove(b',')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'?');

/// A query key or value as agentsync sends it: percent-encoded but for the
/// characters a query may hold as they are, a space as `+`.
pub(crate) fn query_component(value: &str) -> String {
    utf8_percent_encode(value, QUERY_COMPONENT)
        .to_string()
        .replace("%20", "+")
}

/// The forms of `secret` on the wire and in output.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    let json = serde_json::to_string(secret).expect("a string serializes");
    out.push(json[1..json.len() - 1].to_owned());
    out.push(format!("{secret:?}").trim_matches('"').to_owned());
    for set in [
        NON_ALPHANUMERIC,
        COMPONENT,
        JS_COMPONENT,
        URL_QUERY,
        URL_PATH,
        URL_SEGMENT,
    ] {
        out.push(utf8_percent_encode(secret, set).to_string());
    }
    // Query components and form bodies: `+` for a space, `%2B` for a plus.
    out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    out.push(query_component(secret));
    // Servers that echo a URL may write the hex digits in lower case.
    let lower: Vec<String> = out.iter().filter_map(|f| lower_hex(f)).collect();
    out.extend(lower);
    out
}

/// `f` with the hex digits of its `%XX` escapes in lower case, if it has any
/// with letters.
fn lower_hex(f: &str) -> Option<String> {
    let bytes = f.as_bytes();
    let mut out = String::with_capacity(f.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let esc = &f[i..i + 3];
            let low = esc.to_ascii_lowercase();
            changed |= low != esc;
            out.push_str(&low);
            i += 3;
        } else {
            let ch = f[i..].chars().next().expect("inside the string");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    changed.then_some(out)
}

fn add(forms: Vec<String>) {
    let mut reg = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut added = false;
    for f in forms {
        if !f.is_empty() && !reg.patterns.contains(&f) {
            reg.patterns.push(f);
            added = true;
        }
    }
    if added {
        // Longest first, so that a secret that contains another is masked whole.
        reg.patterns.sort_by_key(|s| std::cmp::Reverse(s.len()));
        reg.automaton = None;
    }
}

fn automaton() -> Option<Arc<AhoCorasick>> {
    {
        let reg = registry()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reg.patterns.is_empty() {
            return None;
        }
        if let Some(a) = &reg.automaton {
            return Some(a.clone());
        }
    }
    let mut reg = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if reg.automaton.is_none() {
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&reg.patterns)
            .expect("secret patterns build an automaton");
        reg.automaton = Some(Arc::new(built));
    }
    reg.automaton.clone()
}

/// Does `text` hold a registered secret?
pub(crate) fn contains_secret(text: &str) -> bool {
    redact(text) != text
}

/// Replace every registered secret in `text` with `***`.
pub(crate) fn redact(text: &str) -> String {
    let Some(ac) = automaton() else {
        return text.to_owned();
    };
    let bytes = text.as_bytes();
    let word = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in ac.find_iter(text) {
        let len = m.end() - m.start();
        if len < SHORT && (m.start() > 0 && word(m.start() - 1) || word(m.end())) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(MASK);
        last = m.end();
    }
    if last == 0 {
        return text.to_owned();
    }
    out.push_str(&text[last..]);
    out
}

/// A writer that masks secrets before they reach `inner`: text is passed on a
/// line at a time (so a secret is never split between two writes), the rest
/// on `flush` and when dropped.
pub(crate) struct Writer<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(inner: W) -> Self {
        Writer {
            inner,
            pending: Vec::new(),
        }
    }

    fn pass(&mut self, upto: usize) -> io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending[..upto]).into_owned();
        self.pending.drain(..upto);
        self.inner.write_all(redact(&text).as_bytes())
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(nl) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.pass(nl + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let all = self.pending.len();
        self.pass(all)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Writer<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_wire_form() {
        register("sk_live/abc+def ghi%");
        for shown in [
            "sk_live/abc+def ghi%",
            "sk_live%2Fabc%2Bdef%20ghi%25",
            "sk_live%2fabc%2bdef%20ghi%25",
            "sk_live%2Fabc%2Bdef+ghi%25",
            "sk_live/abc+def%20ghi%",
            "sk_live%2Fabc+def%20ghi%25",
        ] {
            let out = redact(&format!("GET https://x/?k={shown}&p=1 failed"));
            assert_eq!(out, "GET https://x/?k=***&p=1 failed", "{shown}");
        }
    }

    #[test]
    fn masks_basic_pairs_in_base64() {
        register_basic("Aladdin", "open sesame");
        assert_eq!(
            redact("echo: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== and QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
            "echo: Basic *** and ***"
        );
    }

    #[test]
    fn masks_json_escaped_values() {
        register("quo\"te\\d-secret");
        let json = serde_json::to_string(&serde_json::json!({"e": "x quo\"te\\d-secret"})).unwrap();
        assert_eq!(redact(&json), r#"{"e":"x ***"}"#);
    }

    #[test]
    fn short_values_are_masked_as_whole_words_only() {
        register("xq7");
        assert_eq!(redact("pass xq7, axq7b"), "pass ***, axq7b");
    }

    #[test]
    fn the_writer_masks_across_writes() {
        register("w-secret-42");
        let mut buf = Vec::new();
        {
            let mut w = Writer::new(&mut buf);
            w.write_all(b"a w-sec").unwrap();
            w.write_all(b"ret-42 b\nc w-secret-42").unwrap();
        }
        assert_eq!(String::from_utf8(buf).unwrap(), "a *** b\nc ***");
    }
}
