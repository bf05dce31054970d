//! Requests declared in the config, rendered: the base URL joined with the
//! templated path and query, headers and body filled in, and the one rule that
//! says which methods may be sent twice. Used by the source, the directory and
//! the actions alike.

use anyhow::Result;
use url::Url;

use crate::config::RequestSpec;
use crate::http::Request;
use crate::redact;
use crate::template::{Encoding, Values};

/// Join a base URL and a rendered path: `https://h/scim/v2` + `/Users` keeps the
/// base's path (unlike RFC 3986 resolution, which would drop `scim/v2`).
pub(crate) fn join_url(base: &Url, path: &str) -> Url {
    if path.is_empty() {
        return base.clone();
    }
    let mut url = base.clone();
    let (path_part, query_part) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path_part.trim_start_matches('/')
    );
    url.set_path(&joined);
    if let Some(q) = query_part {
        let merged = match base.query() {
            Some(b) if !b.is_empty() => format!("{b}&{q}"),
            _ => q.to_owned(),
        };
        url.set_query(Some(&merged));
    }
    url
}

/// May a request with this method be sent again when its answer was lost?
/// The methods RFC 9110 §9.2.2 calls idempotent; POST and PATCH are not.
pub(crate) fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
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
        let mut query = url.query().unwrap_or("").to_owned();
        for (k, v) in rendered {
            if v.is_empty() && spec.omit_empty_query {
                continue;
            }
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&redact::query_component(k));
            query.push('=');
            query.push_str(&redact::query_component(&v));
        }
        url.set_query((!query.is_empty()).then_some(query.as_str()));
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
    // Values from the environment are credentials: they stay with the origin.
    let secret_headers = spec
        .headers
        .iter()
        .filter(|(_, t)| t.uses_env())
        .map(|(k, _)| k.clone())
        .collect();
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
        idempotent: spec.repeatable || is_idempotent(&spec.method),
        secret_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_idempotent_methods_may_be_repeated() {
        for m in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            assert!(is_idempotent(m), "{m}");
        }
        for m in ["POST", "PATCH"] {
            assert!(!is_idempotent(m), "{m}");
        }
    }

    #[test]
    fn join_url_keeps_the_base_path() {
        let base = Url::parse("https://api.talkdeskapp.com/scim/v2").unwrap();
        assert_eq!(
            join_url(&base, "/Users").as_str(),
            "https://api.talkdeskapp.com/scim/v2/Users"
        );
        let base = Url::parse("http://h/api/?key=1").unwrap();
        assert_eq!(
            join_url(&base, "users?x=2").as_str(),
            "http://h/api/users?key=1&x=2"
        );
    }
}
