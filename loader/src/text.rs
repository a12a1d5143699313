//! Keeps every reason on one line: paths and names from the file system or from a
//! plugin may hold newlines or terminal control characters.
//!
//! One helper per job:
//!
//! - [`printable`]: text that is already a `str`, escaped so it shows as one line;
//! - [`shown`]: raw bytes from the file system or a file (a path, a pin file line),
//!   decoded lossily, then [`printable`];
//! - [`one_line`]: a multi-line message (an error from a library or the dynamic
//!   linker), its whitespace runs collapsed, then [`printable`].
#![forbid(unsafe_code)]

use std::{
    ffi::OsStr,
    fmt::Write,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// Raw bytes that [`shown`] makes printable: paths, OS strings and byte strings.
pub(crate) trait Raw {
    /// The bytes as stored (not necessarily UTF-8).
    fn raw_bytes(&self) -> &[u8];
}

impl Raw for Path {
    fn raw_bytes(&self) -> &[u8] {
        self.as_os_str().as_bytes()
    }
}

impl Raw for PathBuf {
    fn raw_bytes(&self) -> &[u8] {
        self.as_os_str().as_bytes()
    }
}

impl Raw for OsStr {
    fn raw_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Raw for [u8] {
    fn raw_bytes(&self) -> &[u8] {
        self
    }
}

impl Raw for Vec<u8> {
    fn raw_bytes(&self) -> &[u8] {
        self
    }
}

/// `raw` (a path, a file name, a line of a file) for a one-line message: non-UTF-8
/// bytes replaced, then control characters escaped as by [`printable`].
pub(crate) fn shown(raw: &(impl Raw + ?Sized)) -> String {
    printable(&String::from_utf8_lossy(raw.raw_bytes()))
}

/// `text` with every control character (ESC, newline, tab, DEL, C1 controls ...)
/// and every invisible Unicode format or separator character (bidi overrides and
/// isolates such as U+202E, zero-width characters U+200B..U+200F, U+2028/U+2029,
/// U+FEFF, soft hyphen ...) escaped (`\n`, `\u{1b}`, `\u{202e}`...), so it shows as
/// one line, reads in the order it is stored, and cannot drive a terminal. Every
/// string a plugin or the file system chose goes through it before it is shown.
///
/// ```
/// assert_eq!(provtarget_loader::printable("Acme\x1b[31m\nEvil"), "Acme\\u{1b}[31m\\nEvil");
/// assert_eq!(provtarget_loader::printable("abc\u{202e}fed"), "abc\\u{202e}fed");
/// ```
pub fn printable(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is a control character or an invisible format/separator character
/// (Unicode general categories Cc, Cf, Zl and Zp), which a terminal would act on or
/// hide instead of showing.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// `text` on one line: runs of whitespace (including newlines) collapsed into single
/// spaces, then escaped as by [`printable`].
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
        assert_eq!(shown(&b"pin\xff\x1b"[..]), "pin\u{fffd}\\u{1b}");
        assert_eq!(shown(OsStr::new("a\tb")), "a\\tb");
    }

    #[test]
    fn unicode_format_characters_are_escaped() {
        for (c, shown) in [
            ('\u{202e}', "\\u{202e}"),
            ('\u{200b}', "\\u{200b}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{2028}', "\\u{2028}"),
        ] {
            assert_eq!(printable(&format!("a{c}b")), format!("a{shown}b"));
        }
        assert_eq!(printable("plain ünïcode 日本"), "plain ünïcode 日本");
    }
}
