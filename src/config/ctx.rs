//! The context every config part is checked in: the file's text and name for
//! placing an error at its line and column, and the environment secrets come from.

use std::fmt;
use std::ops::Range;

use secrecy::SecretString;
use toml::Spanned;
use url::Url;

use crate::mapping::Jq;
use crate::redact;
use crate::template::{EnvLookup, Scope, Template};

/// An invalid config: exit code 2, nothing fetched or written.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

pub(super) struct Ctx<'a> {
    text: &'a str,
    file: String,
    env: EnvLookup<'a>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(text: &'a str, file: String, env: EnvLookup<'a>) -> Self {
        Ctx { text, file, env }
    }

    /// The config file's path, for paths written relative to it.
    pub(super) fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.file)
    }

    /// The environment the config is read in.
    pub(super) fn env(&self) -> EnvLookup<'a> {
        self.env
    }

    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: span.map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }

    pub(super) fn err_at<T>(
        &self,
        spanned: &Spanned<T>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(Some(spanned.span()), message)
    }

    /// The byte position in the file of `offset` inside a TOML string value.
    fn inside_string(&self, value: &Spanned<String>, offset: usize) -> usize {
        let start = value.span().start;
        let raw = &self.text[start..value.span().end];
        let mut opening = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        if opening == 3 && raw[3..].starts_with('\n') {
            opening += 1;
        }
        // Exact for literal strings and basic strings without escapes.
        (start + opening + offset).min(value.span().end)
    }

    /// An error at `offset` inside the string `value`.
    fn err_inside(&self, value: &Spanned<String>, offset: usize, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: Some(line_col(self.text, self.inside_string(value, offset))),
            message,
        }
    }

    pub(super) fn jq(&self, key: &str, value: &Spanned<String>) -> Result<Jq, ConfigError> {
        Jq::compile(value.get_ref()).map_err(|e| {
            let message = format!(
                "{key}: invalid jq at character {} of `{}`: {}",
                e.offset + 1,
                value.get_ref(),
                e.message
            );
            self.err_inside(value, e.offset, message)
        })
    }

    pub(super) fn template(
        &self,
        key: &str,
        value: &Spanned<String>,
        scope: Scope,
    ) -> Result<Template, ConfigError> {
        Template::parse(value.get_ref(), scope, self.env)
            .map_err(|e| self.err_inside(value, e.offset, format!("{key}: {}", e.message)))
    }

    /// The secret in environment variable `var`, named by `what` when missing.
    pub(super) fn env_secret(
        &self,
        at: Range<usize>,
        var: &str,
        what: &str,
    ) -> Result<SecretString, ConfigError> {
        match (self.env)(var) {
            Some(v) if !v.is_empty() => {
                redact::register(&v);
                Ok(v.into())
            }
            _ => Err(self.error(
                Some(at),
                format!("{what}: environment variable {var} is not set"),
            )),
        }
    }

    pub(super) fn url(&self, key: &str, value: &Spanned<String>) -> Result<Url, ConfigError> {
        let url = Url::parse(value.get_ref().trim()).map_err(|e| {
            self.err_at(
                value,
                format!("{key}: invalid URL {:?}: {e}", value.get_ref()),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.err_at(value, format!("{key}: the URL must be http:// or https://")));
        }
        Ok(url)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        assert_eq!(line_col("ab\ncé d", 0), (1, 1));
        assert_eq!(line_col("ab\ncé d", 3), (2, 1));
        assert_eq!(line_col("ab\ncé d", "ab\ncé".len()), (2, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
