//! The direct path against jq: generated and hostile pages, each read both
//! ways; the direct reader must give jq's result or decline the page.

use super::*;
use crate::mapping::{as_count, map_record_into};

/// What one page gives: users, skips (index, reason), total and count.
type Outcome = (Vec<User>, Vec<(usize, String)>, String, String, usize);

struct Case {
    records: Jq,
    total: Option<Jq>,
    count: Option<Jq>,
    mapping: Jq,
}

impl Case {
    fn new(records: &str, total: Option<&str>, count: Option<&str>, mapping: &str) -> Case {
        let jq = |code: &str| Jq::compile(code).unwrap();
        Case {
            records: jq(records),
            total: total.map(jq),
            count: count.map(jq),
            mapping: jq(mapping),
        }
    }

    fn direct(&self) -> Option<Direct> {
        Direct::recognise(
            &self.records,
            self.total.as_ref(),
            self.count.as_ref(),
            &self.mapping,
        )
    }

    /// The page as the jq path reads it; `Err` where it would stop the run.
    fn by_jq(&self, bytes: &[u8]) -> Result<Outcome, String> {
        let page = parse_json(bytes).map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        for out in self.records.run(page.clone()).map_err(|e| e.to_string())? {
            match out {
                Val::Arr(items) => records.extend(items.iter().cloned()),
                _ => return Err("not an array".into()),
            }
        }
        let value = |jq: &Option<Jq>| -> Result<String, String> {
            let v = match jq {
                Some(jq) => jq.run_one(&page).map_err(|e| e.to_string())?,
                None => Val::Null,
            };
            Ok(format!(
                "{:?}",
                as_count(&v, "n").map_err(|e| e.to_string())
            ))
        };
        let (total, count) = (value(&self.total)?, value(&self.count)?);
        let (mut users, mut skipped) = (Vec::new(), Vec::new());
        let n = records.len();
        for (i, record) in records.into_iter().enumerate() {
            if let Err(mut reason) = map_record_into(&self.mapping, record, &mut users) {
                // The direct walk does not read the keys jq names after a
                // missing field; the source reads such a page with jq.
                if let Some(cut) = reason.find(" (the record has ") {
                    reason.truncate(cut);
                }
                skipped.push((i, reason));
            }
        }
        Ok((users, skipped, total, count, n))
    }

    fn by_direct(&self, bytes: &[u8]) -> Option<Outcome> {
        let page = self.direct().expect("a direct shape").read(bytes)?;
        let shown = |v: &Val| format!("{:?}", as_count(v, "n").map_err(|e| e.to_string()));
        Some((
            page.users,
            page.skipped,
            shown(&page.total),
            shown(&page.count),
            page.records,
        ))
    }

    /// Both ways agree on `bytes`; `true` when the direct reader took it.
    fn agree(&self, bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        match self.by_direct(bytes) {
            Some(direct) => {
                let jq = self.by_jq(bytes);
                assert_eq!(jq.as_ref(), Ok(&direct), "page: {text}");
                true
            }
            None => false,
        }
    }
}

const IDS: &[&str] = &[
    "7",
    "-12",
    "-0",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "7.0",
    "1e3",
    "-1.5e-3",
    "1E+2",
    "0.0",
    r#""123""#,
    r#"" 42 ""#,
    r#""""#,
    r#""   ""#,
    r#""\t9\n""#,
    r#""4\u0032""#,
    r#""\u00e9t\u00e9""#,
    r#""ü-7""#,
    r#""a\"b""#,
    "null",
    "true",
    "false",
    "[1]",
    r#"{"x": 1}"#,
    "[]",
];

const EMAILS: &[&str] = &[
    r#""user+N@talkdesk.com""#,
    r#""User+N@Talkdesk.COM""#,
    r#"" spaced+N@x.com ""#,
    r#""\u0041N@x.com""#,
    r#""\u212Aate+N@x.com""#,
    r#""ü+N@x.com""#,
    r#""q\"uote+N@x.com""#,
    r#""a\\b+N@x.com""#,
    r#""noat""#,
    r#""two@@x.com""#,
    r#""@x.com""#,
    r#""x@""#,
    r#""""#,
    "null",
    "42",
    "false",
    "[\"a@x.com\"]",
    r#"{"value": "a@x.com"}"#,
];

const ACTIVE: &[&str] = &["true", "false", "null", "0", "1", r#""false""#, "{}", "[]"];

const NOISE: &[&str] = &[
    r#""name": "A \"quoted\" ] } [ { name""#,
    r#""tags": [1, [2, [3, {"a": [4]}]], "x"]"#,
    r#""meta": {"id": 5, "email": "not@this.one", "nested": {"deep": [null, true]}}"#,
    r#""big": 1e400"#,
    r#""neg": -0.0"#,
    r#""unicode": "\ud83d\ude00 ok""#,
    r#""": "empty key""#,
];

/// One record as JSON text, drawn from the lists above.
fn record(rng: &mut fastrand::Rng, n: usize) -> String {
    let pick = |rng: &mut fastrand::Rng, list: &[&str]| list[rng.usize(..list.len())].to_owned();
    let mut fields: Vec<String> = Vec::new();
    let id_key = if rng.u8(..10) == 0 {
        r#""punch\u005fclock_id""#
    } else {
        r#""punch_clock_id""#
    };
    // Mostly well-formed records, sometimes each field off its common case.
    let id = if rng.u8(..4) == 0 {
        pick(rng, IDS)
    } else {
        n.to_string()
    };
    let email = if rng.u8(..4) == 0 {
        pick(rng, EMAILS)
    } else {
        format!(r#""user+{n}@talkdesk.com""#)
    }
    .replace('N', &n.to_string());
    if rng.u8(..6) != 0 {
        fields.push(format!("{id_key}: {id}"));
    }
    if rng.u8(..8) != 0 {
        fields.push(format!(r#""punch_clock_email":{email}"#));
    }
    if rng.u8(..3) == 0 {
        fields.push(format!(r#""active": {}"#, pick(rng, ACTIVE)));
    }
    fields.push(format!(r#""id": {}"#, pick(rng, IDS)));
    fields.push(format!(r#""email": {email}"#));
    match rng.u8(..6) {
        0 => fields.push(r#""contact": null"#.into()),
        1 => {}
        _ => fields.push(format!(
            r#""contact": {{"phone": "1", "email": {}}}"#,
            pick(rng, EMAILS).replace('N', &n.to_string())
        )),
    }
    for _ in 0..rng.usize(..3) {
        fields.push(pick(rng, NOISE));
    }
    // Repeated leaf keys: jq keeps the last.
    if rng.u8(..10) == 0 {
        fields.push(format!(r#""punch_clock_id": {}"#, pick(rng, IDS)));
    }
    if rng.u8(..10) == 0 {
        fields.push(format!(r#""punch_clock_email": {}"#, pick(rng, EMAILS)));
    }
    rng.shuffle(&mut fields);
    let sep = if rng.bool() { ", " } else { ",\n  " };
    format!("{{{}}}", fields.join(sep))
}

/// A page of `records` in the shapes the cases read: top-level `users` with
/// `total` and `count`, and the same below `data` as `items`.
fn page(rng: &mut fastrand::Rng, records: &[String], first: usize) -> String {
    let list = records.join(", ");
    let total = if rng.u8(..8) == 0 {
        ["\"1000\"", "null", "1000.0", "-1", "1e3"][rng.usize(..5)]
    } else {
        "1000"
    };
    format!(
        r#"{{"count": {}, "total": {total}, "page": {first}, "users": [{list}], "data": {{"total": {total}, "items": [{list}]}}}}"#,
        records.len()
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case::new(
            ".users",
            Some(".total"),
            Some(".count"),
            "select(.active != false) | {id: .punch_clock_id, email: .punch_clock_email}",
        ),
        Case::new(
            ".users",
            None,
            None,
            "{id: .punch_clock_id, email: .punch_clock_email}",
        ),
        Case::new(
            ".data.items",
            Some(".data.total"),
            None,
            "select(.active) | {email: .contact.email, id: .punch_clock_id}",
        ),
        Case::new(".users", Some(".total"), None, "{id, email}"),
    ]
}

#[test]
fn differential_generated_records() {
    let mut rng = fastrand::Rng::with_seed(20_261_125);
    let cases = cases();
    let (mut pages, mut direct) = (0, 0);
    let mut n = 0;
    for _ in 0..200 {
        let size = rng.usize(0..25);
        let records: Vec<String> = (0..size)
            .map(|_| {
                n += 1;
                record(&mut rng, n)
            })
            .collect();
        let text = page(&mut rng, &records, n);
        for case in &cases {
            pages += 1;
            // Well-formed records of objects: the direct reader takes every page.
            assert!(case.agree(text.as_bytes()), "declined: {text}");
            direct += 1;
        }
    }
    assert!(n > 2000, "{n} records");
    assert_eq!(pages, direct);
}

#[test]
fn differential_hostile_pages() {
    let case = &cases()[0];
    let nested = &cases()[2];
    let rec = |id: &str, email: &str| {
        format!(r#"{{"punch_clock_id": {id}, "punch_clock_email": {email}}}"#)
    };
    let ok = rec("1", r#""a@x.com""#);
    let mut pages = vec![
        // Records jq indexes with an error or takes as null.
        format!(r#"{{"users": [{ok}, 5]}}"#),
        format!(r#"{{"users": [{ok}, "s"]}}"#),
        format!(r#"{{"users": [{ok}, [1]]}}"#),
        format!(r#"{{"users": [{ok}, true]}}"#),
        format!(r#"{{"users": [null, {ok}]}}"#),
        // Pages of other shapes.
        "{}".into(),
        r#"{"users": null}"#.into(),
        r#"{"users": {"a": 1}}"#.into(),
        r#"{"users": 5}"#.into(),
        "[]".into(),
        "null".into(),
        "5".into(),
        format!(r#"{{"users": [{ok}], "users": []}}"#),
        format!(r#"{{"users": [], "users": [{ok}]}}"#),
        format!(r#"{{"users": [{ok}], "total": 1, "total": "x"}}"#),
        format!(r#"{{"users": [{ok}], "count": -3}}"#),
        format!(r#"{{"users": [{ok}], "count": 1.5}}"#),
        // Not plain JSON: jq's reader is more lenient.
        format!(r#"{{"users": [{ok}], "x": NaN}}"#),
        format!("{{\"users\": [{ok}]}} # comment"),
        format!(r#"{{"users": [{ok}]}} {{}}"#),
        format!(r#"{{"users": [{ok}]"#),
        format!(r#"{{"users": [{ok},]}}"#),
        "{\"users\": [{\"punch_clock_id\": \"a\u{1}b\", \"punch_clock_email\": \"a@x\"}]}".into(),
        r#"{"users": [{"punch_clock_id": "\ud800", "punch_clock_email": "a@x"}]}"#.into(),
        // Deep values, inside records and around them.
        format!(
            r#"{{"users": [{{"punch_clock_id": 1, "punch_clock_email": "a@x", "x": {}{}}}]}}"#,
            "[".repeat(100),
            "]".repeat(100)
        ),
        format!(
            r#"{{"users": [{{"x": {}{}}}]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        ),
        // Repeated keys on the way to a field.
        format!(r#"{{"users": [{ok}], "data": 1}}"#),
        rec(r#""1""#, r#""a@x""#).replace('{', r#"{"active": false, "active": true, "#),
    ];
    pages.push(format!(r#"{{"users": [{}]}}"#, pages.last().unwrap()));
    let mut taken = 0;
    for text in &pages {
        if case.agree(text.as_bytes()) {
            taken += 1;
        }
        nested.agree(text.as_bytes());
    }
    for text in [
        r#"{"data": {"items": [{"contact": 5, "active": true}]}}"#,
        r#"{"data": {"items": [{"contact": {"email": "a@x"}, "contact": {}, "active": 1, "punch_clock_id": 2}]}}"#,
        r#"{"data": {"items": [{"contact": null, "active": 1, "punch_clock_id": 2}]}}"#,
        r#"{"data": null}"#,
        r#"{"data": {"items": []}, "data": {"items": []}}"#,
        r#"{"data": {"total": 4, "items": [{"active": [], "punch_clock_id": "x", "contact": {"email": "a@x"}}]}}"#,
    ] {
        if nested.agree(text.as_bytes()) {
            taken += 1;
        }
    }
    // Some are taken directly (null records, bad counts, deep values inside
    // the limit), the others declined; every one taken agrees with jq.
    assert!(taken >= 8, "{taken} taken");
}

#[test]
fn values_read_as_jq_reads_them() {
    let case = Case::new(".users", None, None, "{id: .i, email: .e}");
    let one = |id: &str, email: &str| {
        let text = format!(r#"{{"users": [{{"i": {id}, "e": {email}}}]}}"#);
        let (users, skipped, ..) = case.by_direct(text.as_bytes()).expect("taken directly");
        assert!(case.agree(text.as_bytes()));
        match (users.first(), skipped.first()) {
            (Some(u), None) => Ok(u.id.clone()),
            (None, Some((_, reason))) => Err(reason.clone()),
            _ => panic!("{users:?} {skipped:?}"),
        }
    };
    assert_eq!(one("7", r#""a@x""#), Ok("7".into()));
    assert_eq!(one("-0", r#""a@x""#), Ok("0".into()));
    assert_eq!(one(r#"" 42 ""#, r#""a@x""#), Ok("42".into()));
    assert_eq!(one(r#""\u0020 42\t""#, r#""a@x""#), Ok("42".into()));
    assert_eq!(
        one(r#""  ""#, r#""a@x""#),
        Err("id is an empty string".into())
    );
    assert_eq!(
        one("123456789012345678901234567890", r#""a@x""#),
        Ok("123456789012345678901234567890".into())
    );
    assert_eq!(
        one("7.0", r#""a@x""#),
        Err("id 7.0 is not an integer".into())
    );
    assert_eq!(
        one("1e3", r#""a@x""#),
        Err("id 1e3 is not an integer".into())
    );
    assert_eq!(one("null", r#""a@x""#), Err("id is missing".into()));
    assert_eq!(
        one("1", "7"),
        Err("email is not a string (it is a number)".into())
    );
    assert_eq!(one("1", r#""a\u0040x""#), Ok("1".into()));
}

#[test]
fn shapes_recognised() {
    let direct = |records: &str, total: Option<&str>, mapping: &str| {
        Case::new(records, total, None, mapping).direct().is_some()
    };
    let m = "{id: .punch_clock_id, email: .punch_clock_email}";
    assert!(direct(".users", Some(".total"), m));
    assert!(direct(".", None, m));
    assert!(direct(
        ".data.items",
        Some(".data.total"),
        "{email: .a.b, id: .c}"
    ));
    assert!(direct(
        ".users",
        None,
        "select(.active != false) | {id: .a, email: .b}"
    ));
    assert!(direct(".users", None, "select( .active )|{ id , email }"));
    assert!(direct(".users", None, "{id: .x, email: .x}"));
    assert!(!direct(".users", None, "{id: .a, email: .b, name: .c}"));
    assert!(!direct(".users", None, "{id: .a}"));
    assert!(!direct(".users", None, "{id: .a, id: .b}"));
    assert!(!direct(".users[]", None, m));
    assert!(!direct(".users", Some(".users"), m));
    assert!(!direct(".data.items", Some(".data"), m));
    assert!(!direct(".users", Some(". "), m));
    assert!(!direct(".users", None, "{id: .a?, email: .b}"));
    assert!(!direct(".users", None, "{id: .a | tostring, email: .b}"));
    assert!(!direct(
        ".users",
        None,
        "select(.a == true) | {id: .a, email: .b}"
    ));
    assert!(!direct(
        ".users",
        None,
        "select(.a) | select(.b) | {id: .a, email: .b}"
    ));
    assert!(!direct(".users", None, "{id: .a.b, email: .a}"));
    assert!(!direct(".users", None, r#"{"id": .a, email: .b}"#));
}

#[test]
fn nesting_is_limited_with_a_clear_message() {
    let deep = "[".repeat(10_000);
    let err = parse_json(deep.as_bytes()).unwrap_err().to_string();
    assert_eq!(err, "the response nests deeper than 128 levels");
    let case = &cases()[0];
    let page = format!(r#"{{"users": [{deep}"#);
    assert!(case.by_direct(page.as_bytes()).is_none());
    // Brackets inside strings are text.
    let text = format!(r#"{{"users": [], "x": "{deep}"}}"#);
    assert!(parse_json(text.as_bytes()).is_ok());
    let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
    assert!(parse_json(ok.as_bytes()).is_ok());
}
