//! The source: the "get users" request of the external system, sent page after
//! page as the [`Paginator`] directs, each page mapped to users as it arrives.
//! The source is read completely or the run stops: a page that fails, a total
//! that does not add up or pages that shifted under us are errors.

use anyhow::{Context, Result, anyhow, bail};
use jaq_json::Val;
use url::Url;

use crate::config::Job;
use crate::http::{Client, Request, Response, display_url};
use crate::mapping::direct::Direct;
use crate::mapping::{self, Jq, User, map_record_into};
use crate::pages::{self, Listing, Next, Seen};
use crate::paginate::{Kind, Observed, Paginator, Position, Step};
use crate::progress::Progress;
use crate::request::{render_request, render_url};
use crate::template::Values;

mod view;
pub(crate) use view::{FetchView, write_skipped};

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
    /// How many users were read, kept when `users` is handed to the plan.
    taken: usize,
}

/// The most users room is made for ahead of time.
const MAX_RESERVED_USERS: usize = 1 << 20;

impl Fetched {
    /// The users read (also once they were handed to the plan).
    pub(crate) fn user_count(&self) -> usize {
        self.users.len().max(self.taken)
    }

    /// The users, for the plan to consume: a run at a million users does not
    /// hold them and the plan's changes at once. The count stays.
    pub(crate) fn take_users(&mut self) -> Vec<User> {
        self.taken = self.user_count();
        std::mem::take(&mut self.users)
    }

    /// `N users from N records in N pages[, N skipped]`.
    pub(crate) fn summary(&self) -> String {
        use crate::term::count;
        format!(
            "{} from {} in {}{}",
            count(self.user_count() as u64, "user"),
            count(self.records, "record"),
            count(self.pages, "page"),
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped", self.skipped.len())
            }
        )
    }

    /// Why a source that gave no user because its records were skipped (a
    /// mapping naming fields the records do not have, say) is a failure, as
    /// `min_users` makes it one for a sync; `None` when a user was mapped or
    /// nothing was skipped.
    pub(crate) fn nothing_mapped(&self) -> Option<String> {
        let first = self.skipped.first().filter(|_| self.users.is_empty())?;
        Some(format!(
            "no user was mapped: {} of {} skipped; the first, page {} record {}: {}",
            self.skipped.len(),
            crate::term::count(self.records, "record"),
            first.page,
            first.index,
            first.reason
        ))
    }
}

/// Read the source: every page, or the first `sample` pages.
pub(crate) fn fetch(
    job: &Job,
    client: &Client,
    sample: Option<u64>,
    progress: &Progress,
) -> Result<Fetched> {
    let pg = &job.pagination;
    let paginator = Paginator::new(pg.kind.clone(), pg.stop_on_empty, pg.max_pages);
    let mut listing = SourceListing {
        job,
        position: paginator.first(),
        paginator,
        previous_url: None,
        current_url: None,
        fetched: Fetched::default(),
        seen: Seen::default(),
        sample,
    };
    let stage = progress.stage("source pages", None);
    let workers = job.source.endpoint.concurrency;
    let direct = direct_reader(job);
    pages::walk(
        client,
        workers,
        &mut listing,
        |number, request, sent| read_page(job, direct.as_ref(), request, sent, number),
        &stage,
    )?;
    let SourceListing {
        paginator,
        mut fetched,
        ..
    } = listing;
    if !fetched.sampled {
        paginator.verify_complete()?;
    }
    fetched.pages = paginator.pages();
    fetched.records = paginator.records();
    drop(stage);
    progress.log(&format!("source: {}", fetched.summary()));
    Ok(fetched)
}

/// The source's side of the page walk: where the pagination stands and the
/// users read so far.
struct SourceListing<'a> {
    job: &'a Job,
    paginator: Paginator,
    position: Position,
    /// The URL of the page before, against which a relative next URL is resolved.
    previous_url: Option<Url>,
    current_url: Option<Url>,
    fetched: Fetched,
    /// Which page each user came from.
    seen: Seen,
    sample: Option<u64>,
}

impl Listing for SourceListing<'_> {
    type Page = PageOut;

    fn next_request(&mut self) -> Result<Request> {
        let request = build_request(self.job, &self.position, self.previous_url.as_ref())?;
        self.current_url = Some(request.url.clone());
        Ok(request)
    }

    fn take(&mut self, number: u64, out: PageOut) -> Result<Next> {
        let fetched = &mut self.fetched;
        for user in out.users {
            let slot = fetched.users.len();
            if let Some((earlier, at)) = self.seen.insert(&(&user.id, &user.email), number, slot)
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
        crate::progress::debug(&format!(
            "source page {number}: {} records ({})",
            observed.count,
            self.current_url
                .as_ref()
                .map(display_url)
                .unwrap_or_default()
        ));
        let step = self
            .paginator
            .next(&observed)
            .with_context(|| format!("after source page {number}"))?;
        let next = match step {
            Step::Done => return Ok(Next::Done),
            Step::Next(_) if self.sample.is_some_and(|n| self.paginator.pages() >= n) => {
                fetched.sampled = true;
                return Ok(Next::Done);
            }
            Step::Next(next) => next,
        };
        let mut how = Next::More;
        if number == 1
            && self.job.source.endpoint.concurrency > 1
            && let Some(count) = self.paginator.known_page_count(observed.count)
        {
            let last = count
                .min(self.job.pagination.max_pages)
                .min(self.sample.unwrap_or(u64::MAX));
            // Room for the users to come, so that the tables do not grow (and
            // copy) page after page; capped, as `total` comes from the API.
            let expected = usize::try_from(last.saturating_mul(observed.count))
                .unwrap_or(usize::MAX)
                .min(MAX_RESERVED_USERS);
            fetched.users.reserve(expected);
            self.seen.reserve(expected);
            how = Next::Ahead(planned(self.job, &observed, 2..=last)?);
        }
        self.previous_url = self.current_url.take();
        self.position = next;
        Ok(how)
    }
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
                Kind::Offset { start, .. } => Position::Numbered {
                    page: n,
                    offset: start + i * first.count,
                },
                _ => unreachable!("only numbered pages are planned"),
            };
            build_request(job, &position, None)
        })
        .collect()
}

/// The direct reader of the pages, when the job's expressions are plain paths
/// and a plain `{id, email}` projection; `None`: every page goes through jq.
pub(crate) fn direct_reader(job: &Job) -> Option<Direct> {
    let pg = &job.pagination;
    if pg.has_more.is_some() || pg.cursor.is_some() || pg.next_url.is_some() {
        return None;
    }
    Direct::recognise(
        &job.source.records,
        pg.total.as_ref(),
        pg.count.as_ref(),
        &job.mapping,
    )
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
fn read_page(
    job: &Job,
    direct: Option<&Direct>,
    request: &Request,
    sent: Result<Response>,
    number: u64,
) -> Result<PageOut> {
    let url_shown = display_url(&request.url);
    let response = sent
        .and_then(|r| r.error_for_status(&request.method, &request.url))
        .with_context(|| format!("source page {number}"))?;
    // Numbered pages past the end may come back as 204 No Content or with no
    // body at all (e.g. ADP's `$skip` beyond the last record): the listing ends.
    if matches!(job.pagination.kind, Kind::Page { .. } | Kind::Offset { .. })
        && (response.status == 204 || response.body.iter().all(u8::is_ascii_whitespace))
    {
        crate::progress::debug(&format!(
            "source page {number}: HTTP {} with no body ({url_shown}): the listing ends here",
            response.status
        ));
        return Ok(PageOut {
            observed: Observed {
                has_more: Some(false),
                ..Observed::default()
            },
            users: Vec::new(),
            skipped: Vec::new(),
        });
    }
    // A page the direct reader cannot take with certainty goes through jq
    // below, and so does one with a record that lacks a field: jq's reasons
    // name the keys such a record has, which the direct walk skips unread.
    let page = direct
        .and_then(|d| d.read(&response.body))
        .filter(|p| !p.skipped.iter().any(|(_, r)| r.ends_with(" is missing")));
    if let Some(page) = page {
        let pg = &job.pagination;
        let value = |jq: &Jq| {
            if pg.total.as_ref().is_some_and(|t| std::ptr::eq(t, jq)) {
                Ok(page.total.clone())
            } else if pg.count.as_ref().is_some_and(|c| std::ptr::eq(c, jq)) {
                Ok(page.count.clone())
            } else {
                bail!("`{}` is not read by the direct path", jq.source())
            }
        };
        let observed = observe(job, &value, &response, &request.url, page.records)
            .with_context(|| format!("source page {number} ({url_shown})"))?;
        let skipped = page
            .skipped
            .into_iter()
            .map(|(index, reason)| Skipped {
                page: number,
                index,
                reason,
            })
            .collect();
        return Ok(PageOut {
            observed,
            users: page.users,
            skipped,
        });
    }
    // Config jq runs within the page's time budget.
    let budget = crate::jq_budget::Page::enter(job.jq_timeout, format!("source page {number}"));
    let page =
        parse_page(&response).with_context(|| format!("source page {number} ({url_shown})"))?;
    let records = select_records(&job.source.records, &page)
        .with_context(|| format!("source page {number} ({url_shown})"))?;
    let value = |jq: &Jq| jq.run_one(&page);
    let observed = observe(job, &value, &response, &request.url, records.len())
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
    budget.finish()?;
    Ok(out)
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
                "records `{}` gave {}, not an array of records: the page does not have the expected shape{}",
                records.source(),
                mapping::kind(&other),
                mapping::keys_named(page)
                    .map_or_else(String::new, |k| format!(" (the page has {k})"))
            ),
        }
    }
    Ok(out)
}

/// Evaluate the page-level expressions of the pagination; `value` gives the
/// value of one of them on the page.
fn observe(
    job: &Job,
    value: &dyn Fn(&Jq) -> Result<Val>,
    response: &Response,
    url: &Url,
    records: usize,
) -> Result<Observed> {
    let pg = &job.pagination;
    // A configured count, total or has_more that yields null is a page of
    // another shape, never a value to ignore: ignoring it could end the
    // listing early, and a short source passes as a complete one.
    let given = |jq: &crate::mapping::Jq, key: &str| {
        anyhow!(
            "[pagination] {key} `{}` gave null on this page: the page does not have the expected shape",
            jq.source()
        )
    };
    let count = match &pg.count {
        Some(jq) => mapping::as_count(&value(jq)?, "count")?.ok_or_else(|| given(jq, "count"))?,
        None => records as u64,
    };
    let total = match &pg.total {
        Some(jq) => {
            Some(mapping::as_count(&value(jq)?, "total")?.ok_or_else(|| given(jq, "total"))?)
        }
        None => None,
    };
    let has_more = match &pg.has_more {
        Some(jq) => {
            Some(mapping::as_bool(&value(jq)?, "has_more")?.ok_or_else(|| given(jq, "has_more"))?)
        }
        None => None,
    };
    let cursor = match &pg.cursor {
        Some(jq) => mapping::as_text(&value(jq)?, "cursor")?,
        None => None,
    };
    let next = match pg.kind {
        Kind::NextUrl => match &pg.next_url {
            Some(jq) => mapping::as_text(&value(jq)?, "next_url")?,
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
