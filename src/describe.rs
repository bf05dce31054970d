//! `agentsync check`: what a validated job will do, without sending anything,
//! in the config's own words (`update = "auto"`, not a Rust name).

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
    /// How pages are mapped: `direct` (the two fields read straight from the
    /// page, for plain projections), else `jq` (record by record).
    pub mapping_path: &'static str,
    pub sink: Option<SinkDescription>,
    pub sync: SyncDescription,
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenDescription>,
}

/// `[listen]`: where events come in, how they are proved, where they go.
#[derive(Debug, Serialize)]
pub(crate) struct ListenDescription {
    pub addr: String,
    pub path: String,
    pub auth: &'static str,
    pub id: String,
    pub email: String,
    /// Each route: `when` (or `always`), the action and its vars.
    pub routes: Vec<String>,
    pub queue: String,
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
    /// Where OAuth2 tokens are asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PaginationDescription {
    pub kind: &'static str,
    pub stops: Vec<String>,
    pub max_pages: u64,
    pub concurrency: usize,
}

/// `[sink]`, each value spelled as in the file.
#[derive(Debug, Serialize)]
pub(crate) struct SinkDescription {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_attribute: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where OAuth2 tokens are asked for (the Talkdesk preset's STS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SyncDescription {
    pub unlink_missing: bool,
    pub max_changes: u64,
    pub max_unlink_percent: f64,
    pub min_users: u64,
    pub max_skipped_percent: f64,
    pub max_source_drop_percent: f64,
    pub on_contested: &'static str,
    pub journal: String,
    pub metrics_file: Option<String>,
    /// The host of `ping_url` alone: its path is a check's secret-ish UUID.
    pub ping_host: Option<String>,
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
    if pg.stop_on_empty
        && matches!(
            pg.kind,
            crate::paginate::Kind::Page { .. } | crate::paginate::Kind::Offset { .. }
        )
    {
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
            token_url: token_url(&src.endpoint),
        },
        pagination: PaginationDescription {
            kind: pg.kind.name(),
            stops,
            max_pages: pg.max_pages,
            concurrency: src.endpoint.concurrency,
        },
        mapping: job.mapping.source().to_owned(),
        mapping_path: match crate::source::direct_reader(job) {
            Some(_) => "direct",
            None => "jq",
        },
        sink: job
            .sink
            .as_ref()
            .map(|s| sink(s, job.sink_kind.unwrap_or("scim"))),
        sync: SyncDescription {
            unlink_missing: job.sync.unlink_missing,
            max_changes: job.sync.max_changes,
            max_unlink_percent: job.sync.max_unlink_percent,
            min_users: job.sync.min_users,
            max_skipped_percent: job.sync.max_skipped_percent,
            max_source_drop_percent: job.sync.max_source_drop_percent,
            on_contested: job.sync.on_contested.name(),
            journal: job.sync.journal.as_ref().map_or_else(
                || "(no state directory: set AGENTSYNC_STATE_DIR)".to_owned(),
                |j| j.display().to_string(),
            ),
            metrics_file: job
                .sync
                .metrics_file
                .as_ref()
                .map(|m| m.display().to_string()),
            ping_host: job
                .sync
                .ping_url
                .as_ref()
                .map(|u| u.host_str().unwrap_or("?").to_owned()),
        },
        actions: job.actions.keys().cloned().collect(),
        listen: job.listen.as_ref().map(|l| ListenDescription {
            addr: l.addr.clone(),
            path: l.path.clone(),
            auth: l.auth.name(),
            id: l.id.source().to_owned(),
            email: l.email.source().to_owned(),
            routes: l
                .routes
                .iter()
                .map(|r| {
                    let vars: Vec<_> = r.vars.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
                    format!(
                        "{} -> {}{}",
                        r.when.as_ref().map_or("always", |w| w.source()),
                        r.action,
                        if vars.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", vars.join(", "))
                        }
                    )
                })
                .collect(),
            queue: l.queue.as_ref().map_or_else(
                || "(no state directory: set AGENTSYNC_STATE_DIR)".to_owned(),
                |q| q.display().to_string(),
            ),
        }),
    }
}

fn sink(spec: &SinkSpec, kind: &'static str) -> SinkDescription {
    match spec {
        SinkSpec::Scim {
            endpoint,
            update,
            email_attribute,
            page_size,
            max_pages,
            ..
        } => SinkDescription {
            kind,
            base_url: Some(display_url(&endpoint.base_url)),
            update: Some(update.name()),
            email_attribute: Some(email_attribute.name()),
            page_size: *page_size,
            max_pages: Some(*max_pages),
            path: None,
            token_url: token_url(endpoint),
        },
        SinkSpec::File { path } => SinkDescription {
            kind,
            base_url: None,
            update: None,
            email_attribute: None,
            page_size: None,
            max_pages: None,
            path: Some(path.display().to_string()),
            token_url: None,
        },
    }
}

/// The token endpoint of an endpoint's OAuth2 credentials, as shown.
fn token_url(endpoint: &crate::config::Endpoint) -> Option<String> {
    match &endpoint.auth {
        Some(crate::http::Auth::OAuth2(oauth)) => Some(display_url(&oauth.token_url)),
        _ => None,
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
        if let Some(t) = &d.source.token_url {
            writeln!(out, "  tokens   POST {t}")?;
        }
        writeln!(out, "  records  {}", d.source.records)?;
        writeln!(
            out,
            "pages      kind = {:?} (max_pages = {}, concurrency = {})",
            d.pagination.kind, d.pagination.max_pages, d.pagination.concurrency
        )?;
        for s in &d.pagination.stops {
            writeln!(out, "  stop on  {s}")?;
        }
        writeln!(out, "mapping    {}", d.mapping)?;
        let read = match d.mapping_path {
            "direct" => "straight from each page (a plain projection: no jq per record)",
            _ => "by jq, record by record",
        };
        writeln!(out, "  read     {read}")?;
        match &d.sink {
            Some(s) => {
                let place = s.base_url.as_deref().or(s.path.as_deref()).unwrap_or("");
                writeln!(out, "sink       kind = {:?} {place}", s.kind)?;
                if let Some(t) = &s.token_url {
                    writeln!(out, "  tokens   POST {t}")?;
                }
                if let (Some(update), Some(attribute), Some(pages)) =
                    (s.update, s.email_attribute, s.max_pages)
                {
                    let size = s
                        .page_size
                        .map_or_else(|| "the directory's largest".to_owned(), |n| n.to_string());
                    writeln!(
                        out,
                        "  writes   update = {update:?}, email_attribute = {attribute:?}, page_size = {size}, max_pages = {pages}"
                    )?;
                }
            }
            None => writeln!(out, "sink       none (fetch only)")?,
        }
        let y = &d.sync;
        writeln!(
            out,
            "sync       unlink_missing = {}, max_changes = {}, max_unlink_percent = {}",
            y.unlink_missing, y.max_changes, y.max_unlink_percent
        )?;
        writeln!(
            out,
            "  source   min_users = {}, max_skipped_percent = {}, max_source_drop_percent = {}",
            y.min_users, y.max_skipped_percent, y.max_source_drop_percent
        )?;
        writeln!(out, "  agents   on_contested = {:?}", y.on_contested)?;
        writeln!(out, "journal    {}", y.journal)?;
        if let Some(m) = &y.metrics_file {
            writeln!(out, "metrics    {m}")?;
        }
        if let Some(h) = &y.ping_host {
            writeln!(out, "ping       {h} (the path is not shown)")?;
        }
        if !d.actions.is_empty() {
            writeln!(out, "actions    {}", d.actions.join(", "))?;
        }
        if let Some(l) = &d.listen {
            writeln!(
                out,
                "listen     POST http://{}{} (auth = {:?})",
                l.addr, l.path, l.auth
            )?;
            writeln!(out, "  event    id = {}, email = {}", l.id, l.email)?;
            for r in &l.routes {
                writeln!(out, "  route    {r}")?;
            }
            writeln!(out, "  queue    {}", l.queue)?;
        }
        Ok(())
    }
}
