//! Templated requests: the source's "get users" request and the declared
//! per-agent actions, with every `{{placeholder}}` checked for its scope.

use toml::Spanned;

use super::Endpoint;
use super::ctx::{ConfigError, Ctx, Errors};
use super::raw::{RawAction, RawRequest, RawSource, Scalar};
use crate::mapping::Jq;
use crate::template::{Scope, Template};

/// One templated request.
#[derive(Debug)]
pub(crate) struct RequestSpec {
    pub method: String,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// Leave out query parameters that render empty.
    pub omit_empty_query: bool,
    /// The request only reads: sent again like a GET whatever its method.
    pub repeatable: bool,
}

impl RequestSpec {
    /// The request of table `[table]`; `default_method` when it names none.
    fn from_raw(
        table: &str,
        raw: RawRequest<'_>,
        default_method: &str,
        scope: Scope,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        // Every key is checked, so that all their errors are reported at once.
        let mut errors = Errors::default();
        let method = errors.keep(method(
            &format!("[{table}] method"),
            raw.method,
            default_method,
            ctx,
        ));
        let path = errors.keep(match raw.path {
            Some(p) => ctx.template(&format!("[{table}] path"), p, scope),
            None => Ok(Template::literal("")),
        });
        let query: Vec<_> = raw
            .query
            .iter()
            .filter_map(|(k, v)| {
                let key = format!("[{table}] query.{k}");
                Some((
                    k.clone(),
                    errors.keep(scalar_template(&key, v, scope, ctx))?,
                ))
            })
            .collect();
        let headers: Vec<_> = raw
            .headers
            .iter()
            .filter_map(|(k, v)| {
                if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    errors.keep::<()>(Err(ctx.err_at(
                        v,
                        format!("[{table}] headers: {k:?} is not a valid header name"),
                    )));
                    return None;
                }
                let key = format!("[{table}] headers.{k}");
                Some((
                    k.clone(),
                    errors.keep(scalar_template(&key, v, scope, ctx))?,
                ))
            })
            .collect();
        let body = errors.keep(
            raw.body
                .map(|b| ctx.template(&format!("[{table}] body"), b, scope))
                .transpose(),
        );
        let (Some(method), Some(path), Some(body)) = (method, path, body) else {
            return Err(errors.into_error(ctx));
        };
        errors.finish()?;
        Ok(RequestSpec {
            method,
            path,
            query,
            headers,
            body,
            omit_empty_query: raw.omit_empty_query == Some(true),
            repeatable: raw.retry_post == Some(true),
        })
    }
}

#[derive(Debug)]
pub(crate) struct SourceSpec {
    pub endpoint: Endpoint,
    pub request: RequestSpec,
    pub records: Jq,
}

impl SourceSpec {
    pub(super) fn from_raw(raw: &Spanned<RawSource>, ctx: &Ctx) -> Result<Self, ConfigError> {
        let src = raw.get_ref();
        let mut errors = Errors::default();
        let endpoint = errors.keep(
            Endpoint::from_raw("source", src.endpoint(), ctx)
                .and_then(|e| e.ok_or_else(|| ctx.err_at(raw, "missing field `base_url`"))),
        );
        let request = errors.keep(RequestSpec::from_raw(
            "source",
            src.request(),
            "GET",
            Scope::Source,
            ctx,
        ));
        let records = errors.keep(match &src.records {
            Some(r) => ctx.jq("[source] records", r),
            None => Ok(Jq::compile(".").expect("identity compiles")),
        });
        let (Some(endpoint), Some(request), Some(records)) = (endpoint, request, records) else {
            return Err(errors.into_error(ctx));
        };
        Ok(SourceSpec {
            endpoint,
            request,
            records,
        })
    }
}

#[derive(Debug)]
pub(crate) struct ActionSpec {
    /// Its own endpoint, or `None` to use the source's.
    pub endpoint: Option<Endpoint>,
    pub request: RequestSpec,
}

impl ActionSpec {
    /// The action `[actions.name]`.
    pub(super) fn from_raw(
        name: &str,
        raw: &Spanned<RawAction>,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        let a = raw.get_ref();
        let table = format!("actions.{name}");
        let endpoint = Endpoint::from_raw(&table, a.endpoint(), ctx)?;
        if endpoint.is_none() {
            if let Some(auth) = &a.auth {
                return Err(ctx.err_at(
                    auth,
                    format!(
                        "[{table}] auth needs its own base_url (else the source's auth is used)"
                    ),
                ));
            }
            if let Some(key) = a.endpoint().first_setting() {
                return Err(ctx.err_at(
                    raw,
                    format!(
                        "[{table}] {key} needs its own base_url (else the source's settings are used)"
                    ),
                ));
            }
        }
        let request = RequestSpec::from_raw(&table, a.request(), "POST", Scope::Action, ctx)?;
        Ok(ActionSpec { endpoint, request })
    }

    /// The `{{var.K}}` names its templates use (with repeats).
    pub(crate) fn vars(&self) -> impl Iterator<Item = &str> {
        let req = &self.request;
        std::iter::once(&req.path)
            .chain(req.query.iter().map(|(_, t)| t))
            .chain(req.headers.iter().map(|(_, t)| t))
            .chain(req.body.iter())
            .flat_map(Template::vars)
    }
}

fn method(
    key: &str,
    method: Option<&Spanned<String>>,
    default: &str,
    ctx: &Ctx,
) -> Result<String, ConfigError> {
    let Some(m) = method else {
        return Ok(default.to_owned());
    };
    let upper = m.get_ref().trim().to_ascii_uppercase();
    if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ctx.err_at(m, format!("{key}: {:?} is not an HTTP method", m.get_ref())));
    }
    Ok(upper)
}

/// A query or header value: strings are templates, numbers and booleans literal.
fn scalar_template(
    key: &str,
    value: &Spanned<Scalar>,
    scope: Scope,
    ctx: &Ctx,
) -> Result<Template, ConfigError> {
    match value.get_ref() {
        Scalar::Text(s) => ctx.template(key, &Spanned::new(value.span(), s.clone()), scope),
        other => Ok(Template::literal(&other.text())),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse_str};

    #[test]
    fn action_endpoint_keys_need_their_own_base_url() {
        let action = "\n[actions.punch]\npath = \"/p\"\ntimeout_secs = 5\n";
        let err = parse_str(&format!("{MINIMAL}{action}")).unwrap_err();
        assert!(
            err.message
                .contains("[actions.punch] timeout_secs needs its own base_url"),
            "{err}"
        );
        let own = "base_url = \"http://127.0.0.1:9\"\n";
        let job = parse_str(&format!("{MINIMAL}{action}{own}")).unwrap();
        let endpoint = job.actions["punch"].endpoint.as_ref().unwrap();
        assert_eq!(endpoint.settings.timeout.as_secs(), 5);
    }

    #[test]
    fn source_without_base_url_is_an_error() {
        let text = MINIMAL.replace("base_url = \"http://127.0.0.1:8787\"\n", "");
        let err = parse_str(&text).unwrap_err();
        assert!(err.message.contains("missing field `base_url`"), "{err}");
        assert_eq!(err.at.map(|(line, _)| line), Some(2), "{err}");
    }
}
