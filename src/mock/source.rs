//! The time clock the mock plays: its users, a page at a time in the
//! formatted or its own raw shape, and the punches recorded against them.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::punches::Punch;
use super::server::Reply;
use super::stats::Kind;
use super::{State, email, param};

impl State {
    pub(crate) fn users_page(&self, query: &str, raw: bool) -> Reply {
        self.stats.count(Kind::SourcePages);
        let page = match param(query, "page") {
            None => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Reply::json(
                        400,
                        &json!({"error": format!("page must be a number from 1, not {p:?}")}),
                    );
                }
            },
        };
        let first = (page - 1).saturating_mul(self.page_size) + 1;
        let last = page.saturating_mul(self.page_size).min(self.users);
        // Written as text: the mock must not be what a benchmark measures.
        let mut users = String::with_capacity((last + 1).saturating_sub(first) * 110);
        for n in first..=last {
            if !users.is_empty() {
                users.push(',');
            }
            let email = email(n);
            let _ = if raw {
                write!(
                    users,
                    r#"{{"punch_clock_id":{n},"punch_clock_email":"{email}","name":"User {n}","active":true}}"#
                )
            } else {
                write!(users, r#"{{"id":"{n}","email":"{email}"}}"#)
            };
        }
        let count = (last + 1).saturating_sub(first);
        let body = format!(
            r#"{{"count":{count},"total":{},"page":{page},"users":[{users}]}}"#,
            self.users
        );
        Reply::new(200, "application/json", body)
    }

    pub(crate) fn punch(&self, id: &str, body: &str, key: Option<&str>) -> Reply {
        self.stats.count(Kind::Punches);
        let known = id
            .parse::<usize>()
            .is_ok_and(|n| (1..=self.users).contains(&n));
        if !known {
            return Reply::not_found(&format!("user {id}"));
        }
        let body = if body.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str::<Value>(body) {
                Ok(v) => v,
                Err(e) => {
                    return Reply::json(
                        400,
                        &json!({"error": format!("the body is not JSON: {e}")}),
                    );
                }
            }
        };
        let event = body
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("punch")
            .to_owned();
        // An empty key (a template whose `{{event_id}}` was empty) names no event.
        let key = key.filter(|k| !k.is_empty());
        let punch = Punch {
            user_id: id,
            event: &event,
            body,
            key,
            at: now_millis(),
        };
        let (recorded, new) = self.punches.record(punch);
        if self.log {
            // A client's text is escaped before it reaches the terminal.
            let key = key
                .map(|k| format!(" key={}", k.escape_debug()))
                .unwrap_or_default();
            let repeat = if new {
                ""
            } else {
                " (repeated key: not recorded)"
            };
            eprintln!(
                "mock: punch-clock user={id} event={}{key}{repeat}",
                event.escape_debug()
            );
        }
        Reply::json(201, &recorded)
    }
}

fn now_millis() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::*;

    #[test]
    fn source_pages_cover_every_user_once() {
        let s = state(25, 25);
        let pages: Vec<Value> = (1..=4)
            .map(|p| get(&s, &format!("/users/formatted?page={p}")))
            .collect();
        let counts: Vec<u64> = pages.iter().map(|p| p["count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [10, 10, 5, 0]);
        assert_eq!(
            pages[2]["users"][4],
            json!({"id": "25", "email": "user+25@talkdesk.com"})
        );
        let raw = get(&s, "/users/not-formatted?page=1");
        assert_eq!(raw["total"], 25);
        assert_eq!(raw["users"][6]["punch_clock_id"], 7);
        assert_eq!(send(&s, "GET", "/users/formatted?page=0", "").status, 400);
    }

    #[test]
    fn punches_are_recorded_for_known_users_only() {
        let s = state(5, 5);
        assert_eq!(
            send(&s, "POST", "/users/3/punch-clock", r#"{"event": "login"}"#).status,
            201
        );
        assert_eq!(send(&s, "POST", "/users/99/punch-clock", "{}").status, 404);
        let punches = get(&s, "/punches");
        assert_eq!(punches["punches"].as_array().unwrap().len(), 1);
        assert_eq!(punches["punches"][0]["event"], "login");
    }
}
