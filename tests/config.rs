//! The config describes itself: `agentsync schema` (the JSON Schema generated
//! from the types that parse the config) is committed and kept current, every
//! bundled config names it and passes it, `check` reports every error of a
//! file at once, and describes the job in the config's own words.

mod common;

use std::path::{Path, PathBuf};

use common::CONFIG_SECRETS as SECRETS;
use common::{Job, agentsync};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn committed_schema() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/schema/agentsync.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&committed_schema()).expect("the schema compiles")
}

/// Every `.toml` in `configs/` and `configs/examples/`.
fn bundled_configs() -> Vec<PathBuf> {
    let mut configs: Vec<_> = ["configs", "configs/examples"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 9, "{configs:?}");
    configs
}

/// The schema errors of TOML `text`, one line each (empty: valid).
fn schema_errors(text: &str) -> Vec<String> {
    let value: Value = toml::from_str(text).expect("the file is TOML");
    validator()
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_what_agentsync_schema_prints() {
    let out = agentsync(&["schema"]).expect(0);
    let committed =
        std::fs::read_to_string(format!("{ROOT}/schema/agentsync.schema.json")).unwrap();
    assert!(
        out.stdout == committed,
        "schema/agentsync.schema.json is out of date with the config types; regenerate it with\n    agentsync schema > schema/agentsync.schema.json\n(cargo run -- schema > schema/agentsync.schema.json)"
    );
    let schema: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
}

#[test]
fn the_schema_says_what_each_key_is() {
    let schema = committed_schema();
    let defs = &schema["$defs"];
    // Unknown keys are errors in every table.
    assert_eq!(schema["additionalProperties"], false);
    for table in [
        "Source",
        "Pagination",
        "Mapping",
        "Sink",
        "Sync",
        "Action",
        "Listen",
        "ListenRoute",
    ] {
        assert_eq!(defs[table]["additionalProperties"], false, "{table}");
        // Every key has a description, with its default where it has one.
        let properties = defs[table]["properties"].as_object().unwrap();
        for (key, property) in properties {
            assert!(
                property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{table}.{key} has no description"
            );
        }
    }
    assert_eq!(
        defs["Source"]["properties"]["timeout_secs"]["description"],
        "Whole-request timeout in seconds, 1 to 86400 (default 30)."
    );
    // Enums are the strings written in the file.
    assert_eq!(
        defs["UpdateMode"]["enum"],
        serde_json::json!(["auto", "put", "patch"])
    );
    assert_eq!(
        defs["EmailAttribute"]["enum"],
        serde_json::json!(["userName", "emails"])
    );
    assert_eq!(
        defs["PageKind"]["enum"],
        serde_json::json!([
            "none",
            "page",
            "offset",
            "cursor",
            "next_url",
            "link_header"
        ])
    );
    // TOML has no null: optional keys are left out, never null.
    assert_eq!(defs["Sink"]["properties"]["account"]["type"], "string");
}

#[test]
fn every_bundled_config_names_the_schema_and_passes_it_and_check() {
    let schema = Path::new(ROOT).join("schema/agentsync.schema.json");
    for config in bundled_configs() {
        let text = std::fs::read_to_string(&config).unwrap();
        // taplo's directive, first line, relative to the config's folder.
        let first = text.lines().next().unwrap();
        let target = first
            .strip_prefix("#:schema ")
            .unwrap_or_else(|| panic!("{}: first line is {first:?}", config.display()));
        let named = config.parent().unwrap().join(target);
        assert_eq!(
            named.canonicalize().unwrap(),
            schema.canonicalize().unwrap(),
            "{}",
            config.display()
        );
        let errors = schema_errors(&text);
        assert!(errors.is_empty(), "{}: {errors:#?}", config.display());
        let check = agentsync(&["check", "--config", config.to_str().unwrap()]);
        let out = SECRETS
            .iter()
            .fold(check, |run, name| run.env(name, "secret-value"))
            .run();
        assert_eq!(out.code, 0, "{}: {}", config.display(), out.stderr);
    }
}

#[test]
fn a_misspelled_key_or_a_wrong_value_fails_the_schema() {
    let good = std::fs::read_to_string(format!("{ROOT}/configs/punch.toml")).unwrap();
    assert!(schema_errors(&good).is_empty());
    for (bad, at) in [
        (good.replace("records =", "recrods ="), "/source"),
        (
            good.replace("kind = \"scim\"", "kind = \"scim\"\npage_sise = 10"),
            "/sink",
        ),
        (
            good.replace("update = \"put\"", "update = \"replace\""),
            "/sink/update",
        ),
        (
            good.replace("\"userName\"", "\"username\""),
            "/sink/email_attribute",
        ),
        (good.replace("\n[source]", "\n[sourse]\n[source]"), ""),
    ] {
        let errors = schema_errors(&bad);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "{at}: {errors:#?}"
        );
    }
}

#[test]
fn check_describes_the_job_in_the_configs_own_words() {
    let job = Job::raw(
        r#"
[source]
base_url = "http://127.0.0.1:9"
path = "/users"
query = { page = "{{page}}" }
records = ".users"

[pagination]
kind = "page"
total = ".total"

[sink]
kind = "talkdesk"
account = "acme"
email_attribute = "emails"

[sync]
on_contested = "skip"
metrics_file = "agentsync.prom"
ping_url = "https://hc.example/ping/5f0c4a1e-secret-uuid"
journal = "punch.journal.jsonl"
"#,
    )
    .write();
    let check = || {
        agentsync(&["check"])
            .config(&job)
            .env("TALKDESK_CLIENT_ID", "cid")
            .env("TALKDESK_CLIENT_SECRET", "csecret")
    };
    let out = check().expect(0);
    for words in [
        "kind = \"talkdesk\" https://api.talkdeskapp.com/scim/v2",
        "tokens   POST https://acme.talkdeskid.com/oauth/token",
        "read     straight from each page",
        "update = \"put\"",
        "email_attribute = \"emails\"",
        "on_contested = \"skip\"",
        "kind = \"page\"",
        "punch.journal.jsonl",
        "agentsync.prom",
        "hc.example",
    ] {
        assert!(out.stdout.contains(words), "{words}: {}", out.stdout);
    }
    for rust_name in [
        "Put",
        "Emails",
        "UserName",
        "Skip",
        "secret-uuid",
        "/ping/",
        "serde",
    ] {
        assert!(
            !out.stdout.contains(rust_name),
            "{rust_name}: {}",
            out.stdout
        );
    }
    let json = check().output_json().expect(0).json();
    let sink = &json["sink"];
    assert_eq!(sink["kind"], "talkdesk");
    assert_eq!(sink["update"], "put");
    assert_eq!(sink["email_attribute"], "emails");
    assert_eq!(sink["token_url"], "https://acme.talkdeskid.com/oauth/token");
    let sync = &json["sync"];
    assert_eq!(sync["on_contested"], "skip");
    assert_eq!(sync["ping_host"], "hc.example");
    assert!(
        sync["journal"]
            .as_str()
            .unwrap()
            .ends_with("punch.journal.jsonl")
    );
    assert!(
        sync["metrics_file"]
            .as_str()
            .unwrap()
            .ends_with("agentsync.prom")
    );
    assert!(!json.to_string().contains("secret-uuid"), "{json}");
}

/// `file:line:col:` of each error line of `check`'s stderr.
fn places(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("agentsync: error: "))
        .filter_map(|l| {
            let rest = l.split_once(".toml:")?.1;
            let mut parts = rest.splitn(3, ':');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn check_reports_every_error_at_once_with_its_line_and_column() {
    let job = Job::raw(
        r#"[source]
base_url = "http://127.0.0.1:9"
path = "/users"
query = { page = "{{paeg}}" }
records = ".users"

[pagination]
kind = "page"
total = ".total"

[mapping]
jq = '{id: .id, email: .email'

[sink]
kind = "scim"
base_url = "htp:/directory"
"#,
    )
    .write();
    let out = agentsync(&["check"]).config(&job).expect(2);
    let err = &out.stderr;
    assert_eq!(places(err), [(4, 19), (12, 30), (16, 12)], "{err}");
    assert!(err.contains("unknown placeholder `{{paeg}}`"), "{err}");
    assert!(err.contains("[mapping] jq: invalid jq"), "{err}");
    assert!(
        err.contains("[sink] base_url: the URL must be http:// or https://"),
        "{err}"
    );
    // Each with its line of the file and a caret under the column, as rustc shows them.
    assert!(
        err.contains("16 | base_url = \"htp:/directory\"\n   |            ^\n"),
        "{err}"
    );
    assert!(err.contains("3 errors in"), "{err}");
}

#[test]
fn check_reports_every_unknown_key_at_once() {
    let job = Job::raw(
        r#"[source]
base_url = "http://127.0.0.1:9"
recrods = ".users"

[pagination]
kind = "page"
totl = ".total"

[sink]
kind = "scim"
base_url = "http://127.0.0.1:9/scim/v2"
  page_sise = 10
"#,
    )
    .write();
    let out = agentsync(&["check"]).config(&job).expect(2);
    let err = &out.stderr;
    assert_eq!(places(err), [(3, 1), (7, 1), (12, 3)], "{err}");
    for said in [
        "unknown field `recrods` in [source]: did you mean `records`?",
        "unknown field `totl` in [pagination]: did you mean `total`?",
        "unknown field `page_sise` in [sink]: did you mean `page_size`?",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
}

#[test]
fn a_newcomers_config_mistakes_are_said_in_plain_words_at_their_key() {
    let config = |base_url: &str, max_pages: &str| {
        Job::raw(format!(
            r#"[source]
base_url = "{base_url}"
path = "/users"
records = ".users"

[source.auth]
kind = "bearer"
token_env = "NEWCOMER_TOKEN"

[pagination]
kind = "page"
max_pages = {max_pages}
"#
        ))
        .write()
    };
    let job = config("http://127.0.0.1:9", "\"10\"");
    let out = agentsync(&["check"])
        .config(&job)
        .env("NEWCOMER_TOKEN", "t")
        .expect(2);
    assert!(
        out.stderr.contains(
            "max_pages must be a whole number, not the string \"10\" (write it without quotes)"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("u64"), "{}", out.stderr);
    assert!(out.stderr.contains("1 error in"), "{}", out.stderr);

    // One rule for every URL without http:// or https://.
    for host in ["127.0.0.1:8787", "localhost:8787"] {
        let job = config(host, "10");
        let out = agentsync(&["check"])
            .config(&job)
            .env("NEWCOMER_TOKEN", "t")
            .expect(2);
        let said = format!(
            "[source] base_url: the URL must be http:// or https:// (did you mean \"http://{host}\"?)"
        );
        assert!(out.stderr.contains(&said), "{host}: {}", out.stderr);
    }

    // An empty secret is told as empty, at the key that names it.
    let job = config("http://127.0.0.1:9", "10");
    let out = agentsync(&["check"])
        .config(&job)
        .env("NEWCOMER_TOKEN", "")
        .expect(2);
    assert_eq!(places(&out.stderr), [(8, 13)], "{}", out.stderr);
    assert!(
        out.stderr
            .contains("[source.auth] token_env: environment variable NEWCOMER_TOKEN is empty"),
        "{}",
        out.stderr
    );
    let out = agentsync(&["check"])
        .config(&job)
        .env_remove("NEWCOMER_TOKEN")
        .expect(2);
    assert_eq!(places(&out.stderr), [(8, 13)], "{}", out.stderr);
    assert!(
        out.stderr.contains("NEWCOMER_TOKEN is not set"),
        "{}",
        out.stderr
    );
}
