//! Finding the agents with one email by a SCIM filter (`userName eq` or
//! `emails.value eq`), for actions; an answer that cannot be trusted leaves the
//! caller to list the directory instead.

use std::fmt::Write as _;

use anyhow::Result;

use super::{SCIM_JSON, ScimSink, expect_success};
use crate::config::EmailAttribute;
use crate::http::Request;
use crate::progress;
use crate::sink::Agent;

/// What a query value escapes: all but RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl ScimSink {
    /// The agents with `email`, by a filter; `None` when the directory has no
    /// filter or its answer cannot be trusted (then the caller lists). The
    /// filter is tried at once, without asking `/ServiceProviderConfig`
    /// first: a directory without filters refuses it (or ignores it, which
    /// the check of the answer notices), so one action costs the lookup and
    /// its own request, plus a token.
    pub(super) fn find_by_email(&self, email: &str) -> Result<Option<Vec<Agent>>> {
        if self.found.get().is_some_and(|found| !found.filter) {
            return Ok(None);
        }
        let attribute = match self.options.email_attribute {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails.value",
        };
        let wanted = email.trim();
        let filter = format!("{attribute} eq {}", filter_string(wanted));
        let mut url = self.users_url();
        // Spaces as %20 and `+` as %2B: a `+` left bare is read as a space.
        let encoded = percent_encoding::utf8_percent_encode(&filter, QUERY_VALUE);
        url.set_query(Some(&format!("filter={encoded}&startIndex=1&count=2")));
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = self.client.send(&req)?;
        if matches!(resp.status, 401 | 403) {
            return Err(expect_success(resp, "GET", &req.url).expect_err("401 is not a success"));
        }
        let page = match self.read_list(&req, Ok(resp), false) {
            Ok(page) => page,
            Err(e) => {
                progress::debug(&format!("the filter was refused ({e:#}); listing instead"));
                return Ok(None);
            }
        };
        let returned = page.got;
        let agents: Vec<Agent> = page
            .users
            .into_iter()
            .filter_map(|u| u.ok().map(|u| u.agent))
            .filter(|a| a.email.trim().eq_ignore_ascii_case(wanted))
            .collect();
        // Only an answer that holds what was asked for, and all of it, is
        // trusted; a directory that ignored the filter is listed instead.
        if agents.len() != returned || page.total_results < returned {
            progress::debug(
                "the filter's answer does not hold only the email asked for; listing instead",
            );
            return Ok(None);
        }
        if page.total_results > returned && returned < 2 {
            return Ok(None);
        }
        Ok(Some(agents))
    }
}

/// A string as a SCIM filter literal (RFC 7644 §3.4.2.2, JSON string rules).
fn filter_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(filter_string("a+b@x.com"), r#""a+b@x.com""#);
        assert_eq!(filter_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
