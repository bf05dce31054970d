//! The time clock's record of punches: each with its user, body,
//! `Idempotency-Key` and time. A key seen before is answered as the first time
//! and recorded once, as a time clock that drops repeats does; read back through
//! `GET /_mock/punches` (or `GET /punches`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

#[derive(Default)]
pub(super) struct Punches {
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    list: Vec<Value>,
    /// Each Idempotency-Key seen, with the index of the punch it recorded.
    keys: HashMap<String, usize>,
}

/// A punch to record.
pub(super) struct Punch<'a> {
    pub user_id: &'a str,
    pub event: &'a str,
    /// The request body as JSON (`null` when empty).
    pub body: Value,
    pub key: Option<&'a str>,
    pub at: String,
}

impl Punches {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record `punch` unless its key was seen: the recorded punch (the first
    /// one for a repeated key) and whether this call recorded it.
    pub(super) fn record(&self, punch: Punch<'_>) -> (Value, bool) {
        let mut log = self.lock();
        if let Some(key) = punch.key
            && let Some(&first) = log.keys.get(key)
        {
            return (log.list[first].clone(), false);
        }
        let value = json!({
            "user_id": punch.user_id,
            "event": punch.event,
            "body": punch.body,
            "idempotency_key": punch.key,
            "at": punch.at,
        });
        if let Some(key) = punch.key {
            let index = log.list.len();
            log.keys.insert(key.to_owned(), index);
        }
        log.list.push(value.clone());
        (value, true)
    }

    /// `{"punches": [...]}`, oldest first.
    pub(super) fn read(&self) -> Value {
        json!({ "punches": self.lock().list })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;

    const PUNCH: &str = "/users/3/punch-clock";

    #[test]
    fn a_repeated_idempotency_key_is_answered_as_the_first_time_and_recorded_once() {
        let s = state(5, 5);
        let key = [("Idempotency-Key", "evt-1")];
        let first = send_with(&s, "POST", PUNCH, &key, r#"{"event": "login"}"#);
        assert_eq!(first.status, 201, "{}", first.body);
        let again = send_with(&s, "POST", PUNCH, &key, r#"{"event": "login"}"#);
        assert_eq!((again.status, &again.body), (201, &first.body));
        // Another key, or none, is another punch.
        let other = [("idempotency-key", "evt-2")];
        assert_eq!(
            send_with(&s, "POST", PUNCH, &other, r#"{"event": "logout"}"#).status,
            201
        );
        assert_eq!(send(&s, "POST", PUNCH, "").status, 201);
        let empty = [("Idempotency-Key", "")];
        assert_eq!(send_with(&s, "POST", PUNCH, &empty, "").status, 201);

        let punches = get(&s, "/_mock/punches")["punches"].clone();
        assert_eq!(punches, get(&s, "/punches")["punches"]);
        let seen: Vec<(&str, &str, &serde_json::Value)> = punches
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["user_id"], "3");
                assert!(p["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{p}");
                (
                    p["event"].as_str().unwrap(),
                    p["idempotency_key"].as_str().unwrap_or("-"),
                    &p["body"],
                )
            })
            .collect();
        let login = serde_json::json!({"event": "login"});
        let logout = serde_json::json!({"event": "logout"});
        let none = serde_json::Value::Null;
        assert_eq!(
            seen,
            [
                ("login", "evt-1", &login),
                ("logout", "evt-2", &logout),
                ("punch", "-", &none),
                ("punch", "-", &none),
            ]
        );
        assert_eq!(
            get(&s, "/_mock/stats")["punches"],
            5,
            "every request counted"
        );
        assert_eq!(send(&s, "DELETE", "/_mock/punches", "").status, 405);
    }

    #[test]
    fn a_refused_punch_does_not_take_its_key() {
        let s = state(5, 5);
        let key = [("Idempotency-Key", "evt-9")];
        assert_eq!(
            send_with(&s, "POST", "/users/99/punch-clock", &key, "{}").status,
            404
        );
        assert_eq!(send_with(&s, "POST", PUNCH, &key, "not json").status, 400);
        assert_eq!(send_with(&s, "POST", PUNCH, &key, "{}").status, 201);
        let punches = get(&s, "/_mock/punches")["punches"].clone();
        assert_eq!(punches.as_array().unwrap().len(), 1, "{punches}");
        assert_eq!(punches[0]["idempotency_key"], "evt-9");
    }
}
