//! The source: the "get users" request of the external system, sent page after
//! page as the [`Paginator`] directs, each page mapped to users as it arrives.
//! The source is read completely or the run stops: a page that fails, a total
//! that does not add up or pages that shifted under us are errors.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use jaq_json::Val;
use url::Url;

use crate::config::{Job, RequestSpec, join_url};
use crate::http::{Client, Request, Response, display_url};
use crate::mapping::{self, User, map_record_into};
use crate::paginate::{Kind, Observed, Paginator, Position, Step};
use crate::prefetch::Prefetch;
use crate::progress::Progress;
use crate::template::{Encoding, Values};

/// A record the mapping could not turn into a user.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Skipped {
    pub page: u64,
    pub index: usize,
    pub reason: String,
}

/// The source, read.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub pages: u64,
    pub records: u64,
    pub users: Vec<User>,
    pub skipped: Vec<Skipped>,
    /// Stopped early on purpose (`fetch --pages N`): not a complete snapshot.
    pub sampled: bool,
}

/// The most users room is made for ahead of time.
const MAX_RESERVED_USERS: usize = 1 << 20;

/// Read the source: every page, or the first `sample` pages.
pub(crate) fn fetch(
    job: &Job,
    client: &Client,
    sample: Option<u64>,
    progress: &Progress,
) -> Result<Fetched> {
    let pg = &job.pagination;
    let mut paginator = Paginator::new(pg.kind.clone(), pg.stop_on_empty, pg.max_pages);
    let mut position = paginator.first();
    let mut fetched = Fetched::default();
    // Which page each user came from, to notice a listing that shifted between pages.
    let mut seen: HashMap<u64, (u64, usize)> = HashMap::new();
    let stage = progress.stage("source pages", None);
    let mut request_url = None;
    let workers = job.source.endpoint.concurrency;

    std::thread::scope(|scope| -> Result<()> {
        let mut prefetch: Option<Prefetch<Result<PageOut>>> = None;
        loop {
            let number = paginator.pages() + 1;
            let request = build_request(job, &position, request_url.as_ref())?;
            let url_shown = display_url(&request.url);
            let out = match prefetch.as_mut().and_then(|p| p.take(&request)) {
                Some(out) => out,
                None => read_page(job, &request, client.send(&request), number),
            }?;
            for user in out.users {
                // Keyed by a hash of (id, email), confirmed on a hit: no copy
                // of every user's strings.
                let key = user_key(&user);
                let slot = fetched.users.len();
                if let Some((earlier, at)) = seen.insert(key, (number, slot))
                    && earlier != number
                    && fetched.users[at] == user
                {
                    bail!(
                        "source pages shifted while being read: user {} ({}) appeared on page {earlier} and again on page {number}; nothing was written",
                        user.id,
                        user.email
                    );
                }
                fetched.users.push(user);
            }
            fetched.skipped.extend(out.skipped);
            let observed = out.observed;
            stage.inc(1);
            crate::progress::debug(&format!(
                "source page {number}: {} records ({url_shown})",
                observed.count
            ));

            let step = paginator
                .next(&observed)
                .with_context(|| format!("after source page {number}"))?;
            match step {
                Step::Done => break,
                Step::Next(_) if sample.is_some_and(|n| paginator.pages() >= n) => {
                    fetched.sampled = true;
                    break;
                }
                Step::Next(next) => {
                    if number == 1
                        && workers > 1
                        && let Some(count) = paginator.known_page_count(observed.count)
                    {
                        let last = count
                            .min(job.pagination.max_pages)
                            .min(sample.unwrap_or(u64::MAX));
                        stage.set_len(last);
                        // Room for the users to come, so that the tables do not
                        // grow (and copy) page after page; capped, as `total`
                        // comes from the API.
                        let expected = usize::try_from(last.saturating_mul(observed.count))
                            .unwrap_or(usize::MAX)
                            .min(MAX_RESERVED_USERS);
                        fetched.users.reserve(expected);
                        seen.reserve(expected);
                        let ahead = planned(job, &observed, 2..=last)?;
                        // Pages are read and mapped on the workers, in parallel.
                        let read = move |i: usize, req: &Request, sent| {
                            read_page(job, req, sent, i as u64 + 2)
                        };
                        prefetch = Some(Prefetch::start(scope, client, ahead, workers, read));
                    }
                    request_url = Some(request.url.clone());
                    position = next;
                }
            }
        }
        Ok(())
    })?;
    if !fetched.sampled {
        paginator.verify_complete()?;
    }
    fetched.pages = paginator.pages();
    fetched.records = paginator.records();
    drop(stage);
    progress.log(&format!(
        "source: {} users from {} records in {} page{}{}",
        fetched.users.len(),
        fetched.records,
        fetched.pages,
        if fetched.pages == 1 { "" } else { "s" },
        if fetched.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", fetched.skipped.len())
        }
    ));
    Ok(fetched)
}

/// The requests of pages `numbers` (1-based), for a listing whose pages are all
/// the size of the first (the last may be shorter).
fn planned(
    job: &Job,
    first: &Observed,
    numbers: std::ops::RangeInclusive<u64>,
) -> Result<Vec<Request>> {
    numbers
        .map(|n| {
            let i = n - 1;
            let position = match job.pagination.kind {
                Kind::Page { start } => Position::Numbered {
                    page: start + i,
                    offset: i * first.count,
                },
                Kind::Offset { start, limit } => Position::Numbered {
                    page: n,
                    offset: start + i * limit.unwrap_or(first.count),
                },
                _ => unreachable!("only numbered pages are planned"),
            };
            build_request(job, &position, None)
        })
        .collect()
}

/// One page read and mapped: all the reader needs of it.
struct PageOut {
    observed: Observed,
    users: Vec<User>,
    skipped: Vec<Skipped>,
}

/// Read page `number`: its status, its JSON, its records and page-level values,
/// and the mapping of every record. The page itself is dropped here: memory
/// grows with the users, not with the size of the pages.
fn read_page(job: &Job, request: &Request, sent: Result<Response>, number: u64) -> Result<PageOut> {
    let url_shown = display_url(&request.url);
    let response = sent
        .and_then(|r| r.error_for_status(&request.method, &request.url))
        .with_context(|| format!("source page {number}"))?;
    let page =
        parse_page(&response).with_context(|| format!("source page {number} ({url_shown})"))?;
    let records = select_records(&job.source.records, &page)
        .with_context(|| format!("source page {number} ({url_shown})"))?;
    let observed = observe(job, &page, &response, &request.url, records.len())
        .with_context(|| format!("source page {number} ({url_shown})"))?;
    drop((page, response));
    let mut out = PageOut {
        observed,
        users: Vec::with_capacity(records.len()),
        skipped: Vec::new(),
    };
    for (index, record) in records.into_iter().enumerate() {
        if let Err(reason) = map_record_into(&job.mapping, record, &mut out.users) {
            out.skipped.push(Skipped {
                page: number,
                index,
                reason,
            });
        }
    }
    Ok(out)
}

fn user_key(user: &User) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((&user.id, &user.email))
}

/// The request for one page. `previous` is the URL of the page before, against
/// which a relative next URL is resolved.
fn build_request(job: &Job, position: &Position, previous: Option<&Url>) -> Result<Request> {
    let spec = &job.source.request;
    let limit = job.pagination.limit;
    let values = match position {
        Position::Numbered { page, offset } => Values {
            page: Some(*page),
            offset: Some(*offset),
            limit,
            ..Values::default()
        },
        Position::Cursor(cursor) => Values {
            cursor: cursor.as_deref(),
            limit,
            ..Values::default()
        },
        Position::Url(_) => Values {
            limit,
            ..Values::default()
        },
    };
    let url = match position {
        Position::Url(next) => {
            let base = previous.unwrap_or(&job.source.endpoint.base_url);
            base.join(next)
                .map_err(|e| anyhow!("the next page URL {next:?} is not a valid URL: {e}"))?
        }
        _ => render_url(&job.source.endpoint.base_url, spec, &values)?,
    };
    let mut request = render_request(spec, url, &values)?;
    if matches!(position, Position::Url(_)) {
        // The next URL is complete as given; the configured body was for page one.
        request.body = None;
    }
    Ok(request)
}

/// The URL of a templated request: base URL, rendered path, rendered query.
pub(crate) fn render_url(base: &Url, spec: &RequestSpec, values: &Values) -> Result<Url> {
    let path = spec.path.render(values, Encoding::Path)?;
    let mut url = join_url(base, &path);
    if !spec.query.is_empty() {
        let rendered = spec
            .query
            .iter()
            .map(|(k, t)| Ok((k, t.render(values, Encoding::Raw)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut pairs = url.query_pairs_mut();
        for (k, v) in rendered {
            pairs.append_pair(k, &v);
        }
    }
    Ok(url)
}

/// Headers and body of a templated request, for `url`.
pub(crate) fn render_request(spec: &RequestSpec, url: Url, values: &Values) -> Result<Request> {
    let mut headers = spec
        .headers
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.render(values, Encoding::Raw)?)))
        .collect::<Result<Vec<_>>>()?;
    let body = spec
        .body
        .as_ref()
        .map(|b| b.render(values, Encoding::Json))
        .transpose()?;
    if body.is_some()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        headers.push(("Accept".into(), "application/json".into()));
    }
    Ok(Request {
        method: spec.method.clone(),
        url,
        headers,
        body: body.map(String::into_bytes),
        idempotent: matches!(
            spec.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS"
        ),
    })
}

/// The page body as JSON, or an error that says what came instead.
fn parse_page(response: &Response) -> Result<Val> {
    mapping::parse_json(&response.body).map_err(|e| {
        anyhow!(
            "the response is not JSON (HTTP {}, content-type {}, {} bytes): {e}; it starts with: {}",
            response.status,
            response.content_type(),
            response.body.len(),
            response.body_start()
        )
    })
}

/// The records of a page: `records` must give an array. An object is refused, not
/// taken as one record: `{"users": {...}}` is a page of another shape.
fn select_records(records: &crate::mapping::Jq, page: &Val) -> Result<Vec<Val>> {
    let outputs = records
        .run(page.clone())
        .with_context(|| format!("records `{}`", records.source()))?;
    let mut out = Vec::new();
    for value in outputs {
        match value {
            Val::Arr(items) => out.extend(items.iter().cloned()),
            other => bail!(
                "records `{}` gave {}, not an array of records: the page does not have the expected shape",
                records.source(),
                mapping::kind(&other)
            ),
        }
    }
    Ok(out)
}

/// Evaluate the page-level expressions of the pagination.
fn observe(
    job: &Job,
    page: &Val,
    response: &Response,
    url: &Url,
    records: usize,
) -> Result<Observed> {
    let pg = &job.pagination;
    let count = match &pg.count {
        Some(jq) => mapping::as_count(&jq.run_one(page)?, "count")?.unwrap_or(records as u64),
        None => records as u64,
    };
    let total = match &pg.total {
        Some(jq) => mapping::as_count(&jq.run_one(page)?, "total")?,
        None => None,
    };
    let has_more = match &pg.has_more {
        Some(jq) => mapping::as_bool(&jq.run_one(page)?, "has_more")?,
        None => None,
    };
    let cursor = match &pg.cursor {
        Some(jq) => mapping::as_text(&jq.run_one(page)?, "cursor")?,
        None => None,
    };
    let next = match pg.kind {
        Kind::NextUrl => match &pg.next_url {
            Some(jq) => mapping::as_text(&jq.run_one(page)?, "next_url")?,
            None => None,
        },
        Kind::LinkHeader => crate::paginate::link_next(response.headers_named("link")),
        _ => None,
    };
    let next_url = next
        .map(|n| {
            url.join(&n)
                .map(|u| u.to_string())
                .map_err(|e| anyhow!("the next page URL {n:?} is not a valid URL: {e}"))
        })
        .transpose()?;
    Ok(Observed {
        count,
        total,
        has_more,
        cursor,
        next_url,
    })
}
