//! One event's body, read: a JSON object whose `[listen] id` and `email` are
//! strings, and the first route whose `when` is true.

use jaq_json::Val;

use super::queue::NewEvent;
use crate::config::ListenSpec;
use crate::mapping::{self, Jq};

/// What an authentic event asks for.
#[derive(Debug)]
pub(crate) enum Classified {
    /// Run a route's action.
    Queue(NewEvent),
    /// No route takes it.
    NoRoute { id: String },
}

/// The longest event ID or email kept.
const MAX_FIELD: usize = 512;

/// `jq` on `event` as a non-empty string, or why it is not one.
fn text(jq: &Jq, event: &Val, key: &str) -> Result<String, String> {
    let value = jq
        .run_one(event)
        .map_err(|e| format!("[listen] {key} `{}`: {e:#}", jq.source()))?;
    match value {
        Val::TStr(s) | Val::BStr(s) if !s.is_empty() && s.len() <= MAX_FIELD => {
            String::from_utf8(s.to_vec()).map_err(|_| format!("the event's {key} is not UTF-8"))
        }
        Val::TStr(_) | Val::BStr(_) => Err(format!(
            "the event's {key} (`{}`) is empty or over {MAX_FIELD} bytes",
            jq.source()
        )),
        other => Err(format!(
            "the event's {key} (`{}`) is {}, not a string",
            jq.source(),
            mapping::kind(&other)
        )),
    }
}

/// Read `body` as `spec` says.
pub(crate) fn classify(spec: &ListenSpec, body: &[u8]) -> Result<Classified, String> {
    let event = mapping::parse_json(body).map_err(|e| format!("not JSON: {e:#}"))?;
    if !matches!(event, Val::Obj(_)) {
        return Err(format!("not a JSON object but {}", mapping::kind(&event)));
    }
    let id = text(&spec.id, &event, "id")?;
    let email = text(&spec.email, &event, "email")?;
    for route in &spec.routes {
        let taken = match &route.when {
            None => true,
            Some(when) => {
                let value = when
                    .run_one(&event)
                    .map_err(|e| format!("[[listen.on]] when `{}`: {e:#}", when.source()))?;
                matches!(value, Val::Bool(true))
            }
        };
        if taken {
            return Ok(Classified::Queue(NewEvent {
                id,
                email,
                action: route.action.clone(),
                vars: route.vars.clone(),
            }));
        }
    }
    Ok(Classified::NoRoute { id })
}
