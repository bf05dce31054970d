//! What the directory says it supports, read once from `/ServiceProviderConfig`
//! (RFC 7643 §5): PUT or PATCH, a filter, versions, the largest page.

use anyhow::{Context, Result};
use serde_json::Value;

use super::{SCIM_JSON, ScimSink, expect_success};
use crate::config::UpdateMode;
use crate::exit;
use crate::http::{Request, display_url};
use crate::progress;
use crate::request::join_url;

/// The directory's abilities, from `/ServiceProviderConfig` (RFC 7643 §5).
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    /// How writes are sent, `update = "auto"` resolved.
    pub(super) put: bool,
    /// `filter.supported`: a user can be looked up by email.
    pub(super) filter: bool,
    /// `etag.supported`; `None` when the directory did not say. When false,
    /// versions are neither trusted nor sent.
    pub(super) etag: Option<bool>,
    /// `page_size` within `filter.maxResults`.
    pub(super) page_size: usize,
}

impl ScimSink {
    /// What the directory supports, read on first use. A directory without a
    /// readable `/ServiceProviderConfig` (404, 501, not JSON) is taken to have
    /// PUT, no filter, and versions only where its users carry them.
    pub(super) fn found(&self) -> Result<Found> {
        if let Some(found) = self.found.get() {
            return Ok(*found);
        }
        let found = self.discover()?;
        Ok(*self.found.get_or_init(|| found))
    }

    fn discover(&self) -> Result<Found> {
        let url = join_url(&self.base_url, "/ServiceProviderConfig");
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = self
            .client
            .send(&req)
            .context("reading the directory's /ServiceProviderConfig")?;
        if matches!(resp.status, 401 | 403) {
            return Err(expect_success(resp, "GET", &req.url).expect_err("401 is not a success"));
        }
        let config = resp
            .is_success()
            .then(|| serde_json::from_slice::<Value>(&resp.body).ok())
            .flatten()
            .filter(Value::is_object);
        if config.is_none() {
            progress::debug(&format!(
                "{} answered HTTP {} without a ServiceProviderConfig: assuming PUT, no filter",
                display_url(&req.url),
                resp.status
            ));
        }
        let config = config.unwrap_or_default();
        let supported = |name: &str| lenient_bool(&config[name]["supported"]);
        let patch = supported("patch");
        let put = match self.options.update {
            UpdateMode::Put => true,
            UpdateMode::Patch if patch == Some(false) => {
                return Err(exit::usage(format!(
                    "[sink] update = \"patch\", but {} says the directory does not support PATCH; \
                     use update = \"auto\" or \"put\"",
                    display_url(&req.url)
                )));
            }
            UpdateMode::Patch => false,
            UpdateMode::Auto => patch != Some(true),
        };
        let max_results = lenient_u64(&config["filter"]["maxResults"])
            .filter(|&n| n > 0)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let found = Found {
            put,
            filter: supported("filter") == Some(true),
            etag: supported("etag"),
            page_size: self.options.page_size.min(max_results),
        };
        progress::debug(&format!(
            "directory: writes by {}, filter {}, versions {}, {} users per page",
            if found.put { "PUT" } else { "PATCH" },
            if found.filter { "yes" } else { "no" },
            match found.etag {
                Some(true) => "yes",
                Some(false) => "no",
                None => "as the users carry them",
            },
            found.page_size
        ));
        Ok(found)
    }
}

/// A number, or a string holding one (some directories quote them).
pub(super) fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, or the string `"true"`/`"false"`; `None` when absent.
fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}
