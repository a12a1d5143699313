//! Keeps every reason on one line: paths and names from the file system or from a
//! plugin may hold newlines or terminal control characters.

use std::{fmt::Write, path::Path};

/// `path` for a one-line message: control characters escaped, non-UTF-8 bytes
/// replaced.
pub(crate) fn shown(path: &Path) -> String {
    one_line_escaped(&path.to_string_lossy())
}

/// Raw bytes (e.g. a pin file line) for a one-line message.
pub(crate) fn shown_bytes(bytes: &[u8]) -> String {
    one_line_escaped(&String::from_utf8_lossy(bytes))
}

/// `text` with control characters escaped (`\n`, `\u{1b}`...).
pub(crate) fn one_line_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Collapses runs of whitespace (including newlines) into single spaces.
pub(crate) fn one_line(text: &str) -> String {
    one_line_escaped(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown(Path::new("/a/b\nc\u{1b}.so")), "/a/b\\nc\\u{1b}.so");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
