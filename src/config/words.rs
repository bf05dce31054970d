//! serde's words for a value of the wrong type or out of range
//! (`invalid type: string "10", expected u64`) said in the file's words:
//! `max_pages must be a whole number, not the string "10"`.

/// `message` from serde about the value at byte `at` of `text`, in plain
/// words naming its key; `None` when it is not about a value's type or range.
pub(super) fn plain(message: &str, text: &str, at: Option<usize>) -> Option<String> {
    let (range, rest) = if let Some(rest) = message.strip_prefix("invalid type: ") {
        (false, rest)
    } else {
        (true, message.strip_prefix("invalid value: ")?)
    };
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let wanted = expected_words(expected, range);
    let key = at.and_then(|at| key_before(text, at));
    let subject = key.map_or_else(|| "the value".to_owned(), str::to_owned);
    let mut said = format!("{subject} must be {wanted}, not {}", found_words(found));
    let unquoted = matches!(
        expected_words(expected, false).as_str(),
        "a whole number" | "a number" | "true or false"
    );
    if found.starts_with("string ") && unquoted {
        said.push_str(" (write it without quotes)");
    }
    Some(said)
}

/// What serde expected, as people say it; `range`: the type was right but
/// the value out of its range.
fn expected_words(expected: &str, range: bool) -> String {
    let max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    match (expected, max) {
        (_, Some(max)) if range => format!("a whole number from 0 to {max}"),
        (_, Some(_)) | ("i8" | "i16" | "i32" | "i64" | "isize", _) => "a whole number".into(),
        ("f32" | "f64", _) => "a number".into(),
        ("a boolean", _) => "true or false".into(),
        ("a sequence", _) => "an array".into(),
        ("a map", _) => "a table".into(),
        (e, _) if e.starts_with("struct ") => "a table".into(),
        (e, _) => e.to_owned(),
    }
}

/// What serde found, as people say it.
fn found_words(found: &str) -> String {
    let unquote = |s: &str| s.trim_matches('`').to_owned();
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    if let Some(n) = found.strip_prefix("integer ") {
        return unquote(n);
    }
    if let Some(n) = found.strip_prefix("floating point ") {
        return unquote(n);
    }
    if let Some(b) = found.strip_prefix("boolean ") {
        return unquote(b);
    }
    match found {
        "sequence" => "an array".into(),
        "map" => "a table".into(),
        other => other.to_owned(),
    }
}

/// The key written before the value at byte `at`: `max_pages` of
/// `max_pages = "10"` (the last part of a dotted key); `None` when the
/// value is not right after a key (an item of an array, say).
fn key_before(text: &str, at: usize) -> Option<&str> {
    let before = text.get(..at)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let line = line.trim_end().strip_suffix('=')?.trim_end();
    let start = line
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &line[start..];
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str, message: &str) -> Option<String> {
        let at = text.rfind("= ").map(|i| i + 2);
        plain(message, text, at)
    }

    #[test]
    fn types_and_ranges_are_said_in_the_files_words() {
        assert_eq!(
            said(
                "max_pages = \"10\"",
                "invalid type: string \"10\", expected u64"
            )
            .as_deref(),
            Some(
                "max_pages must be a whole number, not the string \"10\" (write it without quotes)"
            )
        );
        assert_eq!(
            said(
                "a = { retries = -1 }",
                "invalid value: integer `-1`, expected u32"
            )
            .as_deref(),
            Some("retries must be a whole number from 0 to 4294967295, not -1")
        );
        assert_eq!(
            said(
                "rate_limit = true",
                "invalid type: boolean `true`, expected f64"
            )
            .as_deref(),
            Some("rate_limit must be a number, not true")
        );
        assert_eq!(
            said("query = [1]", "invalid type: sequence, expected a map").as_deref(),
            Some("query must be a table, not an array")
        );
        assert_eq!(
            plain(
                "invalid type: string \"x\", expected a boolean",
                "x = [\"x\"]",
                Some(5)
            )
            .as_deref(),
            Some("the value must be true or false, not the string \"x\" (write it without quotes)")
        );
        assert_eq!(
            said("kind = \"x\"", "unknown variant `x`, expected `a`"),
            None
        );
    }
}
