//! Keeps every reason on one line: paths and names from the file system or from a
//! plugin may hold newlines or terminal control characters.
#![forbid(unsafe_code)]

use std::{fmt::Write, path::Path};

/// `path` for a one-line message: control characters escaped, non-UTF-8 bytes
/// replaced.
pub(crate) fn shown(path: &Path) -> String {
    printable(&path.to_string_lossy())
}

/// Raw bytes (e.g. a pin file line) for a one-line message.
pub(crate) fn shown_bytes(bytes: &[u8]) -> String {
    printable(&String::from_utf8_lossy(bytes))
}

/// `text` with every control character (ESC, newline, tab, DEL, C1 controls ...)
/// escaped (`\n`, `\u{1b}`...), so it shows as one line and cannot drive a terminal.
/// Every string a plugin or the file system chose goes through it before it is shown.
///
/// ```
/// assert_eq!(provtarget_loader::printable("Acme\x1b[31m\nEvil"), "Acme\\u{1b}[31m\\nEvil");
/// ```
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
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
    printable(&text.split_whitespace().collect::<Vec<_>>().join(" "))
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
