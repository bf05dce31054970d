//! `[listen]` and its `[[listen.on]]` routes: where `agentsync listen`
//! receives agent events, how a sender proves them, which action each runs,
//! and where its queue lives. Secrets and the public key are named here and
//! read when the listener starts, so that a sync of the same config needs none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ActionSpec;
use super::ctx::{ConfigError, Ctx, Errors};
use super::raw_listen::{RawListen, RawListenAuth, RawRoute};
use super::relative_to_config;
use crate::mapping::Jq;
use crate::state;

/// How a sender proves an event is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAuth {
    /// Standard Webhooks: HMAC-SHA256 with the secret in `secret_env`.
    StandardWebhooks { secret_env: String },
    /// An ECDSA P-256 signature of the raw body in `signature_header`.
    EcdsaP256 {
        public_key_file: PathBuf,
        signature_header: String,
    },
    /// The secret in `secret_env`, sent as is in `header`.
    Header { header: String, secret_env: String },
}

impl ListenAuth {
    /// The name as written in the file.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ListenAuth::StandardWebhooks { .. } => "standard-webhooks",
            ListenAuth::EcdsaP256 { .. } => "ecdsa-p256",
            ListenAuth::Header { .. } => "header",
        }
    }
}

/// One route: the events `when` takes run `action` with `vars`.
#[derive(Debug)]
pub(crate) struct Route {
    pub when: Option<Jq>,
    pub action: String,
    pub vars: BTreeMap<String, String>,
}

/// `[listen]`, checked.
#[derive(Debug)]
pub(crate) struct ListenSpec {
    pub addr: String,
    pub path: String,
    pub auth: ListenAuth,
    pub tolerance: Duration,
    pub id: Jq,
    pub email: Jq,
    pub routes: Vec<Route>,
    pub max_delivery: Duration,
    pub refresh: Duration,
    pub workers: usize,
    /// The durable queue; `None` without a state directory.
    pub queue: Option<PathBuf>,
    /// One listener per config.
    pub lock: Option<PathBuf>,
}

/// The default `[listen] addr`.
const DEFAULT_ADDR: &str = "127.0.0.1:8788";
/// The default signature header of `ecdsa-p256`.
const DEFAULT_SIGNATURE_HEADER: &str = "X-Hub-Ecdsa-Signature";

impl ListenSpec {
    /// `[listen]` of the config at `config_path`, whose routes must name
    /// one of `actions` and set every `{{var.K}}` it uses.
    pub(super) fn from_raw(
        raw: &Spanned<RawListen>,
        actions: &BTreeMap<String, ActionSpec>,
        config_path: &Path,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        let l = raw.get_ref();
        let mut errors = Errors::default();
        let addr = errors.keep(match &l.addr {
            Some(a) => check_addr(a.get_ref())
                .map(|()| a.get_ref().trim().to_owned())
                .map_err(|why| ctx.err_at(a, format!("[listen] addr: {why}"))),
            None => Ok(DEFAULT_ADDR.to_owned()),
        });
        let path = errors.keep(match &l.path {
            Some(p) => check_path(p.get_ref())
                .map(|()| p.get_ref().clone())
                .map_err(|why| ctx.err_at(p, format!("[listen] path: {why}"))),
            None => Ok("/events".to_owned()),
        });
        let auth = errors.keep(auth(l, config_path, ctx));
        let id = errors.keep(match &l.id {
            Some(jq) => ctx.jq("[listen] id", jq),
            None => Ok(Jq::compile(".id").expect("the default id compiles")),
        });
        let email = errors.keep(match &l.email {
            Some(jq) => ctx.jq("[listen] email", jq),
            None => Ok(Jq::compile(".data.user_email").expect("the default email compiles")),
        });
        let max_delivery = errors.keep(match &l.max_delivery_hours {
            Some(h)
                if !(h.get_ref().is_finite() && *h.get_ref() > 0.0 && *h.get_ref() <= 8760.0) =>
            {
                Err(ctx.err_at(
                    h,
                    "[listen] max_delivery_hours must be above 0 and at most 8760",
                ))
            }
            Some(h) => Ok(Duration::from_secs_f64(h.get_ref() * 3600.0)),
            None => Ok(Duration::from_secs(24 * 3600)),
        });
        let refresh = errors.keep(
            super::endpoint::bounded(
                "[listen] refresh_secs",
                l.refresh_secs.as_ref(),
                1..=86_400,
                ctx,
            )
            .map(|s| Duration::from_secs(s.unwrap_or(300))),
        );
        let tolerance = errors.keep(
            super::endpoint::bounded(
                "[listen] tolerance_secs",
                l.tolerance_secs.as_ref(),
                1..=86_400,
                ctx,
            )
            .map(|t| Duration::from_secs(t.unwrap_or(300))),
        );
        // Deliveries wait on the network, not the CPU: a shift change of
        // 2 000 logins against a time clock answering in 20 ms needs more
        // than 8 in flight to be punched within 5 s (docs/performance.md).
        let workers = errors.keep(
            super::endpoint::bounded("[listen] workers", l.workers.as_ref(), 1..=256, ctx)
                .map(|w| w.unwrap_or(32)),
        );
        let routes: Vec<_> =
            l.on.iter()
                .enumerate()
                .filter_map(|(i, r)| errors.keep(route(i, r, actions, ctx)))
                .collect();
        if l.on.is_empty() {
            errors.keep::<()>(Err(ctx.err_at(
                raw,
                "[listen] has no route: add a [[listen.on]] with the action to run",
            )));
        }
        let (Some(addr), Some(path), Some(auth), Some(id), Some(email)) =
            (addr, path, auth, id, email)
        else {
            return Err(errors.into_error(ctx));
        };
        let (Some(max_delivery), Some(refresh), Some(workers), Some(tolerance)) =
            (max_delivery, refresh, workers, tolerance)
        else {
            return Err(errors.into_error(ctx));
        };
        errors.finish()?;
        let state_dir = state::state_dir(ctx.env());
        let stem = state::JobKey::of(config_path, state_dir.as_deref()).name;
        Ok(ListenSpec {
            addr,
            path,
            auth,
            tolerance,
            id,
            email,
            routes,
            max_delivery,
            refresh,
            workers,
            queue: state_dir
                .as_ref()
                .map(|d| d.join(format!("{stem}.listen.sqlite"))),
            lock: state_dir.map(|d| d.join(format!("{stem}.listen.lock"))),
        })
    }
}

/// `HOST:PORT` with an IP address.
pub(crate) fn check_addr(addr: &str) -> Result<(), String> {
    addr.trim()
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{addr:?} is not IP:PORT (e.g. 127.0.0.1:8788 or 0.0.0.0:8788)"))
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err("must be a path starting with / (no query)");
    }
    if matches!(path, "/healthz" | "/metrics") {
        return Err("/healthz and /metrics are the listener's own");
    }
    Ok(())
}

fn auth(l: &RawListen, config_path: &Path, ctx: &Ctx) -> Result<ListenAuth, ConfigError> {
    let kind = &l.auth;
    let needs = |key: &str, value: &Option<Spanned<String>>| match value {
        Some(v) if !v.get_ref().trim().is_empty() => Ok(v.get_ref().trim().to_owned()),
        _ => Err(ctx.err_at(
            kind,
            format!(
                "[listen] auth = {:?} needs {key}",
                match kind.get_ref() {
                    RawListenAuth::StandardWebhooks => "standard-webhooks",
                    RawListenAuth::EcdsaP256 => "ecdsa-p256",
                    RawListenAuth::Header => "header",
                }
            ),
        )),
    };
    // A key of another kind is a mistake worth naming, not a silent no-op.
    let stray = |key: &str, value: Option<&Spanned<String>>| match value {
        Some(v) => Err(ctx.err_at(v, format!("[listen] {key} does not go with this auth"))),
        None => Ok(()),
    };
    match kind.get_ref() {
        RawListenAuth::StandardWebhooks => {
            stray("header", l.header.as_ref())?;
            stray("public_key_file", l.public_key_file.as_ref())?;
            stray("signature_header", l.signature_header.as_ref())?;
            Ok(ListenAuth::StandardWebhooks {
                secret_env: needs("secret_env", &l.secret_env)?,
            })
        }
        RawListenAuth::Header => {
            stray("public_key_file", l.public_key_file.as_ref())?;
            stray("signature_header", l.signature_header.as_ref())?;
            let header = needs("header", &l.header)?;
            if let (Err(_), Some(h)) = (
                ureq::http::HeaderName::from_bytes(header.as_bytes()),
                &l.header,
            ) {
                return Err(ctx.err_at(
                    h,
                    format!("[listen] header: {header:?} is not a header name"),
                ));
            }
            Ok(ListenAuth::Header {
                header,
                secret_env: needs("secret_env", &l.secret_env)?,
            })
        }
        RawListenAuth::EcdsaP256 => {
            stray("secret_env", l.secret_env.as_ref())?;
            stray("header", l.header.as_ref())?;
            let file = needs("public_key_file", &l.public_key_file)?;
            Ok(ListenAuth::EcdsaP256 {
                public_key_file: relative_to_config(config_path, &file),
                signature_header: l
                    .signature_header
                    .as_ref()
                    .map_or(DEFAULT_SIGNATURE_HEADER, |h| h.get_ref().trim())
                    .to_owned(),
            })
        }
    }
}

/// Route `i` of `[[listen.on]]`.
fn route(
    i: usize,
    raw: &Spanned<RawRoute>,
    actions: &BTreeMap<String, ActionSpec>,
    ctx: &Ctx,
) -> Result<Route, ConfigError> {
    let r = raw.get_ref();
    let key = format!("[[listen.on]] #{}", i + 1);
    let when = r
        .when
        .as_ref()
        .map(|w| ctx.jq(&format!("{key} when"), w))
        .transpose()?;
    let name = r.action.get_ref();
    let Some(action) = actions.get(name) else {
        let declared: Vec<_> = actions.keys().map(String::as_str).collect();
        return Err(ctx.err_at(
            &r.action,
            format!(
                "{key} action: no [actions.{name}] is declared (declared: {})",
                if declared.is_empty() {
                    "none".into()
                } else {
                    declared.join(", ")
                }
            ),
        ));
    };
    let mut missing: Vec<&str> = action.vars().filter(|k| !r.vars.contains_key(*k)).collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|k| format!("{{{{var.{k}}}}}")).collect();
        return Err(ctx.err_at(
            raw,
            format!(
                "{key}: action {name:?} uses {} which this route does not set: add vars = {{ {} = \"…\" }}",
                names.join(", "),
                missing[0]
            ),
        ));
    }
    Ok(Route {
        when,
        action: name.clone(),
        vars: r.vars.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::ListenAuth;
    use crate::config::tests::{MINIMAL, parse_str};

    const ACTION: &str = "\n[actions.punch]\npath = \"/users/{{external_id}}\"\nbody = '{\"e\": \"{{var.event}}\"}'\n";

    fn listen(table: &str) -> String {
        format!(
            "{MINIMAL}{ACTION}\n[listen]\n{table}\n[[listen.on]]\naction = \"punch\"\nvars = {{ event = \"x\" }}\n"
        )
    }

    #[test]
    fn defaults_and_each_auth() {
        let job = parse_str(&listen("auth = \"standard-webhooks\"\nsecret_env = \"S\"")).unwrap();
        let l = job.listen.unwrap();
        assert_eq!(
            (l.addr.as_str(), l.path.as_str()),
            ("127.0.0.1:8788", "/events")
        );
        assert_eq!(
            (l.id.source(), l.email.source()),
            (".id", ".data.user_email")
        );
        assert_eq!(l.tolerance.as_secs(), 300);
        assert_eq!(l.max_delivery.as_secs(), 24 * 3600);
        assert_eq!((l.refresh.as_secs(), l.workers), (300, 32));
        assert!(l.routes[0].when.is_none());
        let job = parse_str(&listen(
            "auth = \"ecdsa-p256\"\npublic_key_file = \"keys/td.pem\"",
        ))
        .unwrap();
        assert_eq!(
            job.listen.unwrap().auth,
            ListenAuth::EcdsaP256 {
                public_key_file: "/etc/agentsync/keys/td.pem".into(),
                signature_header: "X-Hub-Ecdsa-Signature".into(),
            }
        );
    }

    #[test]
    fn mistakes_are_named_at_their_place() {
        for (table, expected) in [
            ("auth = \"hmac\"", "unknown variant `hmac`"),
            ("auth = \"standard-webhooks\"", "needs secret_env"),
            ("auth = \"header\"\nsecret_env = \"S\"", "needs header"),
            (
                "auth = \"standard-webhooks\"\nsecret_env = \"S\"\npublic_key_file = \"k.pem\"",
                "public_key_file does not go with this auth",
            ),
            (
                "auth = \"standard-webhooks\"\nsecret_env = \"S\"\naddr = \"localhost\"",
                "is not IP:PORT",
            ),
            (
                "auth = \"standard-webhooks\"\nsecret_env = \"S\"\npath = \"/metrics\"",
                "the listener's own",
            ),
            (
                "auth = \"standard-webhooks\"\nsecret_env = \"S\"\nworkers = 0",
                "workers must be between 1 and 256",
            ),
            (
                "auth = \"standard-webhooks\"\nsecret_env = \"S\"\nid = '.id |'",
                "[listen] id: invalid jq",
            ),
        ] {
            let err = parse_str(&listen(table)).unwrap_err().to_string();
            assert!(err.contains(expected), "{table}: {err}");
            assert!(err.contains("t.toml:"), "{err}");
        }
    }
}
