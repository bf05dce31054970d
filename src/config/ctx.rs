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

/// An invalid config: exit code 2, nothing fetched or written. It may carry
/// further errors of the same file (`more`), so that one run shows them all.
#[derive(Debug, Default)]
pub(crate) struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    pub message: String,
    /// The line of the file at `at`, shown with a caret under the column.
    pub source_line: Option<String>,
    /// The other errors found in the same file, in the order they were found.
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    /// This error and the ones it carries, each alone.
    fn into_all(mut self) -> Vec<ConfigError> {
        let more = std::mem::take(&mut self.more);
        let mut all = vec![self];
        all.extend(more.into_iter().flat_map(ConfigError::into_all));
        all
    }

    /// The first of `errors` carrying the others; `None` when there are none.
    pub(super) fn from_all(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut errors = errors.into_iter();
        let mut first = errors.next()?;
        first.more = errors.collect();
        Some(first)
    }

    /// `file:line:col: message` (or `file: message`).
    fn headline(&self) -> String {
        match self.at {
            Some((line, col)) => format!("{}:{line}:{col}: {}", self.file, self.message),
            None => format!("{}: {}", self.file, self.message),
        }
    }

    /// The line of the file and a caret under the column, as rustc shows them.
    fn snippet(&self) -> Option<String> {
        let ((line, col), text) = (self.at?, self.source_line.as_ref()?);
        let text = crate::term::escape(&crate::redact::redact(text)).into_owned();
        let number = line.to_string();
        let gutter = " ".repeat(number.len());
        let pad: String = text
            .chars()
            .take(col.saturating_sub(1))
            .map(|_| ' ')
            .collect();
        Some(format!("{gutter} |\n{number} | {text}\n{gutter} | {pad}^"))
    }

    /// `3 errors in FILE` (`1 error` too: the last line says how many).
    fn count_line(&self) -> String {
        let n = u64::try_from(self.more.len()).map_or(u64::MAX, |n| n.saturating_add(1));
        format!("{} in {}", crate::term::count(n, "error"), self.file)
    }

    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        match self.snippet() {
            Some(snippet) => write!(f, "\n{snippet}"),
            None => Ok(()),
        }
    }
}

impl crate::exit::Invalid for ConfigError {
    /// Print every error on stderr: each headline as an error line of the log
    /// (one JSON line each with `--log-format json`), then in text its line
    /// of the file with a caret.
    fn report(&self, exit_code: u8) {
        for error in std::iter::once(self).chain(&self.more) {
            crate::progress::error(&error.headline(), exit_code);
            if let Some(snippet) = error.snippet() {
                crate::progress::error_detail(&snippet);
            }
        }
        crate::progress::error(&self.count_line(), exit_code);
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for other in &self.more {
            writeln!(f)?;
            other.fmt_one(f)?;
        }
        write!(f, "\n{}", self.count_line())
    }
}

/// The errors of a config gathered part by part, so that one bad key does not
/// hide the next: a part that fails is recorded and the check goes on.
#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    /// The value of `result`, or `None` with its errors recorded.
    pub(super) fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.extend(e.into_all())).ok()
    }

    /// Every error recorded, as one; `what` names the error when none was (a
    /// part that gave nothing must have recorded why).
    pub(super) fn into_error(self, ctx: &Ctx) -> ConfigError {
        ConfigError::from_all(self.0).unwrap_or_else(|| ctx.error(None, "the config is invalid"))
    }

    /// `Err` with every error recorded, if any was.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        ConfigError::from_all(self.0).map_or(Ok(()), Err)
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
        self.error_at_byte(span.map(|s| s.start), message.into())
    }

    fn error_at_byte(&self, offset: Option<usize>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            at: offset.map(|o| line_col(self.text, o)),
            message,
            source_line: offset.map(|o| line_of(self.text, o).to_owned()),
            more: Vec::new(),
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
        self.error_at_byte(Some(self.inside_string(value, offset)), message)
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

    /// The secret in environment variable `var`, which the key `key` of the
    /// table at `table` names (`None`: a preset names it); an error at that
    /// key's value when the variable is not set or is empty. `what` names
    /// the table in the message.
    pub(super) fn env_secret(
        &self,
        table: Range<usize>,
        key: Option<&str>,
        var: &str,
        what: &str,
    ) -> Result<SecretString, ConfigError> {
        match (self.env)(var) {
            Some(v) if !v.is_empty() => {
                redact::register(&v);
                Ok(v.into())
            }
            found => {
                let state = if found.is_some() {
                    "is empty"
                } else {
                    "is not set"
                };
                let at = key.and_then(|k| self.value_of_key(&table, k));
                let what = key.map_or_else(|| what.to_owned(), |k| format!("{what} {k}"));
                Err(self.error(
                    Some(at.unwrap_or(table)),
                    format!("{what}: environment variable {var} {state}"),
                ))
            }
        }
    }

    /// Where the value of `key` is written in the table whose span is
    /// `table` (a `[table]` header, which runs to the next header, or an
    /// inline `{ … }`): the place of an error about that value when it has
    /// no span of its own (serde keeps none inside a tagged enum).
    fn value_of_key(&self, table: &Range<usize>, key: &str) -> Option<Range<usize>> {
        let rest = self.text.get(table.start..)?;
        let next_header = rest
            .get(1..)
            .and_then(|r| r.find("\n["))
            .map_or(rest.len(), |i| i + 1);
        let end = next_header
            .max(table.end.saturating_sub(table.start))
            .min(rest.len());
        let body = rest.get(..end)?;
        let mut from = 0;
        while let Some(i) = body.get(from..)?.find(key) {
            let start = from + i;
            let before = body[..start].trim_end_matches([' ', '\t']);
            let after = body[start + key.len()..].trim_start_matches([' ', '\t']);
            if before.ends_with(['\n', '{', ',']) && after.starts_with('=') {
                let value = after[1..].trim_start_matches([' ', '\t']);
                let offset = table.start + body.len() - value.len();
                return Some(offset..offset + 1);
            }
            from = start + key.len();
        }
        None
    }

    /// The http:// or https:// URL of `key`. The scheme is checked first, so
    /// that every URL without one (`localhost:8787`, `127.0.0.1:8787`) gets
    /// the same answer, whatever the URL parser makes of the rest.
    pub(super) fn url(&self, key: &str, value: &Spanned<String>) -> Result<Url, ConfigError> {
        let text = value.get_ref().trim();
        let has_scheme = |scheme: &str| {
            text.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        };
        if !has_scheme("http://") && !has_scheme("https://") {
            let hint = if text.contains("://") {
                String::new()
            } else {
                format!(" (did you mean \"http://{text}\"?)")
            };
            return Err(self.err_at(
                value,
                format!("{key}: the URL must be http:// or https://{hint}"),
            ));
        }
        let url = Url::parse(text).map_err(|e| {
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

/// The line of `text` that holds byte `offset`, without its line ending.
fn line_of(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text[start..end].trim_end_matches('\r')
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
