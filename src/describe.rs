//! `agentsync check`: what a validated job will do, without sending anything.

use std::io::{self, Write};

use serde::Serialize;

use crate::config::{Job, SinkSpec};
use crate::http::display_url;
use crate::output::Render;
use crate::request::join_url;

#[derive(Debug, Serialize)]
pub(crate) struct Description {
    pub config: String,
    pub name: String,
    pub source: SourceDescription,
    pub pagination: PaginationDescription,
    pub mapping: String,
    /// How pages are mapped: `direct (serde)` for plain projections, else `jq`.
    pub mapping_path: &'static str,
    pub sink: Option<String>,
    pub sync: SyncDescription,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SourceDescription {
    pub method: String,
    /// The URL with its templates unrendered.
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<String>,
    pub body: Option<String>,
    pub records: String,
    pub auth: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PaginationDescription {
    pub kind: &'static str,
    pub stops: Vec<String>,
    pub max_pages: u64,
    pub concurrency: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct SyncDescription {
    pub unlink_missing: bool,
    pub max_changes: u64,
    pub max_unlink_percent: f64,
    pub journal: String,
}

pub(crate) fn describe(job: &Job) -> Description {
    let src = &job.source;
    let req = &src.request;
    let pg = &job.pagination;
    let mut stops = Vec::new();
    if let Some(t) = &pg.total {
        stops.push(format!("records read reach total `{}`", t.source()));
    }
    if let Some(h) = &pg.has_more {
        stops.push(format!("`{}` is false", h.source()));
    }
    if let Some(c) = &pg.cursor {
        stops.push(format!("cursor `{}` is null or \"\"", c.source()));
    }
    if let Some(n) = &pg.next_url {
        stops.push(format!("next URL `{}` is null", n.source()));
    }
    if pg.kind == crate::paginate::Kind::LinkHeader {
        stops.push("no Link rel=\"next\"".into());
    }
    if pg.stop_on_empty {
        stops.push("an empty page".into());
    }
    Description {
        config: job.path.display().to_string(),
        name: job.name.clone(),
        source: SourceDescription {
            method: req.method.clone(),
            url: display_url(&join_url(&src.endpoint.base_url, req.path.source())),
            query: req
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.source().to_owned()))
                .collect(),
            headers: req.headers.iter().map(|(k, _)| k.clone()).collect(),
            body: req.body.as_ref().map(|b| b.source().to_owned()),
            records: src.records.source().to_owned(),
            auth: src.endpoint.auth.as_ref().map(|a| match a {
                crate::http::Auth::Bearer(_) => "bearer",
                crate::http::Auth::Basic { .. } => "basic",
                crate::http::Auth::Header { .. } => "header",
                crate::http::Auth::OAuth2(_) => "oauth2",
            }),
        },
        pagination: PaginationDescription {
            kind: pg.kind.name(),
            stops,
            max_pages: pg.max_pages,
            concurrency: src.endpoint.concurrency,
        },
        mapping: job.mapping.source().to_owned(),
        mapping_path: match crate::source::direct_reader(job) {
            Some(_) => "direct (serde)",
            None => "jq",
        },
        sink: job.sink.as_ref().map(|s| match s {
            SinkSpec::Scim {
                endpoint,
                update,
                email_attribute,
                page_size,
                ..
            } => format!(
                "SCIM {} (update {update:?}, email from {email_attribute:?}, {page_size} per page)",
                display_url(&endpoint.base_url)
            ),
            SinkSpec::File { path } => format!("file {}", path.display()),
        }),
        sync: SyncDescription {
            unlink_missing: job.sync.unlink_missing,
            max_changes: job.sync.max_changes,
            max_unlink_percent: job.sync.max_unlink_percent,
            journal: job.sync.journal.as_ref().map_or_else(
                || "(no state directory: set AGENTSYNC_STATE_DIR)".to_owned(),
                |j| j.display().to_string(),
            ),
        },
        actions: job.actions.keys().cloned().collect(),
    }
}

impl Render for Description {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let d = self;
        writeln!(out, "config     {} (valid)", d.config)?;
        writeln!(out, "name       {}", d.name)?;
        writeln!(out, "source     {} {}", d.source.method, d.source.url)?;
        for (k, v) in &d.source.query {
            writeln!(out, "  query    {k} = {v}")?;
        }
        if !d.source.headers.is_empty() {
            writeln!(out, "  headers  {}", d.source.headers.join(", "))?;
        }
        if let Some(b) = &d.source.body {
            writeln!(out, "  body     {b}")?;
        }
        if let Some(a) = d.source.auth {
            writeln!(out, "  auth     {a}")?;
        }
        writeln!(out, "  records  {}", d.source.records)?;
        writeln!(
            out,
            "pages      {} (max {}, concurrency {})",
            d.pagination.kind, d.pagination.max_pages, d.pagination.concurrency
        )?;
        for s in &d.pagination.stops {
            writeln!(out, "  stop on  {s}")?;
        }
        writeln!(out, "mapping    {}", d.mapping)?;
        writeln!(out, "  path     {}", d.mapping_path)?;
        match &d.sink {
            Some(s) => writeln!(out, "sink       {s}")?,
            None => writeln!(out, "sink       none (fetch only)")?,
        }
        writeln!(
            out,
            "sync       unlink_missing = {}, max_changes = {}, max_unlink_percent = {}",
            d.sync.unlink_missing, d.sync.max_changes, d.sync.max_unlink_percent
        )?;
        writeln!(out, "journal    {}", d.sync.journal)?;
        if !d.actions.is_empty() {
            writeln!(out, "actions    {}", d.actions.join(", "))?;
        }
        Ok(())
    }
}
