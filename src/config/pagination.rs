//! `[pagination]`: which strategy walks the source's pages, the jq expressions
//! that read each page, and the checks that the walk moves and stops.

use toml::Spanned;

use super::ctx::{ConfigError, Ctx};
use super::raw::{RawPageKind, RawPagination};
use super::request::RequestSpec;
use crate::mapping::Jq;
use crate::paginate;
use crate::template::Placeholder;

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
    /// A next URL on another origin is followed without credentials (true)
    /// or is an error (false).
    pub follow_other_origins: bool,
}

impl PaginationSpec {
    /// One request, no pages: what a config without `[pagination]` means.
    fn none() -> Self {
        PaginationSpec {
            kind: paginate::Kind::None,
            limit: None,
            total: None,
            count: None,
            has_more: None,
            cursor: None,
            next_url: None,
            stop_on_empty: true,
            max_pages: 10_000,
            follow_other_origins: false,
        }
    }

    /// `request` is the source's, which must move with the pages; errors about
    /// it point at `source`, the `[source]` table.
    pub(super) fn from_raw<T>(
        raw: Option<&RawPagination>,
        request: &RequestSpec,
        source: &Spanned<T>,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        use RawPageKind as K;
        let Some(p) = raw else {
            return Ok(Self::none());
        };
        let kind = *p.kind.get_ref();
        let jq = |key: &str, v: &Option<Spanned<String>>| {
            v.as_ref()
                .map(|v| ctx.jq(&format!("[pagination] {key}"), v))
                .transpose()
        };
        let misplaced = |key: &str, present: bool, allowed: &[RawPageKind]| {
            if present && !allowed.contains(&kind) {
                Err(ctx.err_at(
                    &p.kind,
                    format!(
                        "[pagination] {key} has no meaning for kind = \"{}\"",
                        kind.name()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        misplaced("start", p.start.is_some(), &[K::Page, K::Offset])?;
        misplaced("limit", p.limit.is_some(), &[K::Offset])?;
        misplaced("cursor", p.cursor.is_some(), &[K::Cursor])?;
        misplaced("next_url", p.next_url.is_some(), &[K::NextUrl])?;
        let needs = |key: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(ctx.err_at(
                    &p.kind,
                    format!(
                        "[pagination] kind = \"{}\" needs `{key}` (a jq expression on the page)",
                        kind.name()
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
            return Err(ctx.err_at(
                &p.kind,
                "[pagination] nothing would stop this listing: set `total`, `has_more`, or stop_on_empty = true",
            ));
        }
        check_request_moves(kind, request, source, ctx)?;
        let max_pages = super::endpoint::bounded(
            "[pagination] max_pages",
            p.max_pages.as_ref(),
            1..=10_000_000,
            ctx,
        )?
        .unwrap_or(10_000);
        let limit =
            super::endpoint::bounded("[pagination] limit", p.limit.as_ref(), 1..=1_000_000, ctx)?;
        let start = super::endpoint::bounded(
            "[pagination] start",
            p.start.as_ref(),
            0..=1_000_000_000_000,
            ctx,
        )?;
        Ok(PaginationSpec {
            kind: match kind {
                K::None => paginate::Kind::None,
                K::Page => paginate::Kind::Page {
                    start: start.unwrap_or(1),
                },
                K::Offset => paginate::Kind::Offset {
                    start: start.unwrap_or(0),
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
            follow_other_origins: p.follow_other_origins.unwrap_or(false),
        })
    }
}

/// The request must move with the pages, or every page would be the first.
fn check_request_moves<T>(
    kind: RawPageKind,
    request: &RequestSpec,
    source: &Spanned<T>,
    ctx: &Ctx,
) -> Result<(), ConfigError> {
    use Placeholder as P;
    use RawPageKind as K;
    let uses = |ph: Placeholder| {
        request.path.uses(&ph)
            || request.query.iter().any(|(_, t)| t.uses(&ph))
            || request.headers.iter().any(|(_, t)| t.uses(&ph))
            || request.body.as_ref().is_some_and(|b| b.uses(&ph))
    };
    let moving = match kind {
        K::Page => Some(("{{page}}", uses(P::Page) || uses(P::Offset))),
        K::Offset => Some(("{{offset}}", uses(P::Offset) || uses(P::Page))),
        K::Cursor => Some(("{{cursor}}", uses(P::Cursor))),
        _ => None,
    };
    if let Some((ph, false)) = moving {
        return Err(ctx.err_at(
            source,
            format!(
                "[pagination] kind = \"{}\" but the [source] request never uses {ph}: every page would be the same",
                kind.name()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse_str};

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
}
