//! `[sink]`: the agent directory that receives external IDs, a SCIM endpoint
//! or a local JSON/CSV file.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ctx::{ConfigError, Ctx};
use super::raw::{RawAuth, RawEndpoint, RawSink, RawSinkKind, TalkdeskRegion};
use super::{EmailAttribute, Endpoint, UpdateMode, relative_to_config};

/// Talkdesk's documented request budget.
const TALKDESK_RATE_LIMIT: f64 = 4.0;
/// Where `kind = "talkdesk"` reads the STS client credentials, unless
/// `[sink.auth]` says otherwise.
pub(crate) const TALKDESK_CLIENT_ID_ENV: &str = "TALKDESK_CLIENT_ID";
pub(crate) const TALKDESK_CLIENT_SECRET_ENV: &str = "TALKDESK_CLIENT_SECRET";

#[derive(Debug)]
pub(crate) enum SinkSpec {
    Scim {
        endpoint: Box<Endpoint>,
        page_size: usize,
        /// Listing pages read at most; more is an error.
        max_pages: u64,
        update: UpdateMode,
        email_attribute: EmailAttribute,
    },
    File {
        path: PathBuf,
    },
}

impl SinkSpec {
    /// A file path is taken relative to `config_path`, the config file.
    pub(super) fn from_raw(
        raw: &Spanned<RawSink>,
        config_path: &Path,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        let s = raw.get_ref();
        match s.kind.get_ref() {
            RawSinkKind::Scim | RawSinkKind::Talkdesk => {
                if let Some(p) = &s.path {
                    return Err(ctx.err_at(p, "[sink] path is for kind = \"file\""));
                }
                let talkdesk = *s.kind.get_ref() == RawSinkKind::Talkdesk;
                if !talkdesk
                    && let Some((key, at)) = [
                        ("account", s.account.as_ref().map(Spanned::span)),
                        ("region", s.region.as_ref().map(Spanned::span)),
                        ("token_url", s.token_url.as_ref().map(Spanned::span)),
                    ]
                    .into_iter()
                    .find_map(|(k, at)| Some((k, at?)))
                {
                    return Err(
                        ctx.error(Some(at), format!("[sink] {key} is for kind = \"talkdesk\""))
                    );
                }
                let endpoint = if talkdesk {
                    talkdesk_endpoint(s, ctx)?
                } else {
                    Endpoint::from_raw("sink", s.endpoint(), ctx)?
                };
                let Some(endpoint) = endpoint else {
                    return Err(ctx.err_at(&s.kind, "[sink] kind = \"scim\" needs base_url"));
                };
                let page_size = match &s.page_size {
                    Some(p) if *p.get_ref() == 0 => {
                        return Err(ctx.err_at(p, "[sink] page_size must be at least 1"));
                    }
                    Some(p) => *p.get_ref(),
                    None => 100,
                };
                let max_pages = match &s.max_pages {
                    Some(p) if *p.get_ref() == 0 => {
                        return Err(ctx.err_at(p, "[sink] max_pages must be at least 1"));
                    }
                    Some(p) => *p.get_ref(),
                    None => 10_000,
                };
                let default_update = if talkdesk {
                    UpdateMode::Put
                } else {
                    UpdateMode::Auto
                };
                Ok(SinkSpec::Scim {
                    endpoint: Box::new(endpoint),
                    page_size,
                    max_pages,
                    update: s.update.unwrap_or(default_update),
                    email_attribute: s.email_attribute.unwrap_or(EmailAttribute::UserName),
                })
            }
            RawSinkKind::File => {
                let Some(p) = &s.path else {
                    return Err(ctx.err_at(&s.kind, "[sink] kind = \"file\" needs path"));
                };
                if let Some(u) = &s.base_url {
                    return Err(ctx.err_at(u, "[sink] base_url is for kind = \"scim\""));
                }
                let path = relative_to_config(config_path, p.get_ref());
                match path.extension().and_then(|e| e.to_str()) {
                    Some("json" | "csv") => Ok(SinkSpec::File { path }),
                    _ => Err(ctx.err_at(p, "[sink] path must end in .json or .csv")),
                }
            }
        }
    }
}

/// The endpoint of `kind = "talkdesk"`: the region's SCIM base URL, the
/// account's STS token request (client credentials as HTTP Basic,
/// `token_type=opaque`, the token sent without a prefix) and Talkdesk's rate
/// limit, each unless the table sets it.
fn talkdesk_endpoint(s: &RawSink, ctx: &Ctx) -> Result<Option<Endpoint>, ConfigError> {
    let kind_at = s.kind.span();
    let region = s
        .region
        .as_ref()
        .map_or(TalkdeskRegion::Us, |r| *r.get_ref());
    let (api, sts) = match region {
        TalkdeskRegion::Us => ("api.talkdeskapp.com", "talkdeskid.com"),
        TalkdeskRegion::Eu => ("api.talkdeskapp.eu", "talkdeskid.eu"),
        TalkdeskRegion::Ca => ("api.talkdeskappca.com", "talkdeskidca.com"),
    };
    let base_url = s
        .base_url
        .clone()
        .unwrap_or_else(|| Spanned::new(kind_at.clone(), format!("https://{api}/scim/v2")));
    let auth = match (&s.auth, &s.token_url, &s.account) {
        (Some(_), Some(url), _) => {
            return Err(ctx.err_at(
                url,
                "[sink] token_url is for the Talkdesk token request; [sink.auth] replaces it",
            ));
        }
        (Some(_), None, _) => None,
        (None, url, account) => {
            let token_url = match (url, account) {
                (Some(url), _) => url.get_ref().clone(),
                (None, Some(account)) => {
                    let name = account.get_ref();
                    let label = !name.is_empty()
                        && name.len() <= 63
                        && !name.starts_with('-')
                        && !name.ends_with('-')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !label {
                        return Err(ctx.err_at(
                            account,
                            format!("[sink] account {name:?} is not a Talkdesk account name (letters, digits, -)"),
                        ));
                    }
                    format!("https://{}.{sts}/oauth/token", name.to_ascii_lowercase())
                }
                (None, None) => {
                    return Err(ctx.err_at(
                        &s.kind,
                        "[sink] kind = \"talkdesk\" needs account (the name in https://ACCOUNT.mytalkdesk.com), or token_url, or [sink.auth]",
                    ));
                }
            };
            for var in [TALKDESK_CLIENT_ID_ENV, TALKDESK_CLIENT_SECRET_ENV] {
                ctx.env_secret(
                    kind_at.clone(),
                    var,
                    "[sink] kind = \"talkdesk\" (or set [sink.auth])",
                )?;
            }
            let at = s.token_url.as_ref().map_or(kind_at.clone(), Spanned::span);
            Some(Spanned::new(
                at,
                RawAuth::Oauth2 {
                    token_url,
                    client_id_env: TALKDESK_CLIENT_ID_ENV.into(),
                    client_secret_env: TALKDESK_CLIENT_SECRET_ENV.into(),
                    scope: None,
                    client_auth: None,
                    token_prefix: Some(String::new()),
                    token_params: [("token_type".to_owned(), "opaque".to_owned())].into(),
                },
            ))
        }
    };
    let rate_limit = Spanned::new(kind_at, TALKDESK_RATE_LIMIT);
    let raw = RawEndpoint {
        base_url: Some(&base_url),
        auth: auth.as_ref().or(s.auth.as_ref()),
        rate_limit: s.rate_limit.as_ref().or(Some(&rate_limit)),
        ..s.endpoint()
    };
    Endpoint::from_raw("sink", raw, ctx)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::SinkSpec;
    use crate::config::tests::{MINIMAL, parse_str};

    #[test]
    fn sink_file_path_is_relative_to_the_config() {
        let text = format!("{MINIMAL}\n[sink]\nkind = \"file\"\npath = \"agents.csv\"\n");
        let job = parse_str(&text).unwrap();
        match job.sink {
            Some(SinkSpec::File { path }) => {
                assert_eq!(path, Path::new("/etc/agentsync/agents.csv"))
            }
            other => panic!("{other:?}"),
        }
    }
}
