//! The cookbook, `configs/sources/`: each system's config, as shipped, reads a
//! replica of that system's "list users" API written here from its public
//! documentation (the auth it checks, its pagination, the shape of its
//! answers and one quirk), and passes `agentsync check`. Only `base_url` and
//! `token_url` change, to point at the replica: the test exercises the file a
//! user starts from.

mod common;

#[path = "cookbook/adp.rs"]
mod adp;
#[path = "cookbook/bamboohr.rs"]
mod bamboohr;
#[path = "cookbook/deputy.rs"]
mod deputy;
#[path = "cookbook/google.rs"]
mod google;
#[path = "cookbook/graph.rs"]
mod graph;
#[path = "cookbook/okta.rs"]
mod okta;
#[path = "cookbook/salesforce.rs"]
mod salesforce;
#[path = "cookbook/scim.rs"]
mod scim;
#[path = "cookbook/ukg.rs"]
mod ukg;
#[path = "cookbook/workday.rs"]
mod workday;
#[path = "cookbook/zendesk.rs"]
mod zendesk;

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use common::{Job, JobDir, Output, Req, Resp, agentsync};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The sink of every recipe is Talkdesk, whose preset reads these.
const TALKDESK: [(&str, &str); 2] = [
    ("TALKDESK_CLIENT_ID", "talkdesk-client"),
    ("TALKDESK_CLIENT_SECRET", "talkdesk-secret"),
];

/// One file of the cookbook and the secrets it reads (the values its
/// replica accepts).
pub struct Recipe {
    pub file: &'static str,
    pub secrets: &'static [(&'static str, &'static str)],
    /// Writes the files the config names beside itself (a client
    /// certificate, a key), which `check` reads.
    pub beside: Option<fn(&Path)>,
}

/// Every recipe, each tested against its replica in its module.
const RECIPES: [&Recipe; 11] = [
    &adp::RECIPE,
    &bamboohr::RECIPE,
    &deputy::RECIPE,
    &google::RECIPE,
    &graph::RECIPE,
    &okta::RECIPE,
    &salesforce::RECIPE,
    &scim::RECIPE,
    &ukg::RECIPE,
    &workday::RECIPE,
    &zendesk::RECIPE,
];

fn shipped_path(file: &str) -> String {
    format!("{ROOT}/configs/sources/{file}")
}

/// The shipped config's text.
fn shipped(file: &str) -> String {
    let path = shipped_path(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` with the one line `KEY = "…"` given `value` instead.
fn with_value(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = \"");
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix(&prefix) {
            Some(rest) => {
                // The whole line is the key and its string: nothing else of
                // the file is lost with the old value.
                assert!(
                    rest.ends_with('"') && !rest[..rest.len() - 1].contains('"'),
                    "{line}"
                );
                replaced += 1;
                format!("{key} = {}", serde_json::to_string(value).unwrap())
            }
            None => line.to_owned(),
        })
        .collect();
    assert_eq!(replaced, 1, "`{key} = \"…\"` once in the file");
    lines.join("\n") + "\n"
}

impl Recipe {
    /// The shipped file with `base_url` (and `token_url`, when given)
    /// pointed at a replica; nothing else changed.
    pub fn pointed_at(&self, base_url: &str, token_url: Option<&str>) -> JobDir {
        let mut text = with_value(&shipped(self.file), "base_url", base_url);
        if let Some(token_url) = token_url {
            text = with_value(&text, "token_url", token_url);
        }
        Job::raw(text).write()
    }

    /// `agentsync ARGS` with this recipe's secrets in the environment.
    fn run(&self, args: &[&str]) -> common::Run {
        self.secrets
            .iter()
            .chain(TALKDESK.iter())
            .fold(agentsync(args), |run, (name, value)| run.env(name, value))
    }

    /// `fetch --output json` of `job` with the recipe's secrets: the users
    /// as (id, email), sorted, once the run succeeded and skipped nothing.
    pub fn fetch(&self, job: &JobDir) -> Vec<(String, String)> {
        self.fetch_with(job, &[])
    }

    /// `fetch` with more of the environment, e.g. `SSL_CERT_FILE`.
    pub fn fetch_with(&self, job: &JobDir, env: &[(&str, &str)]) -> Vec<(String, String)> {
        let run = self.run(&["fetch", "--output", "json"]).config(job);
        let out = env
            .iter()
            .fold(run, |run, (name, value)| run.env(name, value))
            .expect(0);
        users(&out)
    }
}

/// The (id, email) pairs of a fetch report, sorted; asserts nothing was
/// skipped (what a recipe leaves out, it leaves out with `select`).
fn users(out: &Output) -> Vec<(String, String)> {
    let report = out.json();
    assert_eq!(report["skipped"], serde_json::json!([]), "{}", out.stderr);
    let mut users: Vec<_> = report["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users: {report}"))
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    users.sort();
    users
}

/// The expected (id, email) pairs, sorted.
pub fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

/// Assert that `got` and `expected` hold the same users, naming the first
/// few missing and unexpected ones when they differ.
#[track_caller]
pub fn assert_same_users(got: &[(String, String)], expected: &[(String, String)]) {
    if got == expected {
        return;
    }
    let got_set: BTreeSet<_> = got.iter().collect();
    let expected_set: BTreeSet<_> = expected.iter().collect();
    let missing: Vec<_> = expected_set.difference(&got_set).take(5).collect();
    let extra: Vec<_> = got_set.difference(&expected_set).take(5).collect();
    panic!(
        "{} users instead of {}; missing (first 5): {missing:?}; unexpected (first 5): {extra:?}",
        got.len(),
        expected.len()
    );
}

/// `Authorization: Basic …` of `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The user name of a request's Basic credentials.
pub fn basic_user(req: &Req) -> Option<String> {
    let encoded = req.header("authorization")?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_owned())
}

/// A JSON answer with a status.
pub fn json_status(status: u16, body: &Value) -> Resp {
    Resp::status(status, "application/json", body.to_string())
}

/// The form fields of an `application/x-www-form-urlencoded` body.
pub fn form(req: &Req) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn form_field(req: &Req, name: &str) -> Option<String> {
    form(req)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// An OAuth2 token answer (RFC 6749 §5.1).
pub fn token_answer(token: &str) -> Resp {
    Resp::value(&serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3599,
    }))
}

#[test]
fn every_recipe_names_the_schema_passes_it_and_check() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/schema/agentsync.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for recipe in RECIPES {
        let text = shipped(recipe.file);
        assert_eq!(
            text.lines().next(),
            Some("#:schema ../../schema/agentsync.schema.json"),
            "{}",
            recipe.file
        );
        let value: Value = toml::from_str(&text).unwrap();
        let errors: Vec<_> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", recipe.file);
        // The file as shipped; where it names files beside itself, a copy
        // of it, unchanged, in a folder that has them.
        let copy = recipe.beside.map(|write| {
            let job = Job::raw(text.clone()).write();
            write(job.dir.path());
            job
        });
        let path = copy
            .as_ref()
            .map_or_else(|| shipped_path(recipe.file), |job| job.config().to_owned());
        let out = recipe.run(&["check", "--config", &path]).run();
        assert_eq!(out.code, 0, "{}: {}", recipe.file, out.stderr);
    }
}

#[test]
fn every_file_of_the_cookbook_is_a_tested_recipe_in_its_table() {
    let dir = Path::new(ROOT).join("configs/sources");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    let tested: BTreeSet<String> = RECIPES.iter().map(|r| r.file.to_owned()).collect();
    assert_eq!(
        files, tested,
        "every file in configs/sources/ has its replica test"
    );
    let table = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for file in &files {
        assert!(
            table.contains(&format!("[{file}]({file})")),
            "configs/sources/README.md lists {file}"
        );
    }
}
