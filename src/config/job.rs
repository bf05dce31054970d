//! Stage two: the validated [`Job`], built part by part from the raw file, and
//! the small settings types shared with the code that runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::ctx::{ConfigError, Ctx, Errors};
use super::raw::RawConfig;
use super::{ActionSpec, ListenSpec, PaginationSpec, SinkSpec, SourceSpec, SyncSpec};
use crate::mapping::Jq;
use crate::paginate;

/// How an external ID is written: `auto`, `put` or `patch`.
// Plain comments on the variants: a `///` there would turn the schema's string
// enum into a list of alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UpdateMode {
    // PATCH where the directory's `/ServiceProviderConfig` says it has it, else PUT.
    Auto,
    // Send the whole resource back with `externalId` changed (Talkdesk documents PUT).
    Put,
    // Send an RFC 7644 PatchOp on `externalId` alone.
    Patch,
}

impl UpdateMode {
    /// The name as written in the file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            UpdateMode::Auto => "auto",
            UpdateMode::Put => "put",
            UpdateMode::Patch => "patch",
        }
    }
}

/// Where an agent's email is read from: `userName` or `emails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub(crate) enum EmailAttribute {
    #[serde(rename = "userName")]
    UserName,
    // The primary entry of `emails`, else the one of type "work", else the first.
    #[serde(rename = "emails")]
    Emails,
}

impl EmailAttribute {
    /// The name as written in the file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails",
        }
    }
}

/// Everything a run needs, checked.
#[derive(Debug)]
pub(crate) struct Job {
    pub name: String,
    pub path: PathBuf,
    pub source: SourceSpec,
    pub pagination: PaginationSpec,
    pub mapping: Jq,
    /// `[mapping] timeout_secs`: the time the config's jq may take on one page.
    pub jq_timeout: std::time::Duration,
    pub sink: Option<SinkSpec>,
    /// `[sink] kind` as written (`scim`, `talkdesk`, `file`), for `check`.
    pub sink_kind: Option<&'static str>,
    pub sync: SyncSpec,
    pub actions: BTreeMap<String, ActionSpec>,
    /// `[listen]`, for `agentsync listen`.
    pub listen: Option<ListenSpec>,
}

impl Job {
    /// The roots the job's `ca_file`s add, source's and sink's: what a
    /// request of the job's own (a ping) trusts besides the system's.
    pub(crate) fn extra_roots(&self) -> Vec<ureq::tls::Certificate<'static>> {
        let mut roots = self.source.endpoint.settings.extra_roots.clone();
        if let Some(SinkSpec::Scim { endpoint, .. }) = &self.sink {
            roots.extend(endpoint.settings.extra_roots.iter().cloned());
        }
        roots
    }

    /// The job of the config file at `path`.
    pub(super) fn from_raw(raw: &RawConfig, path: &Path, ctx: &Ctx) -> Result<Self, ConfigError> {
        // Each part is checked even when one before it failed, so that `check`
        // reports every error at once; only what depends on a failed part is
        // left out.
        let mut errors = Errors::default();
        let source = errors.keep(SourceSpec::from_raw(&raw.source, ctx));
        let pagination = source.as_ref().and_then(|source| {
            errors.keep(PaginationSpec::from_raw(
                raw.pagination.as_ref(),
                &source.request,
                &raw.source,
                ctx,
            ))
        });
        let mapping = errors.keep(match raw.mapping.as_ref().and_then(|m| m.jq.as_ref()) {
            Some(jq) => ctx.jq("[mapping] jq", jq),
            None => Ok(Jq::compile("{id: .id, email: .email}").expect("default mapping compiles")),
        });
        let jq_timeout = errors.keep(
            super::endpoint::bounded(
                "[mapping] timeout_secs",
                raw.mapping.as_ref().and_then(|m| m.timeout_secs.as_ref()),
                1..=3600,
                ctx,
            )
            .map(|t| {
                t.map_or(
                    crate::jq_budget::DEFAULT_TIMEOUT,
                    std::time::Duration::from_secs,
                )
            }),
        );
        let sink = errors.keep(
            raw.sink
                .as_ref()
                .map(|s| SinkSpec::from_raw(s, path, ctx))
                .transpose(),
        );
        let sink_file = match &sink {
            Some(Some(SinkSpec::File { path })) => Some(path.as_path()),
            _ => None,
        };
        let sync = errors.keep(SyncSpec::from_raw(&raw.sync, path, sink_file, ctx));
        // The directory's answer is kept in the state directory, named after
        // the job as its journal and lock are.
        let mut sink = sink;
        if let (
            Some(Some(SinkSpec::Scim {
                directory_cache, ..
            })),
            Some(sync),
        ) = (&mut sink, &sync)
        {
            *directory_cache = crate::state::state_dir(ctx.env())
                .map(|d| d.join(format!("{}.directory.json", sync.key.name)));
        }
        let mut actions = BTreeMap::new();
        for (name, a) in &raw.actions {
            if let Some(action) = errors.keep(ActionSpec::from_raw(name, a, ctx)) {
                actions.insert(name.clone(), action);
            }
        }
        // Routes are checked against the actions that were valid; an invalid
        // action has its own error already.
        let listen = errors.keep(
            raw.listen
                .as_ref()
                .map(|l| ListenSpec::from_raw(l, &actions, path, ctx))
                .transpose(),
        );
        let (
            Some(mut source),
            Some(pagination),
            Some(mapping),
            Some(jq_timeout),
            Some(sink),
            Some(sync),
            Some(listen),
        ) = (source, pagination, mapping, jq_timeout, sink, sync, listen)
        else {
            return Err(errors.into_error(ctx));
        };
        errors.finish()?;
        if pagination.kind == paginate::Kind::None && source.endpoint.concurrency > 1 {
            source.endpoint.concurrency = 1;
        }
        source.endpoint.follow_other_origins = pagination.follow_other_origins;
        let name = raw.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| "agentsync".into(), |s| s.to_string_lossy().into_owned())
        });
        Ok(Job {
            name,
            path: path.to_owned(),
            source,
            pagination,
            mapping,
            jq_timeout,
            sink,
            sink_kind: raw.sink.as_ref().map(|s| s.get_ref().kind.get_ref().name()),
            sync,
            actions,
            listen,
        })
    }
}
