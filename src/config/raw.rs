//! Stage one: the config file as written. Every table rejects unknown keys, and
//! the values that can be wrong keep their place in the file (`Spanned`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::job::{EmailAttribute, UpdateMode};
use super::sync::OnContested;

/// A template value: TOML strings, integers and booleans are all accepted, so
/// `query = { per_page = 100 }` works as well as `"100"`.
#[derive(Debug, Deserialize)]
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
}

/// The keys of one endpoint, borrowed from the table that declared them.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawEndpoint<'a> {
    pub base_url: Option<&'a Spanned<String>>,
    pub timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub max_retry_wait_secs: Option<u64>,
    pub rate_limit: Option<&'a Spanned<f64>>,
    pub concurrency: Option<&'a Spanned<usize>>,
    pub allow_insecure_http: Option<bool>,
    pub auth: Option<&'a Spanned<RawAuth>>,
    pub ca_file: Option<&'a Spanned<String>>,
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
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            pub base_url: Option<Spanned<String>>,
            pub timeout_secs: Option<u64>,
            pub retries: Option<u32>,
            pub max_retry_wait_secs: Option<u64>,
            pub rate_limit: Option<Spanned<f64>>,
            pub concurrency: Option<Spanned<usize>>,
            pub allow_insecure_http: Option<bool>,
            pub auth: Option<Spanned<RawAuth>>,
            /// A PEM bundle of extra trusted roots, relative to the config file.
            pub ca_file: Option<Spanned<String>>,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// The endpoint keys of this table.
            pub(super) fn endpoint(&self) -> RawEndpoint<'_> {
                RawEndpoint {
                    base_url: self.base_url.as_ref(),
                    timeout_secs: self.timeout_secs,
                    retries: self.retries,
                    max_retry_wait_secs: self.max_retry_wait_secs,
                    rate_limit: self.rate_limit.as_ref(),
                    concurrency: self.concurrency.as_ref(),
                    allow_insecure_http: self.allow_insecure_http,
                    auth: self.auth.as_ref(),
                    ca_file: self.ca_file.as_ref(),
                }
            }
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub name: Option<String>,
    pub source: Spanned<RawSource>,
    pub pagination: Option<RawPagination>,
    pub mapping: Option<RawMapping>,
    pub sink: Option<Spanned<RawSink>>,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub actions: BTreeMap<String, Spanned<RawAction>>,
}

endpoint_table! {
    struct RawSource {
        method: Option<Spanned<String>>,
        path: Option<Spanned<String>>,
        #[serde(default)]
        query: BTreeMap<String, Spanned<Scalar>>,
        #[serde(default)]
        headers: BTreeMap<String, Spanned<Scalar>>,
        body: Option<Spanned<String>>,
        records: Option<Spanned<String>>,
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
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSinkKind {
    Scim,
    /// SCIM with Talkdesk's URLs, token request and limits filled in.
    Talkdesk,
    File,
}

endpoint_table! {
    struct RawSink {
        kind: Spanned<RawSinkKind>,
        path: Option<Spanned<String>>,
        page_size: Option<Spanned<usize>>,
        max_pages: Option<Spanned<u64>>,
        update: Option<UpdateMode>,
        email_attribute: Option<EmailAttribute>,
        /// `kind = "talkdesk"`: the account's subdomain and its region.
        account: Option<Spanned<String>>,
        region: Option<Spanned<TalkdeskRegion>>,
        /// `kind = "talkdesk"`: the STS token URL, when not the account's.
        token_url: Option<Spanned<String>>,
    }
}

endpoint_table! {
    struct RawAction {
        method: Option<Spanned<String>>,
        path: Spanned<String>,
        #[serde(default)]
        query: BTreeMap<String, Spanned<Scalar>>,
        #[serde(default)]
        headers: BTreeMap<String, Spanned<Scalar>>,
        body: Option<Spanned<String>>,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawAuth {
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
        /// Put before the token in `Authorization` (default `Bearer`); `""`
        /// sends the token alone.
        token_prefix: Option<String>,
        /// Extra form fields of the token request, e.g. `token_type = "opaque"`.
        #[serde(default)]
        token_params: BTreeMap<String, String>,
    },
}

/// Where a Talkdesk account lives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum TalkdeskRegion {
    Us,
    Eu,
    Ca,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPagination {
    pub kind: Spanned<RawPageKind>,
    pub start: Option<u64>,
    pub limit: Option<Spanned<u64>>,
    pub total: Option<Spanned<String>>,
    pub count: Option<Spanned<String>>,
    pub has_more: Option<Spanned<String>>,
    pub cursor: Option<Spanned<String>>,
    pub next_url: Option<Spanned<String>>,
    pub stop_on_empty: Option<bool>,
    pub max_pages: Option<Spanned<u64>>,
    pub follow_other_origins: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    pub jq: Option<Spanned<String>>,
    pub timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub unlink_missing: Option<bool>,
    pub max_changes: Option<u64>,
    pub max_unlink_percent: Option<Spanned<f64>>,
    pub min_users: Option<u64>,
    pub max_skipped_percent: Option<Spanned<f64>>,
    pub max_source_drop_percent: Option<Spanned<f64>>,
    pub journal: Option<Spanned<String>>,
    pub metrics_file: Option<Spanned<String>>,
    pub ping_url: Option<Spanned<String>>,
    pub on_contested: Option<OnContested>,
}
