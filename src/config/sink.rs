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
        /// Users per listing page; `None`: the directory's largest.
        page_size: Option<usize>,
        /// Where the directory's `/ServiceProviderConfig` answer is kept
        /// between runs (the state directory); `None` without one.
        directory_cache: Option<PathBuf>,
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
                let page_size = super::endpoint::bounded(
                    "[sink] page_size",
                    s.page_size.as_ref(),
                    1..=10_000,
                    ctx,
                )?;
                let max_pages = super::endpoint::bounded(
                    "[sink] max_pages",
                    s.max_pages.as_ref(),
                    1..=10_000_000,
                    ctx,
                )?
                .unwrap_or(10_000);
                let default_update = if talkdesk {
                    UpdateMode::Put
                } else {
                    UpdateMode::Auto
                };
                Ok(SinkSpec::Scim {
                    endpoint: Box::new(endpoint),
                    page_size,
                    // Set beside the journal once [sync] is read.
                    directory_cache: None,
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
                    None,
                    var,
                    "[sink] kind = \"talkdesk\" (or set [sink.auth])",
                )?;
            }
            let at = s.token_url.as_ref().map_or(kind_at.clone(), Spanned::span);
            Some(Spanned::new(
                at,
                RawAuth::Oauth2 {
                    grant: None,
                    token_url: Some(token_url),
                    client_id_env: Some(TALKDESK_CLIENT_ID_ENV.into()),
                    client_secret_env: Some(TALKDESK_CLIENT_SECRET_ENV.into()),
                    scope: None,
                    client_auth: None,
                    token_prefix: Some(String::new()),
                    token_params: [("token_type".to_owned(), "opaque".to_owned())].into(),
                    service_account_file: None,
                    private_key_file: None,
                    issuer: None,
                    subject: None,
                    audience: None,
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
    use crate::config::{Job, UpdateMode, parse};
    use crate::http::Auth;

    fn talkdesk(sink: &str) -> Result<Job, crate::config::ConfigError> {
        let text = format!("{MINIMAL}\n[sink]\nkind = \"talkdesk\"\n{sink}\n");
        let env = |name: &str| match name {
            "TALKDESK_CLIENT_ID" => Some("cid".to_owned()),
            "TALKDESK_CLIENT_SECRET" => Some("csecret".to_owned()),
            _ => None,
        };
        parse(&text, Path::new("/etc/agentsync/t.toml"), &env)
    }

    #[test]
    fn the_talkdesk_preset_fills_urls_token_request_and_limits() {
        let job = talkdesk("account = \"Acme\"\nregion = \"eu\"").unwrap();
        let Some(SinkSpec::Scim {
            endpoint,
            update,
            page_size,
            ..
        }) = job.sink
        else {
            panic!("not SCIM");
        };
        assert_eq!(
            endpoint.base_url.as_str(),
            "https://api.talkdeskapp.eu/scim/v2"
        );
        assert_eq!(endpoint.settings.rate_limit, 4.0);
        assert_eq!((update, page_size), (UpdateMode::Put, None));
        let Some(Auth::OAuth2(oauth)) = &endpoint.auth else {
            panic!("not oauth2");
        };
        assert_eq!(
            oauth.token_url.as_str(),
            "https://acme.talkdeskid.eu/oauth/token"
        );
        let crate::http::Grant::ClientCredentials {
            client_id,
            basic_client_auth,
            ..
        } = &oauth.grant
        else {
            panic!("not client credentials");
        };
        assert_eq!(client_id, "cid");
        assert!(basic_client_auth);
        assert_eq!(oauth.token_prefix, "");
        assert_eq!(
            oauth.token_params,
            [("token_type".to_owned(), "opaque".to_owned())]
        );
    }

    #[test]
    fn the_talkdesk_preset_takes_overrides_and_refuses_what_does_not_fit() {
        let job = talkdesk(
            "base_url = \"http://127.0.0.1:9/scim/v2\"\ntoken_url = \"http://127.0.0.1:9/oauth/token\"\nrate_limit = 2\nupdate = \"patch\"",
        )
        .unwrap();
        let Some(SinkSpec::Scim {
            endpoint, update, ..
        }) = job.sink
        else {
            panic!("not SCIM");
        };
        assert_eq!(endpoint.base_url.as_str(), "http://127.0.0.1:9/scim/v2");
        assert_eq!(endpoint.settings.rate_limit, 2.0);
        assert_eq!(update, UpdateMode::Patch);
        for (sink, says) in [
            ("", "needs account"),
            ("account = \"a.b\"", "not a Talkdesk account name"),
            ("account = \"a\"\nregion = \"mars\"", "unknown variant"),
        ] {
            let err = talkdesk(sink).unwrap_err();
            assert!(err.message.contains(says), "{sink}: {err}");
        }
        let scim = format!(
            "{MINIMAL}\n[sink]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:9\"\naccount = \"a\"\n"
        );
        assert!(
            parse_str(&scim)
                .unwrap_err()
                .message
                .contains("for kind = \"talkdesk\"")
        );
    }

    #[test]
    fn oauth2_token_params_may_not_replace_the_grant() {
        let text = MINIMAL.replace(
            "records = \".users\"",
            "records = \".users\"\nauth = { kind = \"oauth2\", token_url = \"http://127.0.0.1:9/t\", client_id_env = \"TOKEN\", client_secret_env = \"TOKEN\", token_params = { grant_type = \"password\" } }",
        );
        let err = parse_str(&text).unwrap_err();
        assert!(
            err.message.contains("grant_type is set by agentsync"),
            "{err}"
        );
    }

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
