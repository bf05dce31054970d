//! The direct path: when `records`, `total`, `count` and the mapping are plain
//! paths and one `{id, email}` object (optionally behind `select(.f)` or
//! `select(.f != false)`), a page is read straight from its bytes with serde:
//! the walk goes to the records array and takes the two fields of each record,
//! skipping everything else unparsed. No jq value is built.
//!
//! The result must be the one jq gives, or nothing: whatever the walk cannot
//! take with certainty (a page that is not plain JSON, a record that is not an
//! object, a path through a number, a repeated key on the way to a field) makes
//! [`Direct::read`] return `None`, and the caller reads that page with jq.
//! Values off the common case (escaped strings, big or decimal numbers) are
//! handed to the same checks the jq path uses.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Jq, User, checked_email, checked_id, id_string, kind, parse_json};
use jaq_json::Val;

/// Which records a `select` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    /// `select(.f)`: all but `false`, `null` and missing.
    Truthy,
    /// `select(.f != false)`: all but `false`.
    NotFalse,
}

/// Slots of a record's captured fields.
const ID: usize = 0;
const EMAIL: usize = 1;
const SELECTED: usize = 2;
/// Slots of a page's captured values.
const TOTAL: usize = 0;
const COUNT: usize = 1;

/// The fields wanted below one object: a tree of keys. A node is a leaf (its
/// value is captured into `slots`, or is the records array) or a prefix of
/// deeper paths, never both.
#[derive(Debug, Default)]
struct Node {
    children: Vec<(String, Node)>,
    slots: Vec<usize>,
    records: bool,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.records || !self.slots.is_empty()
    }

    /// Add `path` ending in a leaf; `false` when it collides with a path that
    /// is a prefix of it or the other way round.
    fn insert(&mut self, path: &[String], slot: Option<usize>) -> bool {
        let Some((first, rest)) = path.split_first() else {
            if !self.children.is_empty() || (self.records && slot.is_some()) {
                return false;
            }
            match slot {
                Some(s) => self.slots.push(s),
                None if !self.slots.is_empty() || self.records => return false,
                None => self.records = true,
            }
            return true;
        };
        if self.is_leaf() {
            return false;
        }
        let at = if let Some(at) = self.children.iter().position(|(k, _)| k == first) {
            at
        } else {
            // A duplicate check per object keeps one bit per child.
            if self.children.len() == 64 {
                return false;
            }
            self.children.push((first.clone(), Node::default()));
            self.children.len() - 1
        };
        self.children[at].1.insert(rest, slot)
    }
}

/// A recognised plain configuration, ready to read pages.
#[derive(Debug)]
pub(crate) struct Direct {
    page: Node,
    record: Node,
    select: Option<Select>,
}

/// One page read directly.
#[derive(Debug, Default)]
pub(crate) struct DirectPage {
    /// The number of records in the records array.
    pub records: usize,
    pub users: Vec<User>,
    /// Index in the records array and reason, as the jq path gives them.
    pub skipped: Vec<(usize, String)>,
    /// `total` and `count`, as jq values (null when absent).
    pub total: Val,
    pub count: Val,
}

impl Direct {
    /// The direct reader for these expressions, if each is a shape it knows.
    pub(crate) fn recognise(
        records: &Jq,
        total: Option<&Jq>,
        count: Option<&Jq>,
        mapping: &Jq,
    ) -> Option<Direct> {
        let mut page = Node::default();
        if !page.insert(&path(records.source())?, None) {
            return None;
        }
        for (slot, jq) in [(TOTAL, total), (COUNT, count)] {
            if let Some(jq) = jq {
                let p = path(jq.source())?;
                if p.is_empty() || !page.insert(&p, Some(slot)) {
                    return None;
                }
            }
        }
        let (select, id, email) = projection(mapping.source())?;
        let mut record = Node::default();
        let mut fields = vec![(ID, id), (EMAIL, email)];
        if let Some((_, p)) = &select {
            fields.push((SELECTED, p.clone()));
        }
        for (slot, p) in fields {
            if p.is_empty() || !record.insert(&p, Some(slot)) {
                return None;
            }
        }
        Some(Direct {
            page,
            record,
            select: select.map(|(s, _)| s),
        })
    }

    /// Read one page, or `None` when it must go through jq.
    pub(crate) fn read(&self, bytes: &[u8]) -> Option<DirectPage> {
        // serde_json neither limits the depth of the values it skips nor
        // checks their escapes; jq's reader refuses both, and so must the run.
        let scan = super::scan(bytes);
        if scan.too_deep || scan.lone_surrogate {
            return None;
        }
        let mut state = PageState {
            direct: self,
            caps: [None; 3],
            seen_records: false,
            out: DirectPage::default(),
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let walked = if self.page.records {
            RecordsSeed(&mut state).deserialize(&mut de)
        } else {
            ObjectSeed {
                node: &self.page,
                target: &mut state,
            }
            .deserialize(&mut de)
        };
        walked.ok()?;
        de.end().ok()?;
        if !state.seen_records {
            return None;
        }
        let value = |raw: Option<&RawValue>| match raw {
            None => Some(Val::Null),
            Some(raw) => parse_json(raw.get().as_bytes()).ok(),
        };
        let mut out = state.out;
        out.total = value(state.caps[TOTAL])?;
        out.count = value(state.caps[COUNT])?;
        Some(out)
    }

    /// The user of one record's captured fields; `None` when `select` drops it.
    fn evaluate(
        &self,
        caps: &[Option<&RawValue>; 3],
    ) -> Result<Option<Result<User, String>>, Declined> {
        let selected = caps[SELECTED].map(RawValue::get);
        match self.select {
            Some(Select::NotFalse) if selected == Some("false") => return Ok(None),
            Some(Select::Truthy) if matches!(selected, None | Some("null" | "false")) => {
                return Ok(None);
            }
            _ => {}
        }
        user(caps[ID], caps[EMAIL]).map(Some)
    }
}

/// A value jq's reader would not take as `serde_json` did: leave the page to jq.
struct Declined;

/// `{id, email}` from the raw field values, checked as `to_user` checks them.
fn user(id: Option<&RawValue>, email: Option<&RawValue>) -> Result<Result<User, String>, Declined> {
    let id = match id.map(RawValue::get) {
        None | Some("null") => Err("id is missing".into()),
        Some(raw) => match plain_string(raw) {
            Some(s) => checked_id(s),
            None => match small_integer(raw) {
                Some(i) => Ok(i.to_string()),
                None => id_string(&jq_value(raw)?),
            },
        },
    };
    let id = match id {
        Ok(id) => id,
        Err(reason) => return Ok(Err(reason)),
    };
    let email = match email.map(RawValue::get) {
        None | Some("null") => Err("email is missing".into()),
        Some(raw) => match plain_string(raw) {
            Some(s) => checked_email(s),
            None => match jq_value(raw)? {
                Val::TStr(s) => checked_email(&String::from_utf8_lossy(&s)),
                Val::Null => Err("email is missing".into()),
                other => Err(format!("email is not a string (it is {})", kind(&other))),
            },
        },
    };
    Ok(email.map(|email| User { id, email }))
}

/// The text of a JSON string without escapes, as it stands in the page.
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// An integer literal that fits a machine word (jq keeps it as such).
fn small_integer(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// A field value as jq reads it, for the rare values off the fast paths.
fn jq_value(raw: &str) -> Result<Val, Declined> {
    parse_json(raw.as_bytes()).map_err(|_| Declined)
}

/// `.a.b` as `["a", "b"]`; `.` as `[]`; anything else `None`.
fn path(code: &str) -> Option<Vec<String>> {
    let code = code.trim();
    if code == "." {
        return Some(Vec::new());
    }
    let mut parts = Vec::new();
    let mut rest = code;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.')?;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if !is_identifier(name) {
            return None;
        }
        parts.push(name.to_owned());
        rest = &rest[end..];
    }
    (!parts.is_empty()).then_some(parts)
}

fn is_identifier(name: &str) -> bool {
    const KEYWORDS: [&str; 16] = [
        "and", "or", "not", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach",
        "try", "catch", "label", "import",
    ];
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !KEYWORDS.contains(&name)
        && !name.starts_with("__")
}

type Path = Vec<String>;

/// A mapping's select (if any), id path and email path.
type Projection = (Option<(Select, Path)>, Path, Path);

/// `[select(P) |] {id: P, email: P}` (either order, `{id, email}` shorthand
/// allowed) as the select and the two paths.
fn projection(code: &str) -> Option<Projection> {
    let mut t = Tokens(code);
    let mut select = None;
    if t.eat("select") {
        t.expect("(")?;
        let p = path(t.path()?)?;
        let how = if t.eat("!=") {
            t.expect("false")?;
            Select::NotFalse
        } else {
            Select::Truthy
        };
        t.expect(")")?;
        t.expect("|")?;
        select = Some((how, p));
    }
    t.expect("{")?;
    let (mut id, mut email) = (None, None);
    for i in 0..2 {
        if i == 1 {
            t.expect(",")?;
        }
        let key = t.word()?;
        let value = if t.eat(":") {
            path(t.path()?)?
        } else {
            vec![key.to_owned()]
        };
        let slot = match key {
            "id" => &mut id,
            "email" => &mut email,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    t.expect("}")?;
    t.0.trim().is_empty().then_some(())?;
    Some((select, id?, email?))
}

/// Just enough of a tokenizer for [`projection`].
struct Tokens<'a>(&'a str);

impl<'a> Tokens<'a> {
    fn eat(&mut self, token: &str) -> bool {
        let rest = self.0.trim_start();
        match rest.strip_prefix(token) {
            // A word must not run on into a longer one (`selection`, `false_`).
            Some(after)
                if token.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') =>
            {
                false
            }
            Some(after) => {
                self.0 = after;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Option<()> {
        self.eat(token).then_some(())
    }

    fn word(&mut self) -> Option<&'a str> {
        let rest = self.0.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| {
            self.0 = &rest[end..];
            &rest[..end]
        })
    }

    /// A run of `.name` parts with nothing between them.
    fn path(&mut self) -> Option<&'a str> {
        let rest = self.0.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        (end > 0 && rest.starts_with('.')).then(|| {
            self.0 = &rest[end..];
            &rest[..end]
        })
    }
}

// ---------------------------------------------------------------- the walk

/// What the walk fills: a page (captures and the records) or one record.
trait Target<'de> {
    fn capture(&mut self, slot: usize, raw: &'de RawValue);
    /// Read the records array, the next value of `map`.
    fn records<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error>;
}

struct PageState<'d, 'de> {
    direct: &'d Direct,
    caps: [Option<&'de RawValue>; 3],
    seen_records: bool,
    out: DirectPage,
}

impl<'de> Target<'de> for PageState<'_, 'de> {
    fn capture(&mut self, slot: usize, raw: &'de RawValue) {
        self.caps[slot] = Some(raw);
    }

    fn records<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error> {
        map.next_value_seed(RecordsSeed(self))
    }
}

struct RecordState<'de> {
    caps: [Option<&'de RawValue>; 3],
}

impl<'de> Target<'de> for RecordState<'de> {
    fn capture(&mut self, slot: usize, raw: &'de RawValue) {
        self.caps[slot] = Some(raw);
    }

    fn records<A: MapAccess<'de>>(&mut self, _: &mut A) -> Result<(), A::Error> {
        Err(de::Error::custom("no records inside a record"))
    }
}

/// An object whose wanted fields (below `node`) go to `target`. `null` stands
/// for an object without them, as in jq (`null | .a` is `null`); anything
/// else is an error, that is: leave this page to jq.
struct ObjectSeed<'n, 't, T> {
    node: &'n Node,
    target: &'t mut T,
}

impl<'de, T: Target<'de>> DeserializeSeed<'de> for ObjectSeed<'_, '_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Target<'de>> Visitor<'de> for ObjectSeed<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u64;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let Some(at) = self.node.children.iter().position(|(k, _)| *k == *key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let child = &self.node.children[at].1;
            if !child.slots.is_empty() {
                // A repeated key: the last one wins, in jq as here.
                let raw: &'de RawValue = map.next_value()?;
                for &slot in &child.slots {
                    self.target.capture(slot, raw);
                }
                continue;
            }
            // A repeated key on the way to a field or to the records: jq takes
            // the last one whole; simpler to leave that page to jq.
            if seen & (1 << at) != 0 {
                return Err(de::Error::custom("repeated key"));
            }
            seen |= 1 << at;
            if child.records {
                self.target.records(&mut map)?;
            } else {
                map.next_value_seed(ObjectSeed {
                    node: child,
                    target: &mut *self.target,
                })?;
            }
        }
        Ok(())
    }
}

/// A key, borrowed from the page unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The records array: each record mapped as it is read.
struct RecordsSeed<'s, 'd, 'de>(&'s mut PageState<'d, 'de>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        if state.seen_records {
            return Err(de::Error::custom("records twice"));
        }
        state.seen_records = true;
        if let Some(n) = seq.size_hint() {
            state.out.users.reserve(n);
        }
        loop {
            let mut record = RecordState { caps: [None; 3] };
            let seed = ObjectSeed {
                node: &state.direct.record,
                target: &mut record,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            let index = state.out.records;
            state.out.records += 1;
            let evaluated = state
                .direct
                .evaluate(&record.caps)
                .map_err(|Declined| de::Error::custom("a value for jq"))?;
            match evaluated {
                None => {}
                Some(Ok(user)) => state.out.users.push(user),
                Some(Err(reason)) => state.out.skipped.push((index, reason)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
