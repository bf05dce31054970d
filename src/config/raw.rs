//! Stage one: the config file as written. Every table rejects unknown keys, and
//! the values that can be wrong keep their place in the file (`Spanned`). The
//! same types give the config's JSON Schema (`agentsync schema`): each key's
//! `///` line is its description there, so it is written for the config's reader.
//! `toml::Spanned<T>` has no schema of its own; `#[schemars(with = "T")]` on
//! each such field describes it as the value it holds.

// The `///` docs here are the JSON Schema's descriptions, written for people
// editing TOML: product names (OAuth2) and URLs stay plain text.
#![allow(clippy::doc_markdown)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::job::{EmailAttribute, UpdateMode};
use super::sync::OnContested;

/// A template value: a string (with `{{placeholders}}`), an integer or a boolean.
// `query = { per_page = 100 }` works as well as `"100"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    pub(super) fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// The keys of one request, borrowed from the `[source]` or `[actions.NAME]` table.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawRequest<'a> {
    pub method: Option<&'a Spanned<String>>,
    pub path: Option<&'a Spanned<String>>,
    pub query: &'a BTreeMap<String, Spanned<Scalar>>,
    pub headers: &'a BTreeMap<String, Spanned<Scalar>>,
    pub body: Option<&'a Spanned<String>>,
    pub omit_empty_query: Option<bool>,
    /// A POST (or PATCH) that only reads: safe to send again.
    pub retry_post: Option<bool>,
}

/// The keys of one endpoint, borrowed from the table that declared them.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawEndpoint<'a> {
    pub base_url: Option<&'a Spanned<String>>,
    pub timeout_secs: Option<&'a Spanned<u64>>,
    pub retries: Option<&'a Spanned<u32>>,
    pub max_retry_wait_secs: Option<&'a Spanned<u64>>,
    pub rate_limit: Option<&'a Spanned<f64>>,
    pub concurrency: Option<&'a Spanned<usize>>,
    pub allow_insecure_http: Option<bool>,
    pub auth: Option<&'a Spanned<RawAuth>>,
    pub ca_file: Option<&'a Spanned<String>>,
    pub client_cert_file: Option<&'a Spanned<String>>,
    pub client_key_file: Option<&'a Spanned<String>>,
    pub max_response_mb: Option<&'a Spanned<u64>>,
}

impl RawEndpoint<'_> {
    /// The first key set besides `base_url`, for tables where those keys need
    /// a `base_url` of their own.
    pub(super) fn first_setting(&self) -> Option<&'static str> {
        [
            ("timeout_secs", self.timeout_secs.is_some()),
            ("retries", self.retries.is_some()),
            ("max_retry_wait_secs", self.max_retry_wait_secs.is_some()),
            ("rate_limit", self.rate_limit.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("allow_insecure_http", self.allow_insecure_http.is_some()),
            ("auth", self.auth.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("client_cert_file", self.client_cert_file.is_some()),
            ("client_key_file", self.client_key_file.is_some()),
            ("max_response_mb", self.max_response_mb.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }
}

/// Declares a table that holds an endpoint: the endpoint keys are written here
/// once, then the table's own. Not `#[serde(flatten)]`: flattening turns off
/// `deny_unknown_fields` and loses the spans that place an error in the file.
macro_rules! endpoint_table {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        // The caller's attributes (docs, `#[schemars]`) after the derive
        // that introduces them.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        $(#[$meta])*
        pub(super) struct $name {
            /// Where requests go: an http:// or https:// URL; a path in it is kept (`https://h/api` + `/users`).
            #[schemars(with = "Option<String>")]
            pub base_url: Option<Spanned<String>>,
            /// Whole-request timeout in seconds, 1 to 86400 (default 30).
            #[schemars(with = "Option<u64>", range(min = 1, max = 86400))]
            pub timeout_secs: Option<Spanned<u64>>,
            /// Retries on connect errors, timeouts, 429, 502, 503, 504, 0 to 100; `Retry-After` and the rate-limit reset headers are honoured; 429s are retried for up to `max_retry_wait_secs` × `retries` in all (default 3).
            #[schemars(with = "Option<u32>", range(max = 100))]
            pub retries: Option<Spanned<u32>>,
            /// Cap in seconds on any one wait between tries, 0 to 3600 (default 60).
            #[schemars(with = "Option<u64>", range(max = 3600))]
            pub max_retry_wait_secs: Option<Spanned<u64>>,
            /// Requests per second, no bursts above it: 0 = no limit, else 0.001 to 1000000 (default 0).
            #[schemars(with = "Option<f64>")]
            pub rate_limit: Option<Spanned<f64>>,
            /// Requests in flight at once, 1 to 256; 1 = sequential (default 4).
            #[schemars(with = "Option<usize>", range(min = 1, max = 256))]
            pub concurrency: Option<Spanned<usize>>,
            /// Allow credentials over http:// to a host that is not loopback (default false).
            pub allow_insecure_http: Option<bool>,
            /// Credentials, read from the environment, sent only to this endpoint's origin (default none).
            #[schemars(with = "Option<RawAuth>")]
            pub auth: Option<Spanned<RawAuth>>,
            /// A PEM bundle of extra trusted roots, beside the system's and the bundled ones; relative to the config file (default none).
            #[schemars(with = "Option<String>")]
            pub ca_file: Option<Spanned<String>>,
            /// Mutual TLS: the client certificate (PEM, the client's own first, then any intermediates), shown to this endpoint and its OAuth2 token endpoint; relative to the config file; needs `client_key_file` (default none).
            #[schemars(with = "Option<String>")]
            pub client_cert_file: Option<Spanned<String>>,
            /// Mutual TLS: the private key of `client_cert_file` (PEM: PKCS#8, RSA or EC, unencrypted); relative to the config file (default none).
            #[schemars(with = "Option<String>")]
            pub client_key_file: Option<Spanned<String>>,
            /// The largest response body read, in MiB, 1 to 4096 (default 64).
            #[schemars(with = "Option<u64>", range(min = 1, max = 4096))]
            pub max_response_mb: Option<Spanned<u64>>,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// The endpoint keys of this table.
            pub(super) fn endpoint(&self) -> RawEndpoint<'_> {
                RawEndpoint {
                    base_url: self.base_url.as_ref(),
                    timeout_secs: self.timeout_secs.as_ref(),
                    retries: self.retries.as_ref(),
                    max_retry_wait_secs: self.max_retry_wait_secs.as_ref(),
                    rate_limit: self.rate_limit.as_ref(),
                    concurrency: self.concurrency.as_ref(),
                    allow_insecure_http: self.allow_insecure_http,
                    auth: self.auth.as_ref(),
                    ca_file: self.ca_file.as_ref(),
                    client_cert_file: self.client_cert_file.as_ref(),
                    client_key_file: self.client_key_file.as_ref(),
                    max_response_mb: self.max_response_mb.as_ref(),
                }
            }
        }
    };
}

/// One sync job: the source request ("get users"), its pagination, the jq
/// mapping to `{id, email}`, and the sink (the agent directory that receives
/// external IDs). Secrets come from the environment, never from the file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "agentsync config")]
pub(super) struct RawConfig {
    /// Label for logs and reports (default: the file name without extension).
    pub name: Option<String>,
    /// The "get users" request of the external system.
    #[schemars(with = "RawSource")]
    pub source: Spanned<RawSource>,
    /// How the source is read page by page (default: one request, `kind = "none"`).
    pub pagination: Option<RawPagination>,
    /// The jq run once per record to give `{id, email}`.
    pub mapping: Option<RawMapping>,
    /// The agent directory that receives external IDs (default none: `fetch` only).
    #[schemars(with = "Option<RawSink>")]
    pub sink: Option<Spanned<RawSink>>,
    /// The safety limits of a run and where its state goes.
    #[serde(default)]
    pub sync: RawSync,
    /// Requests for one agent, run by `agentsync action NAME`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawAction>")]
    pub actions: BTreeMap<String, Spanned<RawAction>>,
    /// `agentsync listen`: the agent events received over HTTP and the action each one runs.
    #[schemars(with = "Option<super::raw_listen::RawListen>")]
    pub listen: Option<Spanned<super::raw_listen::RawListen>>,
}

endpoint_table! {
    /// The "get users" request of the external system, and how it is sent.
    #[schemars(rename = "Source")]
    struct RawSource {
        /// HTTP method (default `GET`).
        #[schemars(with = "Option<String>")]
        method: Option<Spanned<String>>,
        /// Template appended to `base_url`; values are percent-encoded (default "").
        #[schemars(with = "Option<String>")]
        path: Option<Spanned<String>>,
        /// Query parameters: templates, URL-encoded; `{{page}}` `{{offset}}` `{{limit}}` `{{cursor}}` `{{env.NAME}}` (default none).
        #[serde(default)]
        #[schemars(with = "BTreeMap<String, Scalar>")]
        query: BTreeMap<String, Spanned<Scalar>>,
        /// Request headers: templates (default: `Accept: application/json`).
        #[serde(default)]
        #[schemars(with = "BTreeMap<String, Scalar>")]
        headers: BTreeMap<String, Spanned<Scalar>>,
        /// JSON body template; values are JSON-escaped (default none).
        #[schemars(with = "Option<String>")]
        body: Option<Spanned<String>>,
        /// jq on a page: the array of records in it (default `.`).
        #[schemars(with = "Option<String>")]
        records: Option<Spanned<String>>,
        /// Leave out a query parameter whose value renders empty, e.g. `pageToken = "{{cursor}}"` on the first page (default false: sent as `pageToken=`).
        omit_empty_query: Option<bool>,
        /// The listing request only reads, so a POST (e.g. a search or query endpoint) is retried like a GET (default false).
        retry_post: Option<bool>,
    }
}

impl RawSource {
    pub(super) fn request(&self) -> RawRequest<'_> {
        RawRequest {
            method: self.method.as_ref(),
            path: self.path.as_ref(),
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_ref(),
            omit_empty_query: self.omit_empty_query,
            retry_post: self.retry_post,
        }
    }
}

/// `scim`, `talkdesk` (SCIM with Talkdesk's URLs, token request and limits
/// filled in) or `file` (a local JSON or CSV file).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "SinkKind")]
pub(super) enum RawSinkKind {
    Scim,
    Talkdesk,
    File,
}

impl RawSinkKind {
    /// The name as written in the file.
    pub(super) fn name(self) -> &'static str {
        match self {
            RawSinkKind::Scim => "scim",
            RawSinkKind::Talkdesk => "talkdesk",
            RawSinkKind::File => "file",
        }
    }
}

endpoint_table! {
    /// The agent directory that receives external IDs: a SCIM endpoint, Talkdesk, or a file.
    #[schemars(rename = "Sink")]
    struct RawSink {
        /// `scim`, `talkdesk` (SCIM with Talkdesk's URLs, token request and limits) or `file`.
        #[schemars(with = "RawSinkKind")]
        kind: Spanned<RawSinkKind>,
        /// `kind = "file"`: the `.json` (array of objects) or `.csv` (header row) file, relative to the config.
        #[schemars(with = "Option<String>")]
        path: Option<Spanned<String>>,
        /// SCIM listing page size, 1 to 10000, capped at the directory's maximum (default: the directory's `filter.maxResults`, at most 10000, else 1000).
        #[schemars(with = "Option<usize>", range(min = 1, max = 10_000))]
        page_size: Option<Spanned<usize>>,
        /// Listing pages read at most, 1 to 10000000; a directory that needs more is an error (default 10000).
        #[schemars(with = "Option<u64>", range(min = 1, max = 10_000_000))]
        max_pages: Option<Spanned<u64>>,
        /// How an external ID is written: `auto` (PATCH where the directory has it, else PUT), `put` or `patch` (default `auto`; `put` for talkdesk).
        update: Option<UpdateMode>,
        /// Where an agent's email is read: `userName` or `emails` (the primary, else type "work", else the first) (default `userName`).
        email_attribute: Option<EmailAttribute>,
        /// `kind = "talkdesk"`: the account name, as in https://ACCOUNT.mytalkdesk.com.
        #[schemars(with = "Option<String>")]
        account: Option<Spanned<String>>,
        /// `kind = "talkdesk"`: where the account lives, `us`, `eu` or `ca` (default `us`).
        #[schemars(with = "Option<TalkdeskRegion>")]
        region: Option<Spanned<TalkdeskRegion>>,
        /// `kind = "talkdesk"`: the STS token URL, when not the account's (default: from account and region).
        #[schemars(with = "Option<String>")]
        token_url: Option<Spanned<String>>,
    }
}

endpoint_table! {
    /// A request for one agent, sent on the source's `base_url` and auth unless set here.
    #[schemars(rename = "Action")]
    struct RawAction {
        /// HTTP method (default `POST`).
        #[schemars(with = "Option<String>")]
        method: Option<Spanned<String>>,
        /// Template appended to `base_url`: `{{external_id}}`, `{{email}}`, `{{agent_id}}`, `{{event_id}}` (`agentsync listen`, or an event line's "id"), `{{var.K}}`, `{{env.NAME}}`.
        #[schemars(with = "String")]
        path: Spanned<String>,
        /// Query parameters: templates, URL-encoded (default none).
        #[serde(default)]
        #[schemars(with = "BTreeMap<String, Scalar>")]
        query: BTreeMap<String, Spanned<Scalar>>,
        /// Request headers: templates (default none).
        #[serde(default)]
        #[schemars(with = "BTreeMap<String, Scalar>")]
        headers: BTreeMap<String, Spanned<Scalar>>,
        /// JSON body template; values are JSON-escaped (default none).
        #[schemars(with = "Option<String>")]
        body: Option<Spanned<String>>,
        /// Leave out a query parameter whose value renders empty (default false).
        omit_empty_query: Option<bool>,
    }
}

impl RawAction {
    pub(super) fn request(&self) -> RawRequest<'_> {
        RawRequest {
            method: self.method.as_ref(),
            path: Some(&self.path),
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_ref(),
            omit_empty_query: self.omit_empty_query,
            retry_post: None,
        }
    }
}

/// Credentials, from the environment (never the file), sent only to the endpoint's origin.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[schemars(rename = "Auth")]
// Read once per endpoint from the file: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum RawAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The environment variable holding the token.
        token_env: String,
    },
    /// HTTP Basic authentication.
    Basic {
        /// The environment variable holding the user name.
        username_env: String,
        /// The environment variable holding the password (default none: `user:` is sent, for APIs that take a key as the user name).
        password_env: Option<String>,
    },
    /// One header holding a secret, e.g. `X-Api-Key`.
    Header {
        /// The header's name.
        name: String,
        /// The environment variable holding the header's value.
        value_env: String,
    },
    /// An OAuth2 token: client credentials, or a JWT bearer assertion (RFC 7523).
    Oauth2 {
        /// `client_credentials` or `jwt_bearer` (default `client_credentials`).
        grant: Option<Grant>,
        /// The token endpoint (required, but for `jwt_bearer` with `service_account_file`, whose `token_uri` is the default).
        token_url: Option<String>,
        /// client_credentials: the environment variable holding the client ID.
        client_id_env: Option<String>,
        /// client_credentials: the environment variable holding the client secret.
        client_secret_env: Option<String>,
        /// The scope asked for; jwt_bearer with `service_account_file`: put into the assertion, as Google asks (default none).
        scope: Option<String>,
        /// client_credentials: `basic` sends the client credentials as HTTP Basic, `body` in the form body (default `basic`).
        client_auth: Option<ClientAuth>,
        /// The word before the token in `Authorization`; "" sends the token alone (default `Bearer`).
        token_prefix: Option<String>,
        /// Extra form fields of the token request, e.g. `{ token_type = "opaque" }` (default none).
        #[serde(default)]
        token_params: BTreeMap<String, String>,
        /// jwt_bearer: a Google service-account key (JSON with `client_email`, `private_key`, `token_uri`), relative to the config file; keep it readable by agentsync's user only.
        service_account_file: Option<String>,
        /// jwt_bearer: the private key that signs the assertion (PEM: RSA for RS256, EC P-256 in PKCS#8 for ES256), relative to the config file; with `issuer` and `audience`.
        private_key_file: Option<String>,
        /// jwt_bearer: the assertion's `iss`, the client (default with `service_account_file`: its `client_email`).
        issuer: Option<String>,
        /// jwt_bearer: the assertion's `sub`, the user to act as, e.g. for Google's domain-wide delegation (default none).
        subject: Option<String>,
        /// jwt_bearer: the assertion's `aud` (default with `service_account_file`: the token URL).
        audience: Option<String>,
    },
}

/// How an OAuth2 token is asked for.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Grant {
    /// Client ID and secret (RFC 6749 §4.4).
    ClientCredentials,
    /// A signed JWT assertion (RFC 7523).
    JwtBearer,
}

/// Where a Talkdesk account lives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum TalkdeskRegion {
    Us,
    Eu,
    Ca,
}

/// How OAuth2 client credentials are sent: `basic` (HTTP Basic) or `body` (form fields).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClientAuth {
    Basic,
    Body,
}

/// The pagination strategy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "PageKind")]
pub(super) enum RawPageKind {
    None,
    Page,
    Offset,
    Cursor,
    NextUrl,
    LinkHeader,
}

impl RawPageKind {
    /// The name as written in the file.
    pub(super) fn name(self) -> &'static str {
        match self {
            RawPageKind::None => "none",
            RawPageKind::Page => "page",
            RawPageKind::Offset => "offset",
            RawPageKind::Cursor => "cursor",
            RawPageKind::NextUrl => "next_url",
            RawPageKind::LinkHeader => "link_header",
        }
    }
}

/// How the source is read page by page, and when it stops.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pagination")]
pub(super) struct RawPagination {
    /// `none`, `page`, `offset`, `cursor`, `next_url` or `link_header`.
    #[schemars(with = "RawPageKind")]
    pub kind: Spanned<RawPageKind>,
    /// The first page number (page, default 1) or offset (offset, default 0), 0 to 10^12.
    #[schemars(with = "Option<u64>", range(max = 1_000_000_000_000u64))]
    pub start: Option<Spanned<u64>>,
    /// `kind = "offset"`: the page size, 1 to 1000000; fills `{{limit}}` and steps the offset (default none).
    #[schemars(with = "Option<u64>", range(min = 1, max = 1_000_000))]
    pub limit: Option<Spanned<u64>>,
    /// jq on the page: the total number of records; stop when that many were read (default none).
    #[schemars(with = "Option<String>")]
    pub total: Option<Spanned<String>>,
    /// jq on the page: the records on this page (default: the length of `records`).
    #[schemars(with = "Option<String>")]
    pub count: Option<Spanned<String>>,
    /// jq on the page: `false` stops (default none).
    #[schemars(with = "Option<String>")]
    pub has_more: Option<Spanned<String>>,
    /// jq on the page: the next cursor; null or "" stops (required for `kind = "cursor"`).
    #[schemars(with = "Option<String>")]
    pub cursor: Option<Spanned<String>>,
    /// jq on the page: the next page's URL, absolute or relative; null stops (required for `kind = "next_url"`).
    #[schemars(with = "Option<String>")]
    pub next_url: Option<Spanned<String>>,
    /// `page`/`offset`: an empty page stops (default true). `cursor`, `next_url`,
    /// `link_header`: an empty page that still names a next page is followed;
    /// they stop only when there is no next.
    pub stop_on_empty: Option<bool>,
    /// Pages read at most, 1 to 10000000; reaching it with pages left is an error, never a silent cut (default 10000).
    #[schemars(with = "Option<u64>", range(min = 1, max = 10_000_000))]
    pub max_pages: Option<Spanned<u64>>,
    /// A next URL on another origin: an error (false) or followed without credentials (true) (default false).
    pub follow_other_origins: Option<bool>,
}

/// The jq run once per record; each output must be `{id, email}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mapping")]
pub(super) struct RawMapping {
    /// jq run once per record, giving `{id, email}`; zero outputs drop the record (default `{id: .id, email: .email}`).
    #[schemars(with = "Option<String>")]
    pub jq: Option<Spanned<String>>,
    /// Seconds the config's jq may take on one page, 1 to 3600; over it the run stops with exit 1 (default 5).
    #[schemars(with = "Option<u64>", range(min = 1, max = 3600))]
    pub timeout_secs: Option<Spanned<u64>>,
}

/// The safety limits of a run, and where its state goes.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sync")]
pub(super) struct RawSync {
    /// Clear the external ID of agents whose email is not in the source (default false).
    pub unlink_missing: Option<bool>,
    /// Refuse (exit 4) when link + update + unlink exceed it, 0 to 1000000000 (default 500).
    #[schemars(with = "Option<u64>", range(max = 1_000_000_000))]
    pub max_changes: Option<Spanned<u64>>,
    /// Refuse when unlinks exceed this percentage of the linked agents (default 20).
    #[schemars(with = "Option<f64>")]
    pub max_unlink_percent: Option<Spanned<f64>>,
    /// Fewer users from the source is an error, exit 1; `--force` does not pass it; 0 to 1000000000 (default 1).
    #[schemars(with = "Option<u64>", range(max = 1_000_000_000))]
    pub min_users: Option<Spanned<u64>>,
    /// Refuse (exit 4) when the mapping skipped more than this percentage of the records (default 10).
    #[schemars(with = "Option<f64>")]
    pub max_skipped_percent: Option<Spanned<f64>>,
    /// Refuse (exit 4) when the source has fewer users than the last successful run by more than this percentage (default 50).
    #[schemars(with = "Option<f64>")]
    pub max_source_drop_percent: Option<Spanned<f64>>,
    /// The write-ahead journal, relative to the config (default: in the state directory); neither the config nor the file sink's path.
    #[schemars(with = "Option<String>")]
    pub journal: Option<Spanned<String>>,
    /// A Prometheus text-format file written after every run that is not a dry run (default none); neither the config, the file sink's path, the journal nor the lock.
    #[schemars(with = "Option<String>")]
    pub metrics_file: Option<Spanned<String>>,
    /// Health-check URL: `/start` before a run, the URL on success, `/fail` on failure (default none).
    #[schemars(with = "Option<String>")]
    pub ping_url: Option<Spanned<String>>,
    /// Agents whose external ID someone else changed since our last write: `warn` writes as planned, `skip` leaves them, `refuse` refuses a run that would overwrite one like a safety limit (exit 4; `--force` writes) (default `warn`).
    pub on_contested: Option<OnContested>,
}
