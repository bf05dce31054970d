//! A job config said in Rust: `Job` builds the TOML a user would write, one
//! key at a time, and `write` puts it in a temporary folder of its own.

use std::path::PathBuf;

/// A value as TOML spells it.
pub trait Toml {
    fn toml(&self) -> String;
}

impl Toml for &str {
    fn toml(&self) -> String {
        // A JSON string is a valid TOML basic string.
        serde_json::to_string(self).unwrap()
    }
}

impl Toml for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

impl Toml for &String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

macro_rules! plain_toml {
    ($($t:ty),*) => {$(
        impl Toml for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
plain_toml!(bool, i32, i64, u32, u64, usize);

/// One `key = value`; an inline table when its entries are given one by one.
#[derive(Debug, Clone)]
enum Entry {
    Value(String),
    Inline(Vec<(String, String)>),
}

/// A config file under construction. Sections come out in the order of the
/// contract (`[source]`, `[pagination]`, `[mapping]`, `[sink]`, `[sync]`,
/// `[actions.*]`), keys in the order they were set; setting a key again
/// replaces it.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Job {
    raw: Option<String>,
    sections: Vec<(String, Vec<(String, Entry)>)>,
}

impl Job {
    /// A job reading from `base_url`.
    pub fn source(base_url: &str) -> Self {
        Job::default().set("base_url", base_url)
    }

    /// A config given as text, for tests where the exact text matters.
    pub fn raw(text: impl Into<String>) -> Self {
        Job {
            raw: Some(text.into()),
            sections: Vec::new(),
        }
    }

    /// The top-level `name`.
    pub fn name(self, name: &str) -> Self {
        self.key("", "name", name)
    }

    /// Any `[source]` key.
    pub fn set(self, key: &str, value: impl Toml) -> Self {
        self.key("source", key, value)
    }

    pub fn path(self, path: &str) -> Self {
        self.set("path", path)
    }

    pub fn records(self, jq: &str) -> Self {
        self.set("records", jq)
    }

    /// One entry of `[source] query = { … }`.
    pub fn query(self, name: &str, value: impl Toml) -> Self {
        self.inline("source", "query", name, value)
    }

    /// One entry of `[source] headers = { … }`.
    pub fn header(self, name: &str, value: impl Toml) -> Self {
        self.inline("source", "headers", name, value)
    }

    /// `[source.auth]` bearer with the token in `token_env`.
    pub fn bearer(self, token_env: &str) -> Self {
        self.auth("kind", "bearer").auth("token_env", token_env)
    }

    /// Any `[source.auth]` key.
    pub fn auth(self, key: &str, value: impl Toml) -> Self {
        self.key("source.auth", key, value)
    }

    /// `[pagination] kind`.
    pub fn paginate(self, kind: &str) -> Self {
        self.pagination("kind", kind)
    }

    /// Any `[pagination]` key.
    pub fn pagination(self, key: &str, value: impl Toml) -> Self {
        self.key("pagination", key, value)
    }

    pub fn total(self, jq: &str) -> Self {
        self.pagination("total", jq)
    }

    pub fn count(self, jq: &str) -> Self {
        self.pagination("count", jq)
    }

    /// `[mapping] jq`.
    pub fn mapping(self, jq: &str) -> Self {
        self.key("mapping", "jq", jq)
    }

    /// `[sink]` of kind scim at `base_url`.
    pub fn sink_scim(self, base_url: &str) -> Self {
        self.sink("kind", "scim").sink("base_url", base_url)
    }

    /// `[sink]` of kind file at `path` (relative to the config).
    pub fn sink_file(self, path: &str) -> Self {
        self.sink("kind", "file").sink("path", path)
    }

    /// Any `[sink]` key.
    pub fn sink(self, key: &str, value: impl Toml) -> Self {
        self.key("sink", key, value)
    }

    /// Any `[sink.auth]` key.
    pub fn sink_auth(self, key: &str, value: impl Toml) -> Self {
        self.key("sink.auth", key, value)
    }

    /// Any `[sync]` key.
    pub fn sync(self, key: &str, value: impl Toml) -> Self {
        self.key("sync", key, value)
    }

    /// Any key of `[actions.NAME]`.
    pub fn action(self, name: &str, key: &str, value: impl Toml) -> Self {
        self.key(&format!("actions.{name}"), key, value)
    }

    /// The config's text.
    pub fn text(&self) -> String {
        if let Some(raw) = &self.raw {
            assert!(self.sections.is_empty(), "a raw job takes no keys");
            return raw.clone();
        }
        let mut sections: Vec<_> = self.sections.iter().collect();
        sections.sort_by_key(|(name, _)| rank(name));
        let mut text = String::new();
        for (name, entries) in sections {
            if !name.is_empty() {
                text.push_str(&format!("\n[{name}]\n"));
            }
            for (key, entry) in entries {
                let value = match entry {
                    Entry::Value(v) => v.clone(),
                    Entry::Inline(items) => {
                        let items: Vec<_> = items
                            .iter()
                            .map(|(k, v)| format!("{} = {v}", bare(k)))
                            .collect();
                        format!("{{ {} }}", items.join(", "))
                    }
                };
                text.push_str(&format!("{} = {value}\n", bare(key)));
            }
        }
        text
    }

    /// Write the config as `job.toml` into a new temporary folder.
    pub fn write(&self) -> JobDir {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("job.toml");
        std::fs::write(&config, self.text()).unwrap();
        JobDir { dir, config }
    }

    fn entries(&mut self, section: &str) -> &mut Vec<(String, Entry)> {
        let i = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[i].1
    }

    fn key(mut self, section: &str, key: &str, value: impl Toml) -> Self {
        let entries = self.entries(section);
        let value = Entry::Value(value.toml());
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key.to_owned(), value)),
        }
        self
    }

    fn inline(mut self, section: &str, key: &str, name: &str, value: impl Toml) -> Self {
        let entries = self.entries(section);
        let slot = match entries.iter().position(|(k, _)| k == key) {
            Some(i) => &mut entries[i].1,
            None => {
                entries.push((key.to_owned(), Entry::Inline(Vec::new())));
                &mut entries.last_mut().unwrap().1
            }
        };
        let Entry::Inline(items) = slot else {
            panic!("{key} was set as a plain value");
        };
        match items.iter_mut().find(|(k, _)| k == name) {
            Some(item) => item.1 = value.toml(),
            None => items.push((name.to_owned(), value.toml())),
        }
        self
    }
}

/// Where a section goes in the file.
fn rank(section: &str) -> usize {
    let order = [
        "",
        "source",
        "source.auth",
        "pagination",
        "mapping",
        "sink",
        "sink.auth",
        "sync",
    ];
    order
        .iter()
        .position(|s| *s == section)
        .unwrap_or(order.len())
}

/// A key as TOML needs it: bare when it can be, quoted otherwise.
fn bare(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        key.toml()
    }
}

/// A written config and the folder around it (its files, its journal);
/// deleted when dropped.
pub struct JobDir {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl JobDir {
    /// The config's path, for `--config`.
    pub fn config(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// A file next to the config.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file next to the config; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The text of a file next to the config.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// The job's state directory (its journal and lock), as `config` sets it.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The journal's path (in the state directory), once a run made it.
    pub fn journal_path(&self) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.state_dir()).ok()?;
        entries
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".journal.jsonl"))
    }

    /// The journal's runs as `agentsync history` reads them (none when
    /// there is no journal yet).
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let out = super::agentsync(&["history"])
            .config(self)
            .output_json()
            .expect(0);
        match out.json() {
            serde_json::Value::Array(runs) => runs,
            other => panic!("history is not an array: {other}"),
        }
    }
}
