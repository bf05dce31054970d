//! The config file, in two stages: raw TOML structs that reject unknown keys,
//! then a validated [`Job`] — URLs parsed, every jq expression compiled, every
//! `{{placeholder}}` known, every secret read from the environment — before any
//! request is sent. Every error names the file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::http::{self, Auth, OAuth2};
use crate::mapping::Jq;
use crate::paginate;
use crate::redact;
use crate::sink::scim::{EmailAttribute, UpdateMode};
use crate::template::{EnvLookup, Scope, Template};

/// An invalid config: exit code 2, nothing fetched or written.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Stage one: the file as written.

/// A template value: TOML strings, integers and booleans are all accepted, so
/// `query = { per_page = 100 }` works as well as `"100"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    source: Spanned<RawSource>,
    pagination: Option<RawPagination>,
    mapping: Option<RawMapping>,
    sink: Option<Spanned<RawSink>>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    actions: BTreeMap<String, Spanned<RawAction>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    base_url: Spanned<String>,
    method: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    query: BTreeMap<String, Spanned<Scalar>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<Scalar>>,
    body: Option<Spanned<String>>,
    records: Option<Spanned<String>>,
    timeout_secs: Option<u64>,
    retries: Option<u32>,
    max_retry_wait_secs: Option<u64>,
    rate_limit: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    allow_insecure_http: Option<bool>,
    auth: Option<Spanned<RawAuth>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawAuth {
    Bearer {
        token_env: String,
    },
    Basic {
        username_env: String,
        password_env: String,
    },
    Header {
        name: String,
        value_env: String,
    },
    Oauth2 {
        token_url: String,
        client_id_env: String,
        client_secret_env: String,
        scope: Option<String>,
        /// `basic` (default) sends the client credentials as HTTP Basic, `body`
        /// in the form body.
        client_auth: Option<ClientAuth>,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawPageKind {
    None,
    Page,
    Offset,
    Cursor,
    NextUrl,
    LinkHeader,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    kind: Spanned<RawPageKind>,
    start: Option<u64>,
    limit: Option<Spanned<u64>>,
    total: Option<Spanned<String>>,
    count: Option<Spanned<String>>,
    has_more: Option<Spanned<String>>,
    cursor: Option<Spanned<String>>,
    next_url: Option<Spanned<String>>,
    stop_on_empty: Option<bool>,
    max_pages: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    jq: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawSinkKind {
    Scim,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: Spanned<RawSinkKind>,
    base_url: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    page_size: Option<Spanned<usize>>,
    update: Option<UpdateMode>,
    email_attribute: Option<EmailAttribute>,
    timeout_secs: Option<u64>,
    retries: Option<u32>,
    max_retry_wait_secs: Option<u64>,
    rate_limit: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    allow_insecure_http: Option<bool>,
    auth: Option<Spanned<RawAuth>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    unlink_missing: Option<bool>,
    max_changes: Option<u64>,
    max_unlink_percent: Option<Spanned<f64>>,
    journal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    base_url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    query: BTreeMap<String, Spanned<Scalar>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<Scalar>>,
    body: Option<Spanned<String>>,
    auth: Option<Spanned<RawAuth>>,
}

// ---------------------------------------------------------------------------
// Stage two: the validated job.

/// Everything a run needs, checked.
#[derive(Debug)]
pub(crate) struct Job {
    pub name: String,
    pub path: PathBuf,
    pub source: SourceSpec,
    pub pagination: PaginationSpec,
    pub mapping: Jq,
    pub sink: Option<SinkSpec>,
    pub sync: SyncSpec,
    pub actions: BTreeMap<String, ActionSpec>,
}

/// Where requests go and how they behave.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub base_url: Url,
    pub settings: http::Settings,
    pub concurrency: usize,
    pub auth: Option<Auth>,
}

impl Endpoint {
    /// A client for this endpoint. The credentials move into it.
    pub(crate) fn client(&mut self) -> http::Client {
        http::Client::new(self.settings.clone(), self.auth.take())
    }
}

/// One templated request.
#[derive(Debug)]
pub(crate) struct RequestSpec {
    pub method: String,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
}

#[derive(Debug)]
pub(crate) struct SourceSpec {
    pub endpoint: Endpoint,
    pub request: RequestSpec,
    pub records: Jq,
}

#[derive(Debug)]
pub(crate) struct PaginationSpec {
    pub kind: paginate::Kind,
    pub limit: Option<u64>,
    pub total: Option<Jq>,
    pub count: Option<Jq>,
    pub has_more: Option<Jq>,
    pub cursor: Option<Jq>,
    pub next_url: Option<Jq>,
    pub stop_on_empty: bool,
    pub max_pages: u64,
}

#[derive(Debug)]
pub(crate) enum SinkSpec {
    Scim {
        endpoint: Box<Endpoint>,
        page_size: usize,
        update: UpdateMode,
        email_attribute: EmailAttribute,
    },
    File {
        path: PathBuf,
    },
}

#[derive(Debug)]
pub(crate) struct SyncSpec {
    pub unlink_missing: bool,
    pub max_changes: u64,
    pub max_unlink_percent: f64,
    pub journal: PathBuf,
}

#[derive(Debug)]
pub(crate) struct ActionSpec {
    /// Its own endpoint, or `None` to use the source's.
    pub endpoint: Option<Endpoint>,
    pub request: RequestSpec,
}

/// Read and validate a config file.
pub(crate) fn load(path: &Path) -> Result<Job, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        at: None,
        message: format!("cannot read the config: {e}"),
    })?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Validate config `text` that came from `path`.
pub(crate) fn parse(text: &str, path: &Path, env: EnvLookup) -> Result<Job, ConfigError> {
    let v = Validator {
        text,
        file: path.display().to_string(),
        env,
    };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| v.error(e.span(), e.message().trim_end().to_owned()))?;
    v.job(raw, path)
}

struct Validator<'a> {
    text: &'a str,
    file: String,
    env: EnvLookup<'a>,
}

impl Validator<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: span.map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }

    fn err_at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(Some(spanned.span()), message)
    }

    /// The byte position in the file of `offset` inside a TOML string value.
    fn inside_string(&self, value: &Spanned<String>, offset: usize) -> usize {
        let start = value.span().start;
        let raw = &self.text[start..value.span().end];
        let mut opening = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        if opening == 3 && raw[3..].starts_with('\n') {
            opening += 1;
        }
        // Exact for literal strings and basic strings without escapes.
        (start + opening + offset).min(value.span().end)
    }

    fn jq(&self, key: &str, value: &Spanned<String>) -> Result<Jq, ConfigError> {
        Jq::compile(value.get_ref()).map_err(|e| {
            let at = self.inside_string(value, e.offset);
            ConfigError {
                file: self.file.clone(),
                at: Some(line_col(self.text, at)),
                message: format!(
                    "{key}: invalid jq at character {} of `{}`: {}",
                    e.offset + 1,
                    value.get_ref(),
                    e.message
                ),
            }
        })
    }

    fn template(
        &self,
        key: &str,
        value: &Spanned<String>,
        scope: Scope,
    ) -> Result<Template, ConfigError> {
        Template::parse(value.get_ref(), scope, self.env).map_err(|e| {
            let at = self.inside_string(value, e.offset);
            ConfigError {
                file: self.file.clone(),
                at: Some(line_col(self.text, at)),
                message: format!("{key}: {}", e.message),
            }
        })
    }

    fn scalar_template(
        &self,
        key: &str,
        value: &Spanned<Scalar>,
        scope: Scope,
    ) -> Result<Template, ConfigError> {
        match value.get_ref() {
            Scalar::Text(s) => self.template(key, &Spanned::new(value.span(), s.clone()), scope),
            other => Ok(Template::literal(&other.text())),
        }
    }

    fn env_secret(
        &self,
        spanned_at: Range<usize>,
        var: &str,
        what: &str,
    ) -> Result<SecretString, ConfigError> {
        match (self.env)(var) {
            Some(v) if !v.is_empty() => {
                redact::register(&v);
                Ok(v.into())
            }
            _ => Err(self.error(
                Some(spanned_at),
                format!("{what}: environment variable {var} is not set"),
            )),
        }
    }

    fn url(&self, key: &str, value: &Spanned<String>) -> Result<Url, ConfigError> {
        let url = Url::parse(value.get_ref().trim()).map_err(|e| {
            self.err_at(
                value,
                format!("{key}: invalid URL {:?}: {e}", value.get_ref()),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.err_at(value, format!("{key}: the URL must be http:// or https://")));
        }
        Ok(url)
    }

    fn auth(&self, key: &str, raw: &Spanned<RawAuth>) -> Result<Auth, ConfigError> {
        let at = raw.span();
        Ok(match raw.get_ref() {
            RawAuth::Bearer { token_env } => Auth::Bearer(self.env_secret(at, token_env, key)?),
            RawAuth::Basic {
                username_env,
                password_env,
            } => {
                let username = self.env_secret(at.clone(), username_env, key)?;
                Auth::Basic {
                    username: secrecy::ExposeSecret::expose_secret(&username).to_owned(),
                    password: self.env_secret(at, password_env, key)?,
                }
            }
            RawAuth::Header { name, value_env } => {
                if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(self.error(
                        Some(at),
                        format!("{key}: {name:?} is not a valid header name"),
                    ));
                }
                Auth::Header {
                    name: name.clone(),
                    value: self.env_secret(at, value_env, key)?,
                }
            }
            RawAuth::Oauth2 {
                token_url,
                client_id_env,
                client_secret_env,
                scope,
                client_auth,
            } => {
                let token_url = self.url(
                    &format!("{key}.token_url"),
                    &Spanned::new(at.clone(), token_url.clone()),
                )?;
                let client_id = self.env_secret(at.clone(), client_id_env, key)?;
                Auth::OAuth2(OAuth2 {
                    token_url,
                    client_id: secrecy::ExposeSecret::expose_secret(&client_id).to_owned(),
                    client_secret: self.env_secret(at, client_secret_env, key)?,
                    scope: scope.clone(),
                    basic_client_auth: !matches!(client_auth, Some(ClientAuth::Body)),
                })
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn endpoint(
        &self,
        table: &str,
        base_url: &Spanned<String>,
        timeout_secs: Option<u64>,
        retries: Option<u32>,
        max_retry_wait_secs: Option<u64>,
        rate_limit: Option<&Spanned<f64>>,
        concurrency: Option<&Spanned<usize>>,
        allow_insecure_http: Option<bool>,
        auth: Option<&Spanned<RawAuth>>,
    ) -> Result<Endpoint, ConfigError> {
        let base = self.url(&format!("[{table}] base_url"), base_url)?;
        let auth = auth
            .map(|a| self.auth(&format!("[{table}.auth]"), a))
            .transpose()?;
        if auth.is_some()
            && base.scheme() == "http"
            && !is_loopback(&base)
            && allow_insecure_http != Some(true)
        {
            return Err(self.err_at(
                base_url,
                format!(
                    "[{table}] base_url: credentials would travel unencrypted over http:// to {}; use https:// or set allow_insecure_http = true",
                    base.host_str().unwrap_or("?")
                ),
            ));
        }
        if let Some(rate) = rate_limit
            && !(rate.get_ref().is_finite() && *rate.get_ref() >= 0.0)
        {
            return Err(self.err_at(
                rate,
                format!("[{table}] rate_limit must be 0 or a positive number"),
            ));
        }
        if let Some(c) = concurrency
            && *c.get_ref() == 0
        {
            return Err(self.err_at(c, format!("[{table}] concurrency must be at least 1")));
        }
        let defaults = http::Settings::default();
        Ok(Endpoint {
            base_url: base,
            settings: http::Settings {
                timeout: timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.timeout),
                retries: retries.unwrap_or(defaults.retries),
                max_retry_wait: max_retry_wait_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.max_retry_wait),
                rate_limit: rate_limit.map(|r| *r.get_ref()).unwrap_or(0.0),
                ..defaults
            },
            concurrency: concurrency.map(|c| *c.get_ref()).unwrap_or(4),
            auth,
        })
    }

    fn method(
        &self,
        key: &str,
        method: Option<&Spanned<String>>,
        default: &str,
    ) -> Result<String, ConfigError> {
        let Some(m) = method else {
            return Ok(default.to_owned());
        };
        let upper = m.get_ref().trim().to_ascii_uppercase();
        if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.err_at(m, format!("{key}: {:?} is not an HTTP method", m.get_ref())));
        }
        Ok(upper)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        table: &str,
        method: String,
        path: Option<&Spanned<String>>,
        query: &BTreeMap<String, Spanned<Scalar>>,
        headers: &BTreeMap<String, Spanned<Scalar>>,
        body: Option<&Spanned<String>>,
        scope: Scope,
    ) -> Result<RequestSpec, ConfigError> {
        let path = match path {
            Some(p) => self.template(&format!("[{table}] path"), p, scope)?,
            None => Template::literal(""),
        };
        let query = query
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    self.scalar_template(&format!("[{table}] query.{k}"), v, scope)?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let headers = headers
            .iter()
            .map(|(k, v)| {
                if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    return Err(self.err_at(
                        v,
                        format!("[{table}] headers: {k:?} is not a valid header name"),
                    ));
                }
                Ok((
                    k.clone(),
                    self.scalar_template(&format!("[{table}] headers.{k}"), v, scope)?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let body = body
            .map(|b| self.template(&format!("[{table}] body"), b, scope))
            .transpose()?;
        Ok(RequestSpec {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    fn job(&self, raw: RawConfig, path: &Path) -> Result<Job, ConfigError> {
        let src = raw.source.get_ref();
        let mut source_endpoint = self.endpoint(
            "source",
            &src.base_url,
            src.timeout_secs,
            src.retries,
            src.max_retry_wait_secs,
            src.rate_limit.as_ref(),
            src.concurrency.as_ref(),
            src.allow_insecure_http,
            src.auth.as_ref(),
        )?;
        let method = self.method("[source] method", src.method.as_ref(), "GET")?;
        let request = self.request(
            "source",
            method,
            src.path.as_ref(),
            &src.query,
            &src.headers,
            src.body.as_ref(),
            Scope::Source,
        )?;
        let records = match &src.records {
            Some(r) => self.jq("[source] records", r)?,
            None => Jq::compile(".").expect("identity compiles"),
        };
        let pagination = self.pagination(raw.pagination.as_ref(), &request, &raw.source)?;
        let mapping = match &raw.mapping {
            Some(m) => self.jq("[mapping] jq", &m.jq)?,
            None => Jq::compile("{id: .id, email: .email}").expect("default mapping compiles"),
        };
        if pagination.kind == paginate::Kind::None && source_endpoint.concurrency > 1 {
            source_endpoint.concurrency = 1;
        }
        let sink = raw.sink.as_ref().map(|s| self.sink(s, path)).transpose()?;
        let sync = self.sync(&raw.sync, path)?;
        let actions = raw
            .actions
            .iter()
            .map(|(name, a)| Ok((name.clone(), self.action(name, a)?)))
            .collect::<Result<_, ConfigError>>()?;
        let name = raw.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "agentsync".into())
        });
        Ok(Job {
            name,
            path: path.to_owned(),
            source: SourceSpec {
                endpoint: source_endpoint,
                request,
                records,
            },
            pagination,
            mapping,
            sink,
            sync,
            actions,
        })
    }

    fn pagination(
        &self,
        raw: Option<&RawPagination>,
        request: &RequestSpec,
        source: &Spanned<RawSource>,
    ) -> Result<PaginationSpec, ConfigError> {
        let Some(p) = raw else {
            return Ok(PaginationSpec {
                kind: paginate::Kind::None,
                limit: None,
                total: None,
                count: None,
                has_more: None,
                cursor: None,
                next_url: None,
                stop_on_empty: true,
                max_pages: 10_000,
            });
        };
        let kind = *p.kind.get_ref();
        let jq = |key: &str, v: &Option<Spanned<String>>| {
            v.as_ref()
                .map(|v| self.jq(&format!("[pagination] {key}"), v))
                .transpose()
        };
        let misplaced = |key: &str, present: bool, allowed: &[RawPageKind]| {
            if present && !allowed.contains(&kind) {
                Err(self.err_at(
                    &p.kind,
                    format!(
                        "[pagination] {key} has no meaning for kind = \"{}\"",
                        kind_name(kind)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        use RawPageKind as K;
        misplaced("start", p.start.is_some(), &[K::Page, K::Offset])?;
        misplaced("limit", p.limit.is_some(), &[K::Offset])?;
        misplaced("cursor", p.cursor.is_some(), &[K::Cursor])?;
        misplaced("next_url", p.next_url.is_some(), &[K::NextUrl])?;
        let needs = |key: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(self.err_at(
                    &p.kind,
                    format!(
                        "[pagination] kind = \"{}\" needs `{key}` (a jq expression on the page)",
                        kind_name(kind)
                    ),
                ))
            }
        };
        match kind {
            K::Cursor => needs("cursor", p.cursor.is_some())?,
            K::NextUrl => needs("next_url", p.next_url.is_some())?,
            _ => {}
        }
        let stop_on_empty = p.stop_on_empty.unwrap_or(true);
        if matches!(kind, K::Page | K::Offset)
            && !stop_on_empty
            && p.total.is_none()
            && p.has_more.is_none()
        {
            return Err(self.err_at(
                &p.kind,
                "[pagination] nothing would stop this listing: set `total`, `has_more`, or stop_on_empty = true",
            ));
        }
        // The request must move with the pages, or every page would be the first.
        let uses = |ph: crate::template::Placeholder| {
            request.path.uses(&ph)
                || request.query.iter().any(|(_, t)| t.uses(&ph))
                || request.headers.iter().any(|(_, t)| t.uses(&ph))
                || request.body.as_ref().is_some_and(|b| b.uses(&ph))
        };
        use crate::template::Placeholder as P;
        let moving = match kind {
            K::Page => Some(("{{page}}", uses(P::Page) || uses(P::Offset))),
            K::Offset => Some(("{{offset}}", uses(P::Offset) || uses(P::Page))),
            K::Cursor => Some(("{{cursor}}", uses(P::Cursor))),
            _ => None,
        };
        if let Some((ph, false)) = moving {
            return Err(self.err_at(
                source,
                format!(
                    "[pagination] kind = \"{}\" but the [source] request never uses {ph}: every page would be the same",
                    kind_name(kind)
                ),
            ));
        }
        let max_pages = match &p.max_pages {
            Some(m) if *m.get_ref() == 0 => {
                return Err(self.err_at(m, "[pagination] max_pages must be at least 1"));
            }
            Some(m) => *m.get_ref(),
            None => 10_000,
        };
        let limit = match &p.limit {
            Some(l) if *l.get_ref() == 0 => {
                return Err(self.err_at(l, "[pagination] limit must be at least 1"));
            }
            l => l.as_ref().map(|l| *l.get_ref()),
        };
        Ok(PaginationSpec {
            kind: match kind {
                K::None => paginate::Kind::None,
                K::Page => paginate::Kind::Page {
                    start: p.start.unwrap_or(1),
                },
                K::Offset => paginate::Kind::Offset {
                    start: p.start.unwrap_or(0),
                    limit,
                },
                K::Cursor => paginate::Kind::Cursor,
                K::NextUrl => paginate::Kind::NextUrl,
                K::LinkHeader => paginate::Kind::LinkHeader,
            },
            limit,
            total: jq("total", &p.total)?,
            count: jq("count", &p.count)?,
            has_more: jq("has_more", &p.has_more)?,
            cursor: jq("cursor", &p.cursor)?,
            next_url: jq("next_url", &p.next_url)?,
            stop_on_empty,
            max_pages,
        })
    }

    fn sink(&self, raw: &Spanned<RawSink>, config_path: &Path) -> Result<SinkSpec, ConfigError> {
        let s = raw.get_ref();
        match s.kind.get_ref() {
            RawSinkKind::Scim => {
                if let Some(p) = &s.path {
                    return Err(self.err_at(p, "[sink] path is for kind = \"file\""));
                }
                let Some(base_url) = &s.base_url else {
                    return Err(self.err_at(&s.kind, "[sink] kind = \"scim\" needs base_url"));
                };
                let endpoint = self.endpoint(
                    "sink",
                    base_url,
                    s.timeout_secs,
                    s.retries,
                    s.max_retry_wait_secs,
                    s.rate_limit.as_ref(),
                    s.concurrency.as_ref(),
                    s.allow_insecure_http,
                    s.auth.as_ref(),
                )?;
                let page_size = match &s.page_size {
                    Some(p) if *p.get_ref() == 0 => {
                        return Err(self.err_at(p, "[sink] page_size must be at least 1"));
                    }
                    Some(p) => *p.get_ref(),
                    None => 100,
                };
                Ok(SinkSpec::Scim {
                    endpoint: Box::new(endpoint),
                    page_size,
                    update: s.update.unwrap_or(UpdateMode::Put),
                    email_attribute: s.email_attribute.unwrap_or(EmailAttribute::UserName),
                })
            }
            RawSinkKind::File => {
                let Some(p) = &s.path else {
                    return Err(self.err_at(&s.kind, "[sink] kind = \"file\" needs path"));
                };
                if let Some(u) = &s.base_url {
                    return Err(self.err_at(u, "[sink] base_url is for kind = \"scim\""));
                }
                let path = relative_to_config(config_path, p.get_ref());
                match path.extension().and_then(|e| e.to_str()) {
                    Some("json" | "csv") => Ok(SinkSpec::File { path }),
                    _ => Err(self.err_at(p, "[sink] path must end in .json or .csv")),
                }
            }
        }
    }

    fn sync(&self, raw: &RawSync, config_path: &Path) -> Result<SyncSpec, ConfigError> {
        let max_unlink_percent = match &raw.max_unlink_percent {
            Some(p) if !(0.0..=100.0).contains(p.get_ref()) => {
                return Err(self.err_at(p, "[sync] max_unlink_percent must be between 0 and 100"));
            }
            Some(p) => *p.get_ref(),
            None => 20.0,
        };
        let journal = match &raw.journal {
            Some(j) => relative_to_config(config_path, j),
            None => config_path.with_extension("journal.jsonl"),
        };
        Ok(SyncSpec {
            unlink_missing: raw.unlink_missing.unwrap_or(false),
            max_changes: raw.max_changes.unwrap_or(500),
            max_unlink_percent,
            journal,
        })
    }

    fn action(&self, name: &str, raw: &Spanned<RawAction>) -> Result<ActionSpec, ConfigError> {
        let a = raw.get_ref();
        let table = format!("actions.{name}");
        let endpoint = match &a.base_url {
            Some(url) => Some(self.endpoint(
                &table,
                url,
                None,
                None,
                None,
                None,
                None,
                None,
                a.auth.as_ref(),
            )?),
            None => {
                if let Some(auth) = &a.auth {
                    return Err(self.err_at(
                        auth,
                        format!(
                            "[{table}] auth needs its own base_url (else the source's auth is used)"
                        ),
                    ));
                }
                None
            }
        };
        let method = self.method(&format!("[{table}] method"), a.method.as_ref(), "POST")?;
        let request = self.request(
            &table,
            method,
            Some(&a.path),
            &a.query,
            &a.headers,
            a.body.as_ref(),
            Scope::Action,
        )?;
        Ok(ActionSpec { endpoint, request })
    }
}

fn kind_name(kind: RawPageKind) -> &'static str {
    match kind {
        RawPageKind::None => "none",
        RawPageKind::Page => "page",
        RawPageKind::Offset => "offset",
        RawPageKind::Cursor => "cursor",
        RawPageKind::NextUrl => "next_url",
        RawPageKind::LinkHeader => "link_header",
    }
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

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Join a base URL and a rendered path: `https://h/scim/v2` + `/Users` keeps the
/// base's path (unlike RFC 3986 resolution, which would drop `scim/v2`).
pub(crate) fn join_url(base: &Url, path: &str) -> Url {
    if path.is_empty() {
        return base.clone();
    }
    let mut url = base.clone();
    let (path_part, query_part) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path_part.trim_start_matches('/')
    );
    url.set_path(&joined);
    if let Some(q) = query_part {
        let merged = match base.query() {
            Some(b) if !b.is_empty() => format!("{b}&{q}"),
            _ => q.to_owned(),
        };
        url.set_query(Some(&merged));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("tok-secret-1".into()),
            _ => None,
        }
    }

    fn parse_str(text: &str) -> Result<Job, ConfigError> {
        parse(text, Path::new("/etc/agentsync/t.toml"), &env)
    }

    const MINIMAL: &str = r#"
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
        assert_eq!(
            job.sync.journal,
            Path::new("/etc/agentsync/t.journal.jsonl")
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = MINIMAL.replace("records = \".users\"", "records = \".users\"\nrecrods = 1");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.at, Some((7, 1)), "{err}");
        assert!(err.message.contains("unknown field `recrods`"), "{err}");
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

    #[test]
    fn pagination_keys_are_checked_against_the_kind() {
        let text = MINIMAL.replace("total = \".total\"", "cursor = \".next\"");
        let err = parse_str(&text).unwrap_err();
        assert!(
            err.message
                .contains("cursor has no meaning for kind = \"page\""),
            "{err}"
        );

        let text = MINIMAL.replace("kind = \"page\"", "kind = \"cursor\"");
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("needs `cursor`"), "{err}");

        let text = MINIMAL.replace("{{page}}", "1");
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("never uses {{page}}"), "{err}");
    }

    #[test]
    fn missing_secret_env_is_a_config_error() {
        let text = MINIMAL.replace(
            "records = \".users\"",
            "records = \".users\"\nauth = { kind = \"bearer\", token_env = \"NOPE\" }",
        );
        let err = parse_str(&text).unwrap_err();
        assert!(
            err.message.contains("environment variable NOPE is not set"),
            "{err}"
        );
    }

    #[test]
    fn credentials_over_remote_http_are_refused() {
        let text = MINIMAL
            .replace("http://127.0.0.1:8787", "http://api.example.com")
            .replace(
                "records = \".users\"",
                "records = \".users\"\nauth = { kind = \"bearer\", token_env = \"TOKEN\" }",
            );
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("unencrypted"), "{err}");
        assert!(!err.to_string().contains("tok-secret-1"));
        let ok = text.replace(
            "records = \".users\"",
            "records = \".users\"\nallow_insecure_http = true",
        );
        parse_str(&ok).unwrap();
    }

    #[test]
    fn sink_file_path_is_relative_to_the_config() {
        let text = format!("{MINIMAL}\n[sink]\nkind = \"file\"\npath = \"agents.csv\"\n");
        let job = parse_str(&text).unwrap();
        match job.sink {
            Some(SinkSpec::File { path }) => {
                assert_eq!(path, Path::new("/etc/agentsync/agents.csv"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn join_url_keeps_the_base_path() {
        let base = Url::parse("https://api.talkdeskapp.com/scim/v2").unwrap();
        assert_eq!(
            join_url(&base, "/Users").as_str(),
            "https://api.talkdeskapp.com/scim/v2/Users"
        );
        let base = Url::parse("http://h/api/?key=1").unwrap();
        assert_eq!(
            join_url(&base, "users?x=2").as_str(),
            "http://h/api/users?key=1&x=2"
        );
    }
}
