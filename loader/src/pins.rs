//! SHA-256 pinning: a pin file in `sha256sum` format lists the only library builds
//! allowed to load, matched by file name.
//!
//! Accepted lines (what `sha256sum` and `sha256sum --tag` print):
//! - `<64 hex digits>  <name>` (text mode) or `<64 hex digits> *<name>` (binary mode);
//! - `\<64 hex digits>  <escaped name>`, where `sha256sum` escaped `\` and newline;
//! - `SHA256 (<name>) = <64 hex digits>`;
//! - blank lines and lines starting with `#`.
//!
//! `<name>` may be a path (`sha256sum /usr/lib/choria/provtarget/*.so > pins`): only
//! its last component is used. The parser is strict: any other line makes the whole
//! pin file unusable, and then no library loads, because a pin file that silently
//! skipped a typo would pin less than its author thinks. A name pinned on several
//! lines with different hashes (say, a vendor appended the new build's line on
//! upgrade) is ambiguous: that library is refused, naming the lines, and the others
//! load.
#![forbid(unsafe_code)]

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::{input::InputError, text::shown, trust, RefusalKind};

/// A pin file larger than this is refused (a real one has a line per plugin).
const MAX_PIN_FILE: u64 = 1 << 20;

/// A parsed pin file.
#[derive(Debug)]
pub(crate) struct Pins {
    path: PathBuf,
    /// File name → its distinct pins: (lower-case hex SHA-256, first line number), in
    /// file order. More than one means the pin file contradicts itself for that name.
    by_name: HashMap<OsString, Vec<(String, usize)>>,
}

impl Pins {
    /// Reads and parses the pin file at `path`. Unless `skip_owner_checks`, the file
    /// must pass the same owner/mode rule as a plugin: a pin file others can write
    /// pins nothing.
    pub(crate) fn load(path: &Path, euid: u32, skip_owner_checks: bool) -> Result<Pins, String> {
        let p = shown(path);
        // Opened without blocking (a FIFO cannot stall start-up), judged by fstat of
        // that descriptor, and read with a bound (a device cannot exhaust memory).
        let input = crate::input::read_bounded(path, MAX_PIN_FILE).map_err(|e| match e {
            InputError::NotFound => {
                format!("cannot open pin file {p}: {e}; fix the pin_file setting")
            }
            InputError::NotRegular { .. } | InputError::NullDevice => {
                format!("pin file {p} {e}; point pin_file at a sha256sum listing")
            }
            InputError::TooLarge { .. } => {
                format!("pin file {p} {e}; is it really a sha256sum listing?")
            }
            InputError::Io(_) => format!("pin file {p} {e}; check its permissions"),
        })?;
        if !skip_owner_checks {
            if let Some((_, problem)) =
                trust::owner_mode_problem(&input.metadata, path, "pin file", euid)
            {
                return Err(problem);
            }
        }
        let bytes = input.bytes;
        Self::parse(path, &bytes)
    }

    /// Parses pin file contents; `path` is for messages.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Pins, String> {
        let p = shown(path);
        let mut by_name: HashMap<OsString, Vec<(String, usize)>> = HashMap::new();
        // Read like the configuration file: a UTF-8 byte-order mark (an editor's) is
        // not part of the first line, and trailing blanks are not part of a name.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = trim_ascii_end(line);
            let trimmed = trim_ascii(line);
            if trimmed.is_empty() || trimmed.starts_with(b"#") {
                continue;
            }
            let (hash, name) = parse_line(line).ok_or_else(|| {
                format!(
                    "pin file {p} line {number} is not in sha256sum format \
                     (`<64 hex digits>  <file name>`): `{}`; fix or remove that line",
                    shown(&line[..line.len().min(100)])
                )
            })?;
            let file_name = Path::new(OsStr::from_bytes(&name))
                .file_name()
                .map(OsStr::to_os_string)
                .ok_or_else(|| {
                    format!(
                        "pin file {p} line {number} names no file (`{}`); fix or remove that line",
                        shown(&name)
                    )
                })?;
            let pins = by_name.entry(file_name).or_default();
            if !pins.iter().any(|(earlier, _)| *earlier == hash) {
                pins.push((hash, number));
            }
        }
        Ok(Pins {
            path: path.to_path_buf(),
            by_name,
        })
    }

    /// Whether the library `name` (at `path`, for messages) with content hash
    /// `actual` is pinned; else the one-line refusal and its kind.
    pub(crate) fn check(
        &self,
        path: &Path,
        name: &OsStr,
        actual: &str,
    ) -> Result<(), (RefusalKind, String)> {
        let p = shown(path);
        let pin_file = shown(&self.path);
        match self.by_name.get(name).map(Vec::as_slice) {
            None | Some([]) => Err((
                RefusalKind::PinMissing,
                format!(
                    "{p} is not pinned in {pin_file}; add: {actual}  {}",
                    shown(Path::new(name))
                ),
            )),
            Some([(expected, _)]) if expected == actual => Ok(()),
            Some([(expected, line)]) => Err((
                RefusalKind::PinMismatch,
                format!(
                    "{p} has sha256 {actual} but {pin_file} line {line} pins {expected}; \
                     install the pinned build or update the pin"
                ),
            )),
            Some(pins) => {
                let lines = pins
                    .iter()
                    .map(|(hash, line)| format!("line {line}: {hash}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err((
                    RefusalKind::PinConflict,
                    format!(
                        "{p} not loaded: {pin_file} pins {} with different hashes ({lines}); \
                         keep one line per file (this file has sha256 {actual})",
                        shown(Path::new(name))
                    ),
                ))
            }
        }
    }
}

/// `line` without its trailing spaces and tabs.
fn trim_ascii_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// `(lower-case hash, raw name bytes)` from one non-blank, non-comment line.
fn parse_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    if let Some(rest) = line.strip_prefix(b"SHA256 (") {
        // BSD / `sha256sum --tag` style: `SHA256 (name) = hash`.
        let split = rest.windows(4).rposition(|w| w == b") = ")?;
        let name = &rest[..split];
        let hash = hex_hash(&rest[split + 4..])?;
        return (!name.is_empty()).then(|| (hash, name.to_vec()));
    }
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let hash = hex_hash(line.get(..64)?)?;
    let rest = line.get(64..)?;
    // Exactly one space, then a space (text mode) or `*` (binary mode).
    let name = match rest {
        [b' ', b' ' | b'*', name @ ..] if !name.is_empty() => name,
        _ => return None,
    };
    let name = if escaped {
        unescape(name)?
    } else {
        name.to_vec()
    };
    Some((hash, name))
}

fn hex_hash(bytes: &[u8]) -> Option<String> {
    (bytes.len() == 64 && bytes.iter().all(u8::is_ascii_hexdigit))
        .then(|| String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

/// Undoes `sha256sum`'s escaping of names holding `\`, newline or carriage return.
fn unescape(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next()? {
            b'\\' => b'\\',
            b'n' => b'\n',
            b'r' => b'\r',
            _ => return None,
        });
    }
    Some(out)
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn parse(text: &str) -> Result<Pins, String> {
        Pins::parse(Path::new("/etc/pins"), text.as_bytes())
    }

    fn check(pins: &Pins, name: &str, hash: &str) -> Result<(), String> {
        pins.check(Path::new(name), OsStr::new(name), hash)
            .map_err(|(_, reason)| reason)
    }

    fn kind(pins: &Pins, name: &str, hash: &str) -> Option<RefusalKind> {
        pins.check(Path::new(name), OsStr::new(name), hash)
            .err()
            .map(|(kind, _)| kind)
    }

    #[test]
    fn a_byte_order_mark_and_trailing_blanks_are_read_like_the_config_file() {
        let text = format!("\u{feff}{A}  liba.so\n{B}  libb.so  \t\nSHA256 (libc.so) = {A}  \n");
        let pins = parse(&text).unwrap();
        assert_eq!(check(&pins, "liba.so", A), Ok(()));
        assert_eq!(check(&pins, "libb.so", B), Ok(()));
        assert_eq!(check(&pins, "libc.so", A), Ok(()));
        // A mismatch names the pinned line, never "add: <the same line>".
        let e = check(&pins, "libb.so", A).unwrap_err();
        assert!(e.contains("line 2 pins"), "{e}");
    }

    #[test]
    fn reads_text_binary_tagged_and_escaped_lines() {
        let upper = A.to_ascii_uppercase();
        let text = format!(
            "# pins\n\n{A}  liba.so\n{B} */usr/lib/choria/provtarget/libb.so\r\n\
             SHA256 (libc.so) = {A}\n\\{B}  lib\\\\d.so\n{upper}  libe.so\n"
        );
        let pins = parse(&text).unwrap();
        assert_eq!(check(&pins, "liba.so", A), Ok(()));
        assert_eq!(check(&pins, "libb.so", B), Ok(()));
        assert_eq!(check(&pins, "libc.so", A), Ok(()));
        assert_eq!(check(&pins, "lib\\d.so", B), Ok(()));
        assert_eq!(check(&pins, "libe.so", A), Ok(()));
    }

    #[test]
    fn unpinned_and_mismatch_name_the_fix() {
        let pins = parse(&format!("{A}  liba.so\n")).unwrap();
        let err = check(&pins, "other.so", B).unwrap_err();
        assert!(err.contains("not pinned in /etc/pins; add: "), "{err}");
        assert!(err.contains(&format!("{B}  other.so")), "{err}");
        assert_eq!(kind(&pins, "other.so", B), Some(RefusalKind::PinMissing));
        assert_eq!(kind(&pins, "liba.so", B), Some(RefusalKind::PinMismatch));
        let err = check(&pins, "liba.so", B).unwrap_err();
        assert!(
            err.contains(A) && err.contains(B) && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        for bad in [
            "not a hash  x.so",
            &format!("{A} x.so"),
            &format!("{A}  "),
            &format!("{}  x.so", &A[..63]),
            &format!("\\{A}  bad\\escape.so"),
            "SHA256 () = 00",
        ] {
            let err = parse(&format!("{B}  ok.so\n{bad}\n")).unwrap_err();
            assert!(err.contains("line 2"), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn conflicting_pins_refuse_that_name_only() {
        let pins = parse(&format!("{A}  a/x.so\n{B}  b/x.so\n{A}  y.so\n{A}  x.so\n")).unwrap();
        for actual in [A, B] {
            let err = check(&pins, "x.so", actual).unwrap_err();
            assert!(
                err.contains(&format!("line 1: {A}, line 2: {B}"))
                    && err.contains("keep one line per file"),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        assert_eq!(kind(&pins, "x.so", A), Some(RefusalKind::PinConflict));
        assert_eq!(check(&pins, "y.so", A), Ok(()));
        // The same hash twice is no conflict.
        let pins = parse(&format!("{A}  a/x.so\n{A}  b/x.so\n")).unwrap();
        assert_eq!(check(&pins, "x.so", A), Ok(()));
    }

    #[test]
    fn a_fifo_device_or_huge_pin_file_is_refused_at_once() {
        let tmp = provtarget_testsupport::TempDir::new("pins");
        let dir = tmp.path().to_path_buf();
        let fifo = tmp.fifo("pins.fifo");
        // Without a writer a blocking open would never return.
        let err = Pins::load(&fifo, 0, true).unwrap_err();
        assert!(
            err.contains("is a FIFO (named pipe), not a regular file; point pin_file at"),
            "{err}"
        );
        let err = Pins::load(Path::new("/dev/zero"), 0, true).unwrap_err();
        assert!(err.contains("/dev/zero is a character device"), "{err}");
        let big = dir.join("pins.big");
        std::fs::write(&big, vec![b'#'; MAX_PIN_FILE as usize + 1]).unwrap();
        let err = Pins::load(&big, 0, true).unwrap_err();
        assert!(
            err.contains("more than the limit of 1048576 bytes"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
