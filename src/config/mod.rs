//! The config file, in two stages: raw TOML structs that reject unknown keys
//! (`raw`), then a validated [`Job`] — URLs parsed, every jq expression compiled,
//! every `{{placeholder}}` known, every secret read from the environment — built
//! part by part before any request is sent. Every error names the file, line and column.

mod auth;
mod ctx;
mod endpoint;
mod job;
mod keys;
mod listen;
mod pagination;
mod raw;
mod raw_listen;
mod request;
pub(crate) mod schema;
mod sink;
mod sync;
mod words;

use std::path::{Path, PathBuf};

pub(crate) use ctx::ConfigError;
pub(crate) use endpoint::Endpoint;
pub(crate) use job::{EmailAttribute, Job, UpdateMode};
pub(crate) use listen::{ListenAuth, ListenSpec, check_addr};
pub(crate) use pagination::PaginationSpec;
pub(crate) use request::{ActionSpec, RequestSpec, SourceSpec};
pub(crate) use sink::SinkSpec;
pub(crate) use sync::{OnContested, SyncSpec};

use crate::template::EnvLookup;

/// Read and validate a config file. Its errors end a command as invalid
/// input (exit 2), each told with its line ([`crate::exit::Invalid`]).
pub(crate) fn load(path: &Path) -> anyhow::Result<Job> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::exit::invalid(ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read the config: {e}"),
            ..ConfigError::default()
        })
    })?;
    parse(&text, path, &|name| std::env::var(name).ok()).map_err(crate::exit::invalid)
}

/// Validate config `text` that came from `path`.
pub(crate) fn parse(text: &str, path: &Path, env: EnvLookup) -> Result<Job, ConfigError> {
    let ctx = ctx::Ctx::new(text, path.display().to_string(), env);
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end();
        let message = words::plain(message, text, e.span().map(|s| s.start))
            .unwrap_or_else(|| message.to_owned());
        let first = ctx.error(e.span(), message);
        // serde stops at the first unknown key: look for all of them.
        if first.message.starts_with("unknown field") {
            keys::unknown(text, &ctx).unwrap_or(first)
        } else {
            first
        }
    })?;
    Job::from_raw(&raw, path, &ctx)
}

/// Paths in the config are relative to the config file's folder.
fn relative_to_config(config: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_owned()
    } else {
        config.parent().unwrap_or(Path::new("")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paginate;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("tok-secret-1".into()),
            _ => None,
        }
    }

    pub(super) fn parse_str(text: &str) -> Result<Job, ConfigError> {
        parse(text, Path::new("/etc/agentsync/t.toml"), &env)
    }

    pub(super) const MINIMAL: &str = r#"
[source]
base_url = "http://127.0.0.1:8787"
path = "/users/formatted"
query = { page = "{{page}}" }
records = ".users"

[pagination]
kind = "page"
total = ".total"
"#;

    #[test]
    fn minimal_config_has_contract_defaults() {
        let job = parse_str(MINIMAL).unwrap();
        assert_eq!(job.name, "t");
        assert_eq!(job.pagination.kind, paginate::Kind::Page { start: 1 });
        assert_eq!(job.pagination.max_pages, 10_000);
        assert!(job.pagination.stop_on_empty);
        assert_eq!(job.source.endpoint.settings.retries, 3);
        assert_eq!(job.source.endpoint.concurrency, 4);
        assert_eq!(job.source.request.method, "GET");
        assert!(!job.sync.unlink_missing);
        assert_eq!(job.sync.max_changes, 500);
        assert_eq!(job.sync.max_unlink_percent, 20.0);
        // The journal is in the state directory (none in this environment),
        // no longer beside the config.
        assert_eq!(job.sync.journal, None);
        assert_eq!(job.sync.min_users, 1);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = MINIMAL.replace("records = \".users\"", "records = \".users\"\nrecrods = 1");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.at, Some((7, 1)), "{err}");
        assert!(err.message.contains("unknown field `recrods`"), "{err}");
    }

    /// Every table that shares the endpoint keys still rejects a stray key, at its place.
    #[test]
    fn unknown_key_in_each_endpoint_table_names_line_and_column() {
        let sink =
            "\n[sink]\nkind = \"scim\"\nbase_url = \"https://d.example/scim/v2\"\n  timeout = 5\n";
        let action = "\n[actions.punch]\npath = \"/users/{{external_id}}\"\n    methd = \"POST\"\n";
        let source = MINIMAL.replace("path = \"/users/formatted\"", "   paht = 1");
        // MINIMAL ends on line 10; the appended table starts on line 12.
        for (text, key, at) in [
            (format!("{MINIMAL}{sink}"), "timeout", (15, 3)),
            (format!("{MINIMAL}{action}"), "methd", (14, 5)),
            (source, "paht", (4, 4)),
        ] {
            let err = parse_str(&text).unwrap_err();
            assert_eq!(err.at, Some(at), "{err}");
            assert!(
                err.message.contains(&format!("unknown field `{key}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_toml_names_line() {
        let err = parse_str("[source]\nbase_url = = 1\n").unwrap_err();
        assert_eq!(err.at, Some((2, 12)), "{err}");
    }

    #[test]
    fn bad_jq_names_key_and_position() {
        let text = format!("{MINIMAL}\n[mapping]\njq = '{{id: .a, email: .b'\n");
        let err = parse_str(&text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("[mapping] jq: invalid jq at character 19"),
            "{msg}"
        );
        // Line of `jq = ...`, column of the end of the expression.
        assert_eq!(err.at, Some((13, 25)), "{msg}");
    }

    #[test]
    fn unknown_placeholder_points_inside_the_string() {
        let text = MINIMAL.replace("\"{{page}}\"", "\"{{paeg}}\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.at, Some((5, 19)), "{err}");
        assert!(
            err.message.contains("unknown placeholder `{{paeg}}`"),
            "{err}"
        );
    }
}
