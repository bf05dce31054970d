//! `{{placeholder}}` templates of the config: parsed once when the config is
//! validated (so an unknown name is a config error, not a surprise mid-run) and
//! rendered per request with the encoding of the place they fill.

use std::fmt;

use anyhow::{Result, bail};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::redact;

/// Characters escaped inside one path segment (RFC 3986 pchar complement).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A name that can stand between `{{` and `}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placeholder {
    Page,
    Offset,
    Limit,
    Cursor,
    ExternalId,
    AgentId,
    Email,
    /// The event's ID: `agentsync listen`, or an event line's `"id"`.
    EventId,
    /// `{{env.NAME}}`, resolved when the config is loaded.
    Env(String),
    /// `{{var.K}}`, from `--set K=V`.
    Var(String),
}

impl Placeholder {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "page" => Placeholder::Page,
            "offset" => Placeholder::Offset,
            "limit" => Placeholder::Limit,
            "cursor" => Placeholder::Cursor,
            "external_id" => Placeholder::ExternalId,
            "agent_id" => Placeholder::AgentId,
            "email" => Placeholder::Email,
            "event_id" => Placeholder::EventId,
            _ => {
                if let Some(env) = name.strip_prefix("env.").filter(|n| valid_name(n)) {
                    Placeholder::Env(env.to_owned())
                } else if let Some(var) = name.strip_prefix("var.").filter(|n| valid_name(n)) {
                    Placeholder::Var(var.to_owned())
                } else {
                    return None;
                }
            }
        })
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placeholder::Page => f.write_str("page"),
            Placeholder::Offset => f.write_str("offset"),
            Placeholder::Limit => f.write_str("limit"),
            Placeholder::Cursor => f.write_str("cursor"),
            Placeholder::ExternalId => f.write_str("external_id"),
            Placeholder::AgentId => f.write_str("agent_id"),
            Placeholder::Email => f.write_str("email"),
            Placeholder::EventId => f.write_str("event_id"),
            Placeholder::Env(n) => write!(f, "env.{n}"),
            Placeholder::Var(n) => write!(f, "var.{n}"),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Which placeholders a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The source request: paging values and the environment.
    Source,
    /// An action: the agent's values, `--set` variables and the environment.
    Action,
}

impl Scope {
    fn allows(self, p: &Placeholder) -> bool {
        match p {
            Placeholder::Env(_) => true,
            Placeholder::Page | Placeholder::Offset | Placeholder::Limit | Placeholder::Cursor => {
                self == Scope::Source
            }
            Placeholder::ExternalId
            | Placeholder::AgentId
            | Placeholder::Email
            | Placeholder::EventId
            | Placeholder::Var(_) => self == Scope::Action,
        }
    }

    fn names(self) -> &'static str {
        match self {
            Scope::Source => "page, offset, limit, cursor, env.NAME",
            Scope::Action => "external_id, agent_id, email, event_id, var.NAME, env.NAME",
        }
    }
}

/// How a rendered value is escaped for the place it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Percent-encoded as one path segment.
    Path,
    /// As is: query values are encoded by the URL builder, headers carry text.
    Raw,
    /// Escaped for the inside of a JSON string (the template supplies the quotes).
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
    /// An environment value, read when the config was loaded.
    EnvValue(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
}

/// The values a template is rendered with; `None` renders as an empty string.
#[derive(Debug, Default, Clone)]
pub(crate) struct Values<'a> {
    pub page: Option<u64>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
    pub cursor: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub vars: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// Look-up of environment variables, so tests need not touch the process env.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Template {
    /// Parse `text`, check every placeholder against `scope`, and read the
    /// `{{env.NAME}}` values now. Errors carry the byte offset in `text`.
    pub(crate) fn parse(text: &str, scope: Scope, env: EnvLookup) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(TemplateError {
                    offset: offset + start,
                    message: "`{{` is not closed by `}}`".into(),
                });
            };
            let name = after[..end].trim();
            let placeholder = Placeholder::parse(name).ok_or_else(|| TemplateError {
                offset: offset + start,
                message: format!(
                    "unknown placeholder `{{{{{name}}}}}` (known here: {})",
                    scope.names()
                ),
            })?;
            if !scope.allows(&placeholder) {
                return Err(TemplateError {
                    offset: offset + start,
                    message: format!(
                        "placeholder `{{{{{name}}}}}` cannot be used here (known here: {})",
                        scope.names()
                    ),
                });
            }
            match placeholder {
                Placeholder::Env(var) => {
                    let value = env(&var).ok_or_else(|| TemplateError {
                        offset: offset + start,
                        message: format!(
                            "environment variable {var} is not set (used as `{{{{env.{var}}}}}`)"
                        ),
                    })?;
                    redact::register(&value);
                    parts.push(Part::EnvValue(value));
                }
                other => parts.push(Part::Value(other)),
            }
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// A template of plain text.
    pub(crate) fn literal(text: &str) -> Self {
        Template {
            source: text.to_owned(),
            parts: vec![Part::Text(text.to_owned())],
        }
    }

    /// The template as written in the config.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Does the template use this placeholder?
    pub(crate) fn uses(&self, p: &Placeholder) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Value(v) if v == p))
    }

    /// Does the template hold a value from the environment (`{{env.NAME}}`)?
    /// Such values are treated as secrets wherever they are sent.
    pub(crate) fn uses_env(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::EnvValue(_)))
    }

    /// The `{{var.K}}` names the template uses.
    pub(crate) fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Value(Placeholder::Var(k)) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Render with `values`. A `{{var.K}}` without a value is an error naming
    /// it; so is, in a path, a value that is empty, `.` or `..`, which would
    /// not stay one segment of its own.
    pub(crate) fn render(&self, values: &Values, encoding: Encoding) -> Result<String> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            let value: String = match part {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::EnvValue(v) => v.clone(),
                Part::Value(p) => match p {
                    Placeholder::Page => values.page.map(|n| n.to_string()).unwrap_or_default(),
                    Placeholder::Offset => values.offset.map(|n| n.to_string()).unwrap_or_default(),
                    Placeholder::Limit => values.limit.map(|n| n.to_string()).unwrap_or_default(),
                    Placeholder::Cursor => values.cursor.unwrap_or_default().to_owned(),
                    Placeholder::ExternalId => values.external_id.unwrap_or_default().to_owned(),
                    Placeholder::AgentId => values.agent_id.unwrap_or_default().to_owned(),
                    Placeholder::Email => values.email.unwrap_or_default().to_owned(),
                    Placeholder::EventId => values.event_id.unwrap_or_default().to_owned(),
                    Placeholder::Var(k) => match values.vars.and_then(|v| v.get(k)) {
                        Some(v) => v.clone(),
                        None => bail!("variable `{k}` is not set (pass --set {k}=VALUE)"),
                    },
                    Placeholder::Env(_) => unreachable!("env values are resolved at parse time"),
                },
            };
            if encoding == Encoding::Path {
                let name = match part {
                    Part::Value(p) => p.to_string(),
                    _ => "environment value".into(),
                };
                check_path_segment(&name, &value)?;
            }
            match encoding {
                Encoding::Raw => out.push_str(&value),
                Encoding::Path => out.extend(utf8_percent_encode(&value, PATH_SEGMENT)),
                Encoding::Json => {
                    let quoted = serde_json::to_string(&value).expect("a string serializes");
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        Ok(out)
    }
}

/// A template error with its byte offset inside the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// Refuse a value that would not stay the one path segment it fills: `..`
/// climbs out of its place (`/users/../punch-clock` is `/punch-clock`), `.`
/// and the empty string drop it (`/Users/.` is `/Users`), and a control
/// character is no part of any identifier — the URL parser drops tabs and line
/// breaks, so `"\t.."` would reach the server as `..`. Every value put into a
/// path segment (a template's, a SCIM agent id) passes here first. `what` names
/// the value.
pub(crate) fn check_path_segment(what: &str, value: &str) -> Result<()> {
    if matches!(value, "" | "." | "..") {
        bail!(
            "{what} {value:?} cannot be put into a URL path: an empty, `.` or `..` segment would change the endpoint; nothing was sent"
        );
    }
    if value.chars().any(char::is_control) {
        bail!(
            "{what} {value:?} cannot be put into a URL path: it holds a control character; nothing was sent"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn renders_paging_values() {
        let t =
            Template::parse("/users?p={{page}}&o={{ offset }}", Scope::Source, &no_env).unwrap();
        let v = Values {
            page: Some(3),
            offset: Some(200),
            ..Values::default()
        };
        assert_eq!(t.render(&v, Encoding::Raw).unwrap(), "/users?p=3&o=200");
        assert!(t.uses(&Placeholder::Page));
        assert!(!t.uses(&Placeholder::Cursor));
    }

    #[test]
    fn path_values_are_percent_encoded() {
        let t =
            Template::parse("/users/{{external_id}}/punch-clock", Scope::Action, &no_env).unwrap();
        let v = Values {
            external_id: Some("a b/c?d#e%"),
            ..Values::default()
        };
        assert_eq!(
            t.render(&v, Encoding::Path).unwrap(),
            "/users/a%20b%2Fc%3Fd%23e%25/punch-clock"
        );
    }

    #[test]
    fn dot_segments_and_empty_values_are_refused_in_paths() {
        let t =
            Template::parse("/users/{{external_id}}/punch-clock", Scope::Action, &no_env).unwrap();
        for bad in ["..", ".", "", "\t..", "..\n", ".\r.", "a\u{7f}b"] {
            let v = Values {
                external_id: Some(bad),
                ..Values::default()
            };
            let err = t.render(&v, Encoding::Path).unwrap_err().to_string();
            assert!(err.contains("external_id"), "{err}");
            // As a query or body value it is only text.
            t.render(&v, Encoding::Raw).unwrap();
        }
        let v = Values {
            external_id: Some("..."),
            ..Values::default()
        };
        assert_eq!(
            t.render(&v, Encoding::Path).unwrap(),
            "/users/.../punch-clock"
        );
    }

    #[test]
    fn json_values_are_escaped_inside_strings() {
        let t = Template::parse(r#"{"email": "{{email}}"}"#, Scope::Action, &no_env).unwrap();
        let v = Values {
            email: Some("a\"b\\c\n@x.com"),
            ..Values::default()
        };
        let body = t.render(&v, Encoding::Json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["email"], "a\"b\\c\n@x.com");
    }

    #[test]
    fn env_values_are_read_at_parse_time() {
        let env = |n: &str| (n == "TOKEN").then(|| "tok-123456".to_owned());
        let t = Template::parse("Bearer {{env.TOKEN}}", Scope::Source, &env).unwrap();
        assert_eq!(
            t.render(&Values::default(), Encoding::Raw).unwrap(),
            "Bearer tok-123456"
        );
        let err = Template::parse("x{{env.MISSING}}", Scope::Source, &env).unwrap_err();
        assert_eq!(err.offset, 1);
        assert!(
            err.message.contains("MISSING is not set"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_and_out_of_scope_placeholders_are_rejected() {
        let err = Template::parse("/a/{{pgae}}", Scope::Source, &no_env).unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(
            err.message.contains("unknown placeholder `{{pgae}}`"),
            "{}",
            err.message
        );
        let err = Template::parse("{{external_id}}", Scope::Source, &no_env).unwrap_err();
        assert!(
            err.message.contains("cannot be used here"),
            "{}",
            err.message
        );
        let err = Template::parse("{{page}}", Scope::Action, &no_env).unwrap_err();
        assert!(
            err.message.contains("cannot be used here"),
            "{}",
            err.message
        );
        let err = Template::parse("/a/{{page", Scope::Source, &no_env).unwrap_err();
        assert!(err.message.contains("not closed"), "{}", err.message);
    }

    #[test]
    fn missing_set_variable_names_it() {
        let t = Template::parse(r#"{"event": "{{var.event}}"}"#, Scope::Action, &no_env).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["event"]);
        let err = t.render(&Values::default(), Encoding::Json).unwrap_err();
        assert!(err.to_string().contains("--set event=VALUE"), "{err}");
    }
}
