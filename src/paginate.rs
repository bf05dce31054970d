//! Pagination strategies and their stop conditions, as pure state machines: the
//! source tells the [`Paginator`] what a page said ([`Observed`]) and learns where
//! the next page is, that the listing is done, or that it went wrong (a loop, or
//! `max_pages` reached with pages left). No I/O here.

use std::collections::HashSet;

use anyhow::{Result, bail};

/// The pagination kinds of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    None,
    Page { start: u64 },
    Offset { start: u64, limit: Option<u64> },
    Cursor,
    NextUrl,
    LinkHeader,
}

impl Kind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Page { .. } => "page",
            Kind::Offset { .. } => "offset",
            Kind::Cursor => "cursor",
            Kind::NextUrl => "next_url",
            Kind::LinkHeader => "link_header",
        }
    }
}

/// Where a page is: the values its request is rendered with, or its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// Page number and offset (both kept so `{{page}}` and `{{offset}}` both work).
    Numbered { page: u64, offset: u64 },
    /// The cursor to send; `None` for the first page.
    Cursor(Option<String>),
    /// An absolute URL given by the previous page.
    Url(String),
}

/// What one page said, already extracted by the page-level jq expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Records on this page (`count`, else the length of `records`).
    pub count: u64,
    pub total: Option<u64>,
    pub has_more: Option<bool>,
    /// The next cursor (cursor kind); `None` for null or "".
    pub cursor: Option<String>,
    /// The next page's absolute URL (`next_url` and `link_header` kinds).
    pub next_url: Option<String>,
}

/// Where to go after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Next(Position),
    Done,
}

#[derive(Debug)]
pub(crate) struct Paginator {
    kind: Kind,
    stop_on_empty: bool,
    max_pages: u64,
    position: Position,
    pages: u64,
    records: u64,
    total: Option<u64>,
    /// Cursors or URLs already followed, to catch a server that loops.
    seen: HashSet<String>,
}

impl Paginator {
    pub(crate) fn new(kind: Kind, stop_on_empty: bool, max_pages: u64) -> Self {
        let position = match &kind {
            Kind::Page { start } => Position::Numbered {
                page: *start,
                offset: 0,
            },
            Kind::Offset { start, .. } => Position::Numbered {
                page: 1,
                offset: *start,
            },
            Kind::Cursor => Position::Cursor(None),
            // The first request of these kinds is the configured one.
            Kind::None | Kind::NextUrl | Kind::LinkHeader => {
                Position::Numbered { page: 1, offset: 0 }
            }
        };
        Paginator {
            kind,
            stop_on_empty,
            max_pages,
            position,
            pages: 0,
            records: 0,
            total: None,
            seen: HashSet::new(),
        }
    }

    /// The position of the first page.
    pub(crate) fn first(&self) -> Position {
        self.position.clone()
    }

    /// Pages and records observed so far.
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }

    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The number of pages, when the first page makes it known: page numbers or
    /// offsets with a total, `first_count` being the records on the first page.
    /// Lets the pages after it be fetched ahead, concurrently.
    pub(crate) fn known_page_count(&self, first_count: u64) -> Option<u64> {
        let total = self.total?;
        // Offsets step by the records returned, so pages the size of the
        // first are planned also when the server caps them below `limit`.
        let step = match self.kind {
            Kind::Page { .. } | Kind::Offset { .. } => first_count,
            _ => return None,
        };
        if step == 0 {
            return None;
        }
        Some(total.div_ceil(step).max(1))
    }

    /// Record a page and decide what comes next.
    pub(crate) fn next(&mut self, page: &Observed) -> Result<Step> {
        self.pages += 1;
        self.records += page.count;
        if page.total.is_some() {
            self.total = page.total;
        }

        // An empty page ends numbered pages; a cursor, next URL or Link that
        // still names a next page is followed past it (some APIs, e.g.
        // Microsoft Graph, answer empty pages in the middle of a listing).
        let numbered = matches!(self.kind, Kind::Page { .. } | Kind::Offset { .. });
        let done = page.has_more == Some(false)
            || (self.stop_on_empty && numbered && page.count == 0)
            || self.total.is_some_and(|t| self.records >= t);
        let next = if done {
            None
        } else {
            match (&self.kind, &self.position) {
                (Kind::None, _) => None,
                (Kind::Page { .. }, Position::Numbered { page: n, offset }) => {
                    Some(Position::Numbered {
                        page: n + 1,
                        offset: offset + page.count,
                    })
                }
                (Kind::Offset { limit, .. }, Position::Numbered { page: n, offset }) => {
                    // The next record is the one after those returned: a server
                    // that caps the page below `limit` is read on from there.
                    let step = match limit {
                        Some(_) if page.count > 0 => page.count,
                        Some(limit) => *limit,
                        None => page.count,
                    };
                    if step == 0 {
                        // An empty page with no page size would ask for itself again.
                        None
                    } else {
                        Some(Position::Numbered {
                            page: n + 1,
                            offset: offset + step,
                        })
                    }
                }
                (Kind::Cursor, _) => match &page.cursor {
                    None => None,
                    Some(c) => {
                        if !self.seen.insert(c.clone()) {
                            bail!(
                                "pagination loop: the cursor {c:?} came back after {} pages",
                                self.pages
                            );
                        }
                        Some(Position::Cursor(Some(c.clone())))
                    }
                },
                (Kind::NextUrl | Kind::LinkHeader, _) => match &page.next_url {
                    None => None,
                    Some(url) => {
                        if !self.seen.insert(url.clone()) {
                            bail!(
                                "pagination loop: the next page {url} was already read ({} pages so far)",
                                self.pages
                            );
                        }
                        Some(Position::Url(url.clone()))
                    }
                },
                (kind, pos) => unreachable!("position {pos:?} does not belong to {kind:?}"),
            }
        };
        match next {
            None => Ok(Step::Done),
            Some(_) if self.pages >= self.max_pages => bail!(
                "max_pages ({}) reached with pages still left{}: raise [pagination] max_pages to read them all",
                self.max_pages,
                match self.total {
                    Some(t) => format!(" ({} of {t} records read)", self.records),
                    None => String::new(),
                }
            ),
            Some(pos) => {
                self.position = pos.clone();
                Ok(Step::Next(pos))
            }
        }
    }

    /// After the last page: the source must have delivered what its total said.
    pub(crate) fn verify_complete(&self) -> Result<()> {
        match self.total {
            Some(total) if total != self.records => bail!(
                "source incomplete: the API reported a total of {total} records but {} were read in {} pages",
                self.records,
                self.pages
            ),
            _ => Ok(()),
        }
    }
}

/// The `rel="next"` target of `Link` header values (RFC 8288).
pub(crate) fn link_next<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in values {
        for link in split_links(value) {
            let link = link.trim();
            let Some(end) = link.find('>') else { continue };
            if !link.starts_with('<') {
                continue;
            }
            let target = &link[1..end];
            let is_next = link[end + 1..].split(';').any(|param| {
                let Some((name, val)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && val
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_owned());
            }
        }
    }
    None
}

/// Split a Link header on the commas between links, not those inside `<…>` or quotes.
fn split_links(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_angle, mut in_quote, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(count: u64) -> Observed {
        Observed {
            count,
            ..Observed::default()
        }
    }

    fn numbered(page: u64, offset: u64) -> Step {
        Step::Next(Position::Numbered { page, offset })
    }

    #[test]
    fn none_reads_one_page() {
        let mut p = Paginator::new(Kind::None, true, 10);
        assert_eq!(p.next(&obs(5)).unwrap(), Step::Done);
    }

    #[test]
    fn page_stops_at_total() {
        let mut p = Paginator::new(Kind::Page { start: 1 }, true, 10);
        let page = |c| Observed {
            count: c,
            total: Some(25),
            ..Observed::default()
        };
        assert_eq!(p.first(), Position::Numbered { page: 1, offset: 0 });
        assert_eq!(p.next(&page(10)).unwrap(), numbered(2, 10));
        assert_eq!(p.next(&page(10)).unwrap(), numbered(3, 20));
        assert_eq!(p.next(&page(5)).unwrap(), Step::Done);
        p.verify_complete().unwrap();
        assert_eq!(p.known_page_count(10), Some(3));
    }

    #[test]
    fn page_stops_on_has_more_false_and_on_empty_page() {
        let mut p = Paginator::new(Kind::Page { start: 0 }, true, 10);
        let more = |b| Observed {
            count: 3,
            has_more: Some(b),
            ..Observed::default()
        };
        assert_eq!(p.next(&more(true)).unwrap(), numbered(1, 3));
        assert_eq!(p.next(&more(false)).unwrap(), Step::Done);

        let mut p = Paginator::new(Kind::Page { start: 1 }, true, 10);
        assert_eq!(p.next(&obs(3)).unwrap(), numbered(2, 3));
        assert_eq!(p.next(&obs(0)).unwrap(), Step::Done);
    }

    #[test]
    fn empty_page_before_total_is_incomplete() {
        let mut p = Paginator::new(Kind::Page { start: 1 }, true, 10);
        let page = |c| Observed {
            count: c,
            total: Some(30),
            ..Observed::default()
        };
        p.next(&page(10)).unwrap();
        assert_eq!(p.next(&page(0)).unwrap(), Step::Done);
        let err = p.verify_complete().unwrap_err().to_string();
        assert!(
            err.contains("total of 30 records but 10 were read"),
            "{err}"
        );
    }

    #[test]
    fn offset_steps_by_limit_or_count() {
        let mut p = Paginator::new(
            Kind::Offset {
                start: 0,
                limit: Some(50),
            },
            true,
            10,
        );
        assert_eq!(p.first(), Position::Numbered { page: 1, offset: 0 });
        assert_eq!(p.next(&obs(50)).unwrap(), numbered(2, 50));
        assert_eq!(p.next(&obs(0)).unwrap(), Step::Done);

        let mut p = Paginator::new(
            Kind::Offset {
                start: 10,
                limit: None,
            },
            true,
            10,
        );
        let page = |c| Observed {
            count: c,
            total: Some(17),
            ..Observed::default()
        };
        assert_eq!(p.next(&page(7)).unwrap(), numbered(2, 17));
        assert_eq!(p.next(&page(10)).unwrap(), Step::Done);
    }

    #[test]
    fn offsets_step_by_what_a_capping_server_returned() {
        let mut p = Paginator::new(
            Kind::Offset {
                start: 1,
                limit: Some(100),
            },
            true,
            10,
        );
        let page = |c| Observed {
            count: c,
            total: Some(120),
            ..Observed::default()
        };
        assert_eq!(p.next(&page(50)).unwrap(), numbered(2, 51));
        assert_eq!(p.known_page_count(50), Some(3));
        assert_eq!(p.next(&page(50)).unwrap(), numbered(3, 101));
        assert_eq!(p.next(&page(20)).unwrap(), Step::Done);
        p.verify_complete().unwrap();
    }

    #[test]
    fn empty_pages_that_name_a_next_page_are_followed() {
        let empty = |cursor: Option<&str>, url: Option<&str>| Observed {
            count: 0,
            cursor: cursor.map(str::to_owned),
            next_url: url.map(str::to_owned),
            ..Observed::default()
        };
        let mut p = Paginator::new(Kind::Cursor, true, 10);
        assert_eq!(
            p.next(&empty(Some("c2"), None)).unwrap(),
            Step::Next(Position::Cursor(Some("c2".into())))
        );
        assert_eq!(p.next(&empty(None, None)).unwrap(), Step::Done);
        for kind in [Kind::NextUrl, Kind::LinkHeader] {
            let mut p = Paginator::new(kind, true, 10);
            assert_eq!(
                p.next(&empty(None, Some("http://h/p2"))).unwrap(),
                Step::Next(Position::Url("http://h/p2".into()))
            );
            assert_eq!(p.next(&empty(None, None)).unwrap(), Step::Done);
        }
        // has_more = false still ends them.
        let mut p = Paginator::new(Kind::Cursor, true, 10);
        let last = Observed {
            has_more: Some(false),
            ..empty(Some("c2"), None)
        };
        assert_eq!(p.next(&last).unwrap(), Step::Done);
    }

    #[test]
    fn cursor_stops_on_none_and_detects_loops() {
        let mut p = Paginator::new(Kind::Cursor, true, 10);
        assert_eq!(p.first(), Position::Cursor(None));
        let cur = |c: Option<&str>| Observed {
            count: 2,
            cursor: c.map(str::to_owned),
            ..Observed::default()
        };
        assert_eq!(
            p.next(&cur(Some("a"))).unwrap(),
            Step::Next(Position::Cursor(Some("a".into())))
        );
        assert_eq!(
            p.next(&cur(Some("b"))).unwrap(),
            Step::Next(Position::Cursor(Some("b".into())))
        );
        let err = p.next(&cur(Some("a"))).unwrap_err().to_string();
        assert!(err.contains("pagination loop"), "{err}");

        let mut p = Paginator::new(Kind::Cursor, true, 10);
        assert_eq!(p.next(&cur(None)).unwrap(), Step::Done);
    }

    #[test]
    fn next_url_follows_and_detects_loops() {
        let mut p = Paginator::new(Kind::NextUrl, true, 10);
        let next = |u: Option<&str>| Observed {
            count: 1,
            next_url: u.map(str::to_owned),
            ..Observed::default()
        };
        assert_eq!(
            p.next(&next(Some("http://h/p2"))).unwrap(),
            Step::Next(Position::Url("http://h/p2".into()))
        );
        assert!(p.next(&next(Some("http://h/p2"))).is_err());
        let mut p = Paginator::new(Kind::LinkHeader, true, 10);
        assert_eq!(p.next(&next(None)).unwrap(), Step::Done);
    }

    #[test]
    fn max_pages_with_pages_left_is_an_error() {
        let mut p = Paginator::new(Kind::Page { start: 1 }, true, 2);
        let page = Observed {
            count: 10,
            total: Some(100),
            ..Observed::default()
        };
        p.next(&page).unwrap();
        let err = p.next(&page).unwrap_err().to_string();
        assert!(err.contains("max_pages (2) reached"), "{err}");
        assert!(err.contains("20 of 100"), "{err}");

        // Exactly max_pages pages with nothing left is fine.
        let mut p = Paginator::new(Kind::Page { start: 1 }, true, 2);
        let page = |c| Observed {
            count: c,
            total: Some(20),
            ..Observed::default()
        };
        p.next(&page(10)).unwrap();
        assert_eq!(p.next(&page(10)).unwrap(), Step::Done);
    }

    #[test]
    fn empty_pages_go_on_when_told_to() {
        let mut p = Paginator::new(Kind::Page { start: 1 }, false, 10);
        let page = |c, more| Observed {
            count: c,
            has_more: Some(more),
            ..Observed::default()
        };
        assert_eq!(p.next(&page(0, true)).unwrap(), numbered(2, 0));
        assert_eq!(p.next(&page(4, false)).unwrap(), Step::Done);
    }

    #[test]
    fn link_header_parsing() {
        let v =
            r#"<https://api.x/u?page=1>; rel="prev", <https://api.x/u?page=3&a=b,c>; rel="next""#;
        assert_eq!(
            link_next([v]).as_deref(),
            Some("https://api.x/u?page=3&a=b,c")
        );
        assert_eq!(
            link_next(["</u?page=2>; rel=\"last next\""]).as_deref(),
            Some("/u?page=2")
        );
        assert_eq!(
            link_next(["<https://a/b>; title=\"next, please\"; rel=last"]),
            None
        );
        assert_eq!(
            link_next(["<a>; rel=first", "<b>; REL=NEXT"]).as_deref(),
            Some("b")
        );
        assert_eq!(link_next(std::iter::empty()), None);
    }
}
