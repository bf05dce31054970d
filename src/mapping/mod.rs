//! jq in agentsync: every expression of the config is compiled once when the
//! config is validated ([`Jq::compile`]) and run per page or per record. The
//! mapping turns each record into `{id, email}` users ([`map_record_into`]).
//! Plain projections skip jq altogether: [`direct`] reads them from the page
//! bytes, with the same users and skip reasons as jq would give.

pub(crate) mod direct;

use anyhow::{Result, anyhow, bail};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::{Num, Val};

type Data = data::JustLut<Val>;

/// A compiled jq filter with the text it came from.
pub(crate) struct Jq {
    source: String,
    filter: jaq_core::Filter<Data>,
    /// Its name in [`crate::jq_budget`], which bounds every evaluation.
    budget: u32,
}

impl std::fmt::Debug for Jq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jq({:?})", self.source)
    }
}

/// A jq compile error with its byte offset inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JqError {
    pub offset: usize,
    pub message: String,
}

impl Jq {
    pub(crate) fn compile(code: &str) -> Result<Self, JqError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let offset_of = |part: &str| jaq_core::load::span(code, part).start;
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                use jaq_core::load::Error;
                let (_, err) = errs.into_iter().next().expect("a failed load has an error");
                match err {
                    Error::Lex(errs) => {
                        let (expect, at) = &errs[0];
                        JqError {
                            offset: offset_of(at),
                            message: format!("expected {}", expect.as_str()),
                        }
                    }
                    Error::Parse(errs) => {
                        // `found` is the rest of the expression from the unexpected token.
                        let (expect, found) = &errs[0];
                        let token: String = found
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .take(12)
                            .collect();
                        if token.is_empty() {
                            JqError {
                                offset: code.len(),
                                message: format!(
                                    "expected {}, found the end of the expression",
                                    expect.as_str()
                                ),
                            }
                        } else {
                            JqError {
                                offset: offset_of(found),
                                message: format!("expected {}, found `{token}`", expect.as_str()),
                            }
                        }
                    }
                    Error::Io(errs) => JqError {
                        offset: errs.first().map_or(0, |(at, _)| offset_of(at)),
                        message: errs
                            .first()
                            .map_or_else(|| "cannot load module".into(), |(_, m)| m.clone()),
                    },
                }
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                let (_, errs) = errs
                    .into_iter()
                    .next()
                    .expect("a failed compile has an error");
                let (name, undefined) = &errs[0];
                JqError {
                    offset: offset_of(name),
                    message: format!("undefined {} `{name}`", undefined.as_str()),
                }
            })?;
        Ok(Jq {
            source: code.to_owned(),
            filter,
            budget: crate::jq_budget::register(code),
        })
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Every output of the filter on `input`, or the first runtime error.
    pub(crate) fn run(&self, input: Val) -> Result<Vec<Val>> {
        self.outputs(input)
            .map(|out| out.map_err(|e| anyhow!("{e}")))
            .collect()
    }

    /// The outputs of the filter on `input` as they come; an error as its
    /// message. At most [`crate::jq_budget::MAX_OUTPUTS`], within the page's time.
    fn outputs(&self, input: Val) -> impl Iterator<Item = Result<Val, String>> + '_ {
        self.outputs_max(input, crate::jq_budget::MAX_OUTPUTS)
    }

    fn outputs_max(
        &self,
        input: Val,
        max: usize,
    ) -> impl Iterator<Item = Result<Val, String>> + '_ {
        crate::jq_budget::watch(self.budget, max, move || {
            let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
            self.filter
                .id
                .run((ctx, input))
                .map(|out| jaq_core::unwrap_valr(out).map_err(|e| e.to_string()))
        })
    }

    /// The single output of the filter, for page-level values (`total`, `cursor`…).
    pub(crate) fn run_one(&self, input: &Val) -> Result<Val> {
        let mut outs = self
            .outputs_max(input.clone(), 1)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        match outs.len() {
            1 => Ok(outs.pop().expect("one output")),
            0 => Ok(Val::Null),
            n => bail!("`{}` gave {n} values, expected one", self.source),
        }
    }
}

/// One user of the source: the external ID and the email it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct User {
    pub id: String,
    pub email: String,
}

/// Run the mapping on one record: zero or more users, or the reason it failed.
#[cfg(test)]
pub(crate) fn map_record(mapping: &Jq, record: Val) -> Result<Vec<User>, String> {
    let mut users = Vec::new();
    map_record_into(mapping, record, &mut users).map(|()| users)
}

/// Run the mapping on one record and append its users to `users`; on failure
/// nothing of this record is appended.
pub(crate) fn map_record_into(
    mapping: &Jq,
    record: Val,
    users: &mut Vec<User>,
) -> Result<(), String> {
    let before = users.len();
    // A handle on the record (values are shared, not copied), for its keys
    // when the mapping's output lacks a field.
    let input = record.clone();
    for out in mapping.outputs(record) {
        let checked = out
            .map_err(|e| format!("jq error: {e}"))
            .and_then(|out| to_user(&out));
        match checked {
            Ok(user) => users.push(user),
            Err(reason) if reason.ends_with(" is missing") => {
                users.truncate(before);
                return Err(match keys_named(&input) {
                    Some(keys) => format!("{reason} (the record has {keys})"),
                    None => reason,
                });
            }
            Err(reason) => {
                users.truncate(before);
                return Err(reason);
            }
        }
    }
    Ok(())
}

/// At most this many keys of an object are named, each cut to
/// [`KEY_CHARS_SHOWN`] characters: they come from a server.
const KEYS_SHOWN: usize = 8;
const KEY_CHARS_SHOWN: usize = 40;

/// The keys an object has, for a message (`keys: id, mail, … (12 in all)`),
/// bounded; `None` when `value` is not an object. Escaping is the printer's.
pub(crate) fn keys_named(value: &Val) -> Option<String> {
    let Val::Obj(obj) = value else {
        return None;
    };
    if obj.is_empty() {
        return Some("no keys".into());
    }
    let mut names: Vec<String> = obj
        .keys()
        .take(KEYS_SHOWN)
        .map(|k| {
            let name = match k {
                Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
                other => other.to_string(),
            };
            match name.char_indices().nth(KEY_CHARS_SHOWN) {
                Some((cut, _)) => format!("{}…", &name[..cut]),
                None => name,
            }
        })
        .collect();
    if obj.len() > KEYS_SHOWN {
        names.push(format!("… ({} in all)", obj.len()));
    }
    Some(format!("keys: {}", names.join(", ")))
}

fn to_user(out: &Val) -> Result<User, String> {
    let Val::Obj(obj) = out else {
        return Err(format!("mapping output is {}, not an object", kind(out)));
    };
    let get = |key: &str| obj.get(&Val::utf8_str(key.as_bytes().to_vec()));
    let id = match get("id") {
        None | Some(Val::Null) => return Err("id is missing".into()),
        Some(v) => id_string(v)?,
    };
    let email = match get("email") {
        Some(Val::TStr(s)) => String::from_utf8_lossy(s),
        None | Some(Val::Null) => return Err("email is missing".into()),
        Some(other) => return Err(format!("email is not a string (it is {})", kind(other))),
    };
    let email = checked_email(&email)?;
    Ok(User { id, email })
}

/// The email of a user, if it is an address with one `@`.
fn checked_email(email: &str) -> Result<String, String> {
    if email.matches('@').count() != 1 || email.starts_with('@') || email.ends_with('@') {
        return Err(format!("email {email:?} is not an address with one @"));
    }
    Ok(email.to_owned())
}

/// A string ID without the whitespace around it: a file sink trims what it
/// reads back, so an untrimmed ID would never converge.
fn checked_id(id: &str) -> Result<String, String> {
    match id.trim() {
        "" => Err("id is an empty string".into()),
        id => Ok(id.to_owned()),
    }
}

fn id_string(v: &Val) -> Result<String, String> {
    match v {
        Val::TStr(s) => checked_id(&String::from_utf8_lossy(s)),
        Val::Num(Num::Int(i)) => Ok(i.to_string()),
        Val::Num(Num::BigInt(i)) => Ok(i.to_string()),
        Val::Num(Num::Dec(d)) if d.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            Ok(d.to_string())
        }
        #[allow(clippy::cast_possible_truncation)] // a whole number below 2^53: exact
        Val::Num(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Ok(format!("{}", *f as i64))
        }
        Val::Num(n) => Err(format!("id {n} is not an integer")),
        other => Err(format!(
            "id is not a string or an integer (it is {})",
            kind(other)
        )),
    }
}

/// The jq type name of a value, for messages.
pub(crate) fn kind(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::TStr(_) | Val::BStr(_) => "a string",
        Val::Arr(_) => "an array",
        Val::Obj(_) => "an object",
    }
}

/// A page-level value as a count (`total`, `count`): a non-negative integer.
pub(crate) fn as_count(v: &Val, what: &str) -> Result<Option<u64>> {
    match v {
        Val::Null => Ok(None),
        Val::Num(n) => match n.as_isize().and_then(|i| u64::try_from(i).ok()) {
            Some(count) => Ok(Some(count)),
            None => match n {
                // Whole and not negative; `as` saturates one beyond u64.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Num::Float(f) if *f >= 0.0 && f.fract() == 0.0 => Ok(Some(*f as u64)),
                Num::Dec(d) => d
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| anyhow!("{what} is {d}, not a count")),
                _ => bail!("{what} is {n}, not a count"),
            },
        },
        Val::TStr(s) => {
            let s = String::from_utf8_lossy(s);
            s.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| anyhow!("{what} is the string {s:?}, not a count"))
        }
        other => bail!("{what} is {}, not a number", kind(other)),
    }
}

/// A page-level value as a boolean (`has_more`).
pub(crate) fn as_bool(v: &Val, what: &str) -> Result<Option<bool>> {
    match v {
        Val::Null => Ok(None),
        Val::Bool(b) => Ok(Some(*b)),
        other => bail!("{what} is {}, not a boolean", kind(other)),
    }
}

/// A page-level value as text (`cursor`, `next_url`); null and "" mean none.
pub(crate) fn as_text(v: &Val, what: &str) -> Result<Option<String>> {
    match v {
        Val::Null => Ok(None),
        Val::TStr(s) | Val::BStr(s) if s.is_empty() => Ok(None),
        Val::TStr(s) | Val::BStr(s) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
        Val::Num(n) => Ok(Some(n.to_string())),
        other => bail!("{what} is {}, not a string", kind(other)),
    }
}

/// The deepest nesting of arrays and objects a response may have. jaq's
/// parser recurses once per level, so a hostile page of 100 000 `[` would
/// overflow the stack; `serde_json` stops at the same depth.
pub(crate) const MAX_DEPTH: usize = 128;

/// Refuse JSON nested deeper than [`MAX_DEPTH`], counted by one scan of the
/// bytes (brackets inside strings do not count) before anything recurses.
pub(crate) fn check_depth(bytes: &[u8]) -> Result<()> {
    if scan(bytes).too_deep {
        bail!("the response nests deeper than {MAX_DEPTH} levels");
    }
    Ok(())
}

/// What one pass over JSON bytes found, ahead of parsing them.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    pub too_deep: bool,
    /// A `\u` escape of a UTF-16 surrogate that is not a high one followed by
    /// a low one (jq's reader refuses it; `serde_json` only where it decodes).
    pub lone_surrogate: bool,
}

/// Scan JSON bytes for nesting and surrogate escapes, without parsing them.
/// Invalid JSON scans as well as it can: the parser will say what is wrong.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let hex = |at: usize| {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut found = Scan::default();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Inside a string only `"` and `\\` matter: jump between them.
                i += 1;
                loop {
                    let Some(p) = bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') else {
                        return found;
                    };
                    i += p;
                    if bytes[i] == b'"' {
                        break;
                    }
                    match bytes.get(i + 1) {
                        Some(b'u') => match hex(i + 2) {
                            Some(0xD800..=0xDBFF)
                                if bytes.get(i + 6..i + 8) == Some(b"\\u")
                                    && matches!(hex(i + 8), Some(0xDC00..=0xDFFF)) =>
                            {
                                i += 12;
                            }
                            Some(0xD800..=0xDFFF) | None => {
                                found.lone_surrogate = true;
                                i += 2;
                            }
                            Some(_) => i += 6,
                        },
                        _ => i += 2,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    found.too_deep = true;
                    return found;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    found
}

/// Parse a response body as JSON.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Val> {
    check_depth(bytes)?;
    jaq_json::read::parse_single(bytes).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Val {
        parse_json(s.as_bytes()).unwrap()
    }

    #[test]
    fn maps_integer_ids_to_strings() {
        let jq = Jq::compile("{id: .punch_clock_id, email: .punch_clock_email}").unwrap();
        let users = map_record(
            &jq,
            json(r#"{"punch_clock_id": 7, "punch_clock_email": "a@x.com"}"#),
        )
        .unwrap();
        assert_eq!(
            users,
            [User {
                id: "7".into(),
                email: "a@x.com".into()
            }]
        );
    }

    #[test]
    fn zero_or_many_outputs() {
        let jq = Jq::compile("select(.active) | {id, email}").unwrap();
        assert_eq!(
            map_record(&jq, json(r#"{"active": false, "id": "1", "email": "a@x"}"#)).unwrap(),
            []
        );
        let jq = Jq::compile(".ids[] as $i | {id: $i, email}").unwrap();
        let users = map_record(&jq, json(r#"{"ids": [1, "b"], "email": "a@x"}"#)).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].id, "b");
    }

    #[test]
    fn invalid_outputs_are_reasons() {
        let jq = Jq::compile("{id, email}").unwrap();
        let reason = |s: &str| map_record(&jq, json(s)).unwrap_err();
        assert_eq!(
            reason(r#"{"id": 1, "email": 5}"#),
            "email is not a string (it is a number)"
        );
        assert_eq!(
            reason(r#"{"email": "a@x"}"#),
            "id is missing (the record has keys: email)"
        );
        let jq = Jq::compile("{id: .punch_id, email: .punch_email}").unwrap();
        let many: String = (0..10).map(|i| format!("\"k{i}\": 1, ")).collect();
        let long = "x".repeat(100);
        let said = map_record(&jq, json(&format!("{{{many}\"{long}\": 2}}"))).unwrap_err();
        assert_eq!(
            said,
            "id is missing (the record has keys: k0, k1, k2, k3, k4, k5, k6, k7, … (11 in all))"
        );
        let said = map_record(&jq, json(&format!("{{\"{long}\": 2}}"))).unwrap_err();
        assert!(
            said.ends_with(&format!("keys: {}…)", &long[..40])),
            "{said}"
        );
        assert!(reason(r#"{"id": 1, "email": "ax"}"#).contains("one @"));
        assert!(reason(r#"{"id": 1.5, "email": "a@x"}"#).contains("not an integer"));
        assert!(reason(r#"{"id": true, "email": "a@x"}"#).contains("not a string or an integer"));
        let jq = Jq::compile(".email").unwrap();
        assert!(
            map_record(&jq, json(r#"{"email": "a@x"}"#))
                .unwrap_err()
                .contains("not an object")
        );
        let jq = Jq::compile("error(\"boom\")").unwrap();
        assert!(
            map_record(&jq, json("{}"))
                .unwrap_err()
                .starts_with("jq error")
        );
    }

    #[test]
    fn compile_errors_have_positions() {
        let err = Jq::compile("{id: .a, email: .b").unwrap_err();
        assert_eq!(err.offset, 18, "{err:?}");
        let err = Jq::compile(".a | nosuchfn").unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(
            err.message.contains("undefined filter `nosuchfn`"),
            "{err:?}"
        );
        let err = Jq::compile(".a | )").unwrap_err();
        assert_eq!(err.offset, 5, "{err:?}");
    }

    #[test]
    fn page_values() {
        assert_eq!(as_count(&json("250"), "total").unwrap(), Some(250));
        assert_eq!(as_count(&json("\"12\""), "total").unwrap(), Some(12));
        assert!(as_count(&json("-1"), "total").is_err());
        assert_eq!(as_text(&json("\"\""), "cursor").unwrap(), None);
        assert_eq!(
            as_text(&json("\"abc\""), "cursor").unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(as_bool(&json("false"), "has_more").unwrap(), Some(false));
        assert!(as_bool(&json("1"), "has_more").is_err());
    }
}
