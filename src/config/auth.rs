//! An endpoint's `[….auth]`: the credentials read from the environment, and
//! the key files of the JWT bearer grant read and checked, before any request.

use std::ops::Range;

use secrecy::ExposeSecret;
use toml::Spanned;

use super::ctx::{ConfigError, Ctx};
use super::raw::{ClientAuth, Grant, RawAuth};
use crate::http::{self, Auth, JwtBearer, OAuth2, SigningKey};
use crate::redact;

/// The largest key file read: a service-account key is about 2.4 KB.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The credentials of table `key`, read from the environment.
pub(super) fn auth_from_raw(
    key: &str,
    raw: &Spanned<RawAuth>,
    ctx: &Ctx,
) -> Result<Auth, ConfigError> {
    let at = raw.span();
    Ok(match raw.get_ref() {
        RawAuth::Bearer { token_env } => {
            let token = ctx.env_secret(at.clone(), Some("token_env"), token_env, key)?;
            header_safe(key, token_env, token.expose_secret(), at, ctx)?;
            Auth::Bearer(token)
        }
        RawAuth::Basic {
            username_env,
            password_env,
        } => {
            let username = ctx.env_secret(at.clone(), Some("username_env"), username_env, key)?;
            let password = match password_env {
                Some(var) => ctx.env_secret(at, Some("password_env"), var, key)?,
                None => String::new().into(),
            };
            redact::register_basic(username.expose_secret(), password.expose_secret());
            Auth::Basic {
                username: username.expose_secret().to_owned(),
                password,
            }
        }
        RawAuth::Header { name, value_env } => {
            if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ctx.error(
                    Some(at),
                    format!("{key}: {name:?} is not a valid header name"),
                ));
            }
            let value = ctx.env_secret(at.clone(), Some("value_env"), value_env, key)?;
            header_safe(key, value_env, value.expose_secret(), at, ctx)?;
            Auth::Header {
                name: name.clone(),
                value,
            }
        }
        RawAuth::Oauth2 { .. } => Auth::OAuth2(Box::new(oauth2(key, raw, ctx)?)),
    })
}

/// A secret from the environment that goes into a header: a line break or
/// another control character in it is a config error naming the variable.
fn header_safe(
    key: &str,
    var: &str,
    value: &str,
    at: Range<usize>,
    ctx: &Ctx,
) -> Result<(), ConfigError> {
    match http::header_value_flaw(value) {
        Some(flaw) => Err(ctx.error(
            Some(at),
            format!("{key}: environment variable {var} holds {flaw}, which cannot go into an HTTP header"),
        )),
        None => Ok(()),
    }
}

fn oauth2(key: &str, raw: &Spanned<RawAuth>, ctx: &Ctx) -> Result<OAuth2, ConfigError> {
    let at = raw.span();
    let RawAuth::Oauth2 {
        grant,
        token_url,
        client_id_env,
        client_secret_env,
        scope,
        client_auth,
        token_prefix,
        token_params,
        service_account_file,
        private_key_file,
        issuer,
        subject,
        audience,
    } = raw.get_ref()
    else {
        unreachable!("called for oauth2 only");
    };
    let err = |message: String| ctx.error(Some(at.clone()), format!("{key}: {message}"));
    let grant = grant.unwrap_or(Grant::ClientCredentials);
    // The grant's own fields are agentsync's to send.
    let own: &[&str] = match grant {
        Grant::ClientCredentials => &["grant_type", "client_id", "client_secret", "scope"],
        Grant::JwtBearer => &["grant_type", "assertion", "scope"],
    };
    if let Some(name) = token_params.keys().find(|k| own.contains(&k.as_str())) {
        return Err(err(format!(
            "token_params.{name} is set by agentsync, not here"
        )));
    }
    let token_prefix = token_prefix.clone().unwrap_or_else(|| "Bearer".into());
    if token_prefix.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(err(
            "token_prefix must be one word, like \"Bearer\", or \"\"".to_owned(),
        ));
    }
    let url = |value: &str| {
        ctx.url(
            &format!("{key}.token_url"),
            &Spanned::new(at.clone(), value.to_owned()),
        )
    };
    let (token_url, grant) = match grant {
        Grant::ClientCredentials => {
            let jwt_keys = [
                ("service_account_file", service_account_file.is_some()),
                ("private_key_file", private_key_file.is_some()),
                ("issuer", issuer.is_some()),
                ("subject", subject.is_some()),
                ("audience", audience.is_some()),
            ];
            if let Some((name, _)) = jwt_keys.iter().find(|(_, set)| *set) {
                return Err(err(format!(
                    "{name} is for grant = \"jwt_bearer\"; this is the client_credentials grant"
                )));
            }
            let (Some(token_url), Some(id_env), Some(secret_env)) =
                (token_url, client_id_env, client_secret_env)
            else {
                return Err(err(
                    "the client_credentials grant needs token_url, client_id_env and client_secret_env"
                        .to_owned(),
                ));
            };
            let token_url = url(token_url)?;
            let client_id = ctx.env_secret(at.clone(), Some("client_id_env"), id_env, key)?;
            let client_secret =
                ctx.env_secret(at.clone(), Some("client_secret_env"), secret_env, key)?;
            // The client's Basic header holds both form-encoded (RFC 6749 §2.3.1).
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            redact::register_basic(
                &enc(client_id.expose_secret()),
                &enc(client_secret.expose_secret()),
            );
            (
                token_url,
                http::Grant::ClientCredentials {
                    client_id: client_id.expose_secret().to_owned(),
                    client_secret,
                    basic_client_auth: !matches!(client_auth, Some(ClientAuth::Body)),
                },
            )
        }
        Grant::JwtBearer => {
            let cc_keys = [
                ("client_id_env", client_id_env.is_some()),
                ("client_secret_env", client_secret_env.is_some()),
                ("client_auth", client_auth.is_some()),
            ];
            if let Some((name, _)) = cc_keys.iter().find(|(_, set)| *set) {
                return Err(err(format!(
                    "{name} is for the client_credentials grant; grant = \"jwt_bearer\" signs with a key file"
                )));
            }
            let read =
                |name: &str, file: &str| read_key_file(&format!("{key}.{name}"), file, ctx, &at);
            match (service_account_file, private_key_file) {
                (Some(file), None) => {
                    let text = read("service_account_file", file)?;
                    let account = ServiceAccount::parse(&text)
                        .map_err(|why| err(format!("service_account_file {file}: {why}")))?;
                    let signing =
                        SigningKey::from_pem(account.private_key.as_bytes()).map_err(|why| {
                            err(format!(
                                "service_account_file {file}: its private_key {why}"
                            ))
                        })?;
                    let token_url = url(token_url.as_deref().unwrap_or(&account.token_uri))?;
                    let jwt = JwtBearer {
                        key: signing,
                        issuer: issuer.clone().unwrap_or(account.client_email),
                        subject: subject.clone(),
                        audience: audience
                            .clone()
                            .unwrap_or_else(|| token_url.as_str().to_owned()),
                        key_id: account.private_key_id,
                        scope_in_claims: true,
                    };
                    (token_url, http::Grant::JwtBearer(Box::new(jwt)))
                }
                (None, Some(file)) => {
                    let (Some(token_url), Some(issuer), Some(audience)) =
                        (token_url, issuer, audience)
                    else {
                        return Err(err(
                            "grant = \"jwt_bearer\" with private_key_file needs token_url, issuer and audience"
                                .to_owned(),
                        ));
                    };
                    let pem = read("private_key_file", file)?;
                    let signing = SigningKey::from_pem(pem.as_bytes())
                        .map_err(|why| err(format!("private_key_file {file} {why}")))?;
                    let jwt = JwtBearer {
                        key: signing,
                        issuer: issuer.clone(),
                        subject: subject.clone(),
                        audience: audience.clone(),
                        key_id: None,
                        scope_in_claims: false,
                    };
                    (url(token_url)?, http::Grant::JwtBearer(Box::new(jwt)))
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        "service_account_file and private_key_file: give one of them".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err(err(
                        "grant = \"jwt_bearer\" needs service_account_file (a Google service-account key), or private_key_file with issuer and audience"
                            .to_owned(),
                    ));
                }
            }
        }
    };
    Ok(OAuth2 {
        token_url,
        grant,
        scope: scope.clone(),
        token_prefix,
        token_params: token_params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// A key file's text (relative to the config), bounded; the error names the
/// file and never shows its content.
fn read_key_file(
    key: &str,
    file: &str,
    ctx: &Ctx,
    at: &Range<usize>,
) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let path = super::relative_to_config(ctx.path(), file);
    let fail = |why: String| {
        ctx.error(
            Some(at.clone()),
            format!("{key}: cannot read {}: {why}", path.display()),
        )
    };
    let handle = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    handle
        .take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(fail(format!(
            "larger than {} KiB, not a key file",
            MAX_KEY_FILE / 1024
        )));
    }
    Ok(text)
}

/// The fields of a Google service-account key that the grant uses.
struct ServiceAccount {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: String,
}

impl ServiceAccount {
    /// The key's fields; the error names what is missing, never a value.
    fn parse(text: &str) -> Result<Self, String> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "is not JSON (line {}, column {}): a Google service-account key is the JSON file the console gives",
                e.line(),
                e.column()
            )
        })?;
        let field = |name: &str| json.get(name).and_then(serde_json::Value::as_str);
        let need = |name: &str| {
            field(name)
                .map(str::to_owned)
                .ok_or_else(|| format!("has no {name:?} (a string): not a service-account key"))
        };
        let private_key = need("private_key")?;
        redact::register(&private_key);
        Ok(ServiceAccount {
            client_email: need("client_email")?,
            private_key,
            private_key_id: field("private_key_id").map(str::to_owned),
            token_uri: need("token_uri")?,
        })
    }
}
