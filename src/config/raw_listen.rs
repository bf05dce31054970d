//! Stage one of `[listen]` and its `[[listen.on]]` routes, as written: part
//! of the raw config of [`super::raw`], in a file of its own.

// The `///` docs here are the JSON Schema's descriptions (see `raw.rs`).
#![allow(clippy::doc_markdown)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// How a sender proves an event is its own: `standard-webhooks` (HMAC-SHA256),
/// `ecdsa-p256` (a signature of the raw body) or `header` (a shared secret).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "ListenAuth")]
pub(super) enum RawListenAuth {
    StandardWebhooks,
    EcdsaP256,
    Header,
}

/// `agentsync listen`: where agent events (login/logout webhooks) are
/// received, how they are authenticated, and which action each one runs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listen")]
pub(super) struct RawListen {
    /// The address to listen on, `HOST:PORT`; `--addr` overrides it (default `127.0.0.1:8788`).
    #[schemars(with = "Option<String>")]
    pub addr: Option<Spanned<String>>,
    /// The path events are POSTed to, one JSON object per request (default `/events`).
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// `standard-webhooks` (HMAC-SHA256 headers `webhook-id`, `webhook-timestamp`, `webhook-signature`), `ecdsa-p256` (a signature of the raw body) or `header` (a shared secret in a header).
    #[schemars(with = "RawListenAuth")]
    pub auth: Spanned<RawListenAuth>,
    /// `standard-webhooks`: the environment variable holding the secret, `whsec_<base64>` or raw; `header`: the one holding the expected value.
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    /// `auth = "header"`: the request header that carries the secret.
    #[schemars(with = "Option<String>")]
    pub header: Option<Spanned<String>>,
    /// `auth = "ecdsa-p256"`: the sender's PEM public key (P-256), relative to the config file.
    #[schemars(with = "Option<String>")]
    pub public_key_file: Option<Spanned<String>>,
    /// `auth = "ecdsa-p256"`: the header holding the base64 DER signature of the raw body (SHA-256) (default `X-Hub-Ecdsa-Signature`).
    #[schemars(with = "Option<String>")]
    pub signature_header: Option<Spanned<String>>,
    /// `standard-webhooks`: a `webhook-timestamp` further than this many seconds from now, either way, is refused; 1 to 86400 (default 300).
    #[schemars(with = "Option<u64>", range(min = 1, max = 86400))]
    pub tolerance_secs: Option<Spanned<u64>>,
    /// jq on the event: its unique ID; an event with an ID already accepted is acknowledged and not run again; `{{event_id}}` in the action (default `.id`).
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    /// jq on the event: the agent's email (default `.data.user_email`).
    #[schemars(with = "Option<String>")]
    pub email: Option<Spanned<String>>,
    /// Hours an event's action is retried (connect errors, timeouts, 429, 5xx) before it is reported as failed (default 24).
    #[schemars(with = "Option<f64>")]
    pub max_delivery_hours: Option<Spanned<f64>>,
    /// Seconds between two listings of the agent directory held in memory, 1 to 86400; an unknown email also refreshes it, at most every 30 seconds (default 300).
    #[schemars(with = "Option<u64>", range(min = 1, max = 86400))]
    pub refresh_secs: Option<Spanned<u64>>,
    /// Actions sent at once, each agent's in order (default 32).
    #[schemars(with = "Option<usize>")]
    pub workers: Option<Spanned<usize>>,
    /// The routes, tried in order: the first whose `when` is true runs its action; an event no route takes is acknowledged and dropped.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoute>")]
    pub on: Vec<Spanned<RawRoute>>,
}

/// One route of `[listen]`: which events run which action, with which variables.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ListenRoute")]
pub(super) struct RawRoute {
    /// jq on the event, true or false: does this route take it? (default `true`).
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// The `[actions.NAME]` run for the event.
    #[schemars(with = "String")]
    pub action: Spanned<String>,
    /// The action's `{{var.K}}` values (default none).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}
