//! How a command ends, and the contract's exit code for each ending: decided
//! here and nowhere else. Commands return an [`Ending`]; errors that must be
//! told apart by their exit code are typed as [`Error`] and travel inside
//! `anyhow`; every other error is a runtime failure (1).

use std::fmt;
use std::io;

/// How a command that ran to its end ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Nothing failed (0).
    Success,
    /// Applied, but some writes failed (3).
    WritesFailed,
    /// Refused by a safety limit after the plan was printed; nothing written (4).
    Refused(String),
    /// `--dry-run --detailed-exitcode` and the plan has changes (5).
    Changes,
    /// Stopped by a signal (SIGINT 130, SIGTERM 143): the writes in flight
    /// finished, the rest were not started.
    Interrupted(i32),
}

/// The errors whose exit code is not 1.
#[derive(Debug)]
pub(crate) enum Error {
    /// Invalid usage: exit 2, nothing fetched or written.
    Usage(String),
    /// Invalid usage told with a list under it (each malformed line of a
    /// file): exit 2, as [`Error::Usage`].
    Listed(Listed),
    /// Invalid input a module checked (the config): exit 2, told on stderr
    /// by the error itself.
    Invalid(Box<dyn Invalid>),
}

/// An error of invalid input that prints itself on stderr (with the lines it
/// points at, say): the module that checks the input implements it, and
/// [`invalid`] gives it the exit code of invalid usage without this module
/// knowing the type.
pub(crate) trait Invalid: std::error::Error + Send + Sync + 'static {
    /// Tell the error on stderr, the process ending with `exit_code`.
    fn report(&self, exit_code: u8);
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            Error::Listed(listed) => listed.fmt(f),
            Error::Invalid(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

/// Invalid input, ready for `?` (`parse(..).map_err(exit::invalid)?`).
pub(crate) fn invalid(error: impl Invalid) -> anyhow::Error {
    Error::Invalid(Box::new(error)).into()
}

/// A usage error, ready for `?`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Error::Usage(message.into()).into()
}

/// A message and the lines under it. The line breaks between them are
/// agentsync's own and are printed as line breaks; the text of each line
/// (which may quote a file or a server) is escaped on its own, so that a
/// line break inside it still cannot start a line of its own.
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) summary: String,
    pub(crate) lines: Vec<String>,
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        self.lines.iter().try_for_each(|l| write!(f, "\n  {l}"))
    }
}

/// A usage error with lines under its message, ready for `?`.
pub(crate) fn usage_listed(summary: impl Into<String>, lines: Vec<String>) -> anyhow::Error {
    Error::Listed(Listed {
        summary: summary.into(),
        lines,
    })
    .into()
}

/// What an error tells people: its chain joined by `: ` (as `{:#}` does),
/// and apart from it the lines of a [`Listed`] error in the chain, for the
/// printer to put on lines of their own.
pub(crate) fn message(err: &anyhow::Error) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    let parts: Vec<String> = err
        .chain()
        .map(|e| match e.downcast_ref::<Error>() {
            Some(Error::Listed(listed)) if lines.is_empty() => {
                lines.clone_from(&listed.lines);
                listed.summary.clone()
            }
            _ => e.to_string(),
        })
        .collect();
    (parts.join(": "), lines)
}

/// Whether a write of data to stdout reached a reader. A reader that went
/// away (`agentsync history | head -1`) ends the output quietly, as for any
/// filter, and the command's own ending stands: `Ok(false)`. Every write of
/// data to stdout is passed through here. (Rust ignores SIGPIPE, so a closed
/// pipe arrives as this error, never as a signal.)
pub(crate) fn stdout(result: io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// The message a refusal prints on stderr.
pub(crate) fn refusal_message(why: &str) -> String {
    format!("refused: {why}; nothing was written (use --force to apply anyway)")
}

/// The exit code of a command's result: the one place where codes are decided.
pub(crate) fn code(result: &anyhow::Result<Ending>) -> u8 {
    match result {
        Ok(Ending::Success) => 0,
        Ok(Ending::WritesFailed) => 3,
        Ok(Ending::Refused(_)) => 4,
        Ok(Ending::Changes) => 5,
        Ok(Ending::Interrupted(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        Err(err) => {
            if matches!(
                err.downcast_ref::<Error>(),
                Some(Error::Usage(_) | Error::Listed(_) | Error::Invalid(_))
            ) {
                2
            } else {
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_the_contract_code() {
        assert_eq!(code(&Ok(Ending::Success)), 0);
        assert_eq!(code(&Ok(Ending::WritesFailed)), 3);
        assert_eq!(code(&Ok(Ending::Refused("x".into()))), 4);
        assert_eq!(code(&Ok(Ending::Changes)), 5);
        assert_eq!(code(&Ok(Ending::Interrupted(2))), 130);
        assert_eq!(code(&Ok(Ending::Interrupted(15))), 143);
        assert_eq!(code(&Err(usage("bad flag"))), 2);
        assert_eq!(code(&Err(anyhow::anyhow!("network down"))), 1);
        let wrapped = Err(usage("bad").context("while loading"));
        assert_eq!(code(&wrapped), 2, "the type survives added context");
    }

    #[derive(Debug)]
    struct BadInput;

    impl fmt::Display for BadInput {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("line 3: bad input")
        }
    }

    impl std::error::Error for BadInput {}

    impl Invalid for BadInput {
        fn report(&self, _: u8) {}
    }

    #[test]
    fn invalid_input_ends_as_usage_and_keeps_its_message() {
        let err = invalid(BadInput);
        assert_eq!(format!("{err:#}"), "line 3: bad input");
        assert_eq!(code(&Err(err)), 2);
        let wrapped = Err(invalid(BadInput).context("while loading"));
        assert_eq!(code(&wrapped), 2, "the kind survives added context");
    }

    #[test]
    fn listed_lines_stay_apart_from_the_message_under_any_context() {
        let err = usage_listed("2 bad lines", vec!["a: line 1".into(), "a: line 2".into()])
            .context("action \"punch\"");
        assert_eq!(code(&Err(usage("x"))), 2);
        let (summary, lines) = message(&err);
        assert_eq!(summary, "action \"punch\": 2 bad lines");
        assert_eq!(lines, ["a: line 1", "a: line 2"]);
        assert_eq!(
            format!("{err:#}"),
            "action \"punch\": 2 bad lines\n  a: line 1\n  a: line 2"
        );
        assert_eq!(code(&Err(err)), 2);
        let plain = anyhow::anyhow!("one\ntwo").context("ctx");
        assert_eq!(message(&plain), ("ctx: one\ntwo".to_owned(), vec![]));
    }

    #[test]
    fn a_closed_stdout_is_no_error() {
        assert!(stdout(Ok(())).unwrap());
        let closed = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(!stdout(Err(closed)).unwrap());
        let full = io::Error::other("disk full");
        assert_eq!(code(&stdout(Err(full)).map(|_| Ending::Success)), 1);
    }
}
