//! `[sink]`: the agent directory that receives external IDs, a SCIM endpoint
//! or a local JSON/CSV file.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ctx::{ConfigError, Ctx};
use super::raw::{RawSink, RawSinkKind};
use super::{EmailAttribute, Endpoint, UpdateMode, relative_to_config};

#[derive(Debug)]
pub(crate) enum SinkSpec {
    Scim {
        endpoint: Box<Endpoint>,
        page_size: usize,
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
            RawSinkKind::Scim => {
                if let Some(p) = &s.path {
                    return Err(ctx.err_at(p, "[sink] path is for kind = \"file\""));
                }
                let Some(endpoint) = Endpoint::from_raw("sink", s.endpoint(), ctx)? else {
                    return Err(ctx.err_at(&s.kind, "[sink] kind = \"scim\" needs base_url"));
                };
                let page_size = match &s.page_size {
                    Some(p) if *p.get_ref() == 0 => {
                        return Err(ctx.err_at(p, "[sink] page_size must be at least 1"));
                    }
                    Some(p) => *p.get_ref(),
                    None => 100,
                };
                Ok(SinkSpec::Scim {
                    endpoint: Box::new(endpoint),
                    page_size,
                    update: s.update.unwrap_or(UpdateMode::Put),
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
