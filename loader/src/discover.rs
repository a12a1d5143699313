//! Discovery: which entries of a plugin directory are candidate libraries, in a
//! deterministic order.
#![forbid(unsafe_code)]

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::ffi::OsStrExt,
};

use crate::directory::Dir;

/// The suffixes of plugin libraries on this platform.
#[cfg(target_os = "macos")]
pub(crate) const SUFFIXES: &[&str] = &[".dylib", ".so"];
/// The suffixes of plugin libraries on this platform.
#[cfg(not(target_os = "macos"))]
pub(crate) const SUFFIXES: &[&str] = &[".so"];

/// The names in `dir`, sorted by their bytes (not recursive; `.` and `..` excluded).
pub(crate) fn list(dir: &Dir) -> io::Result<Vec<OsString>> {
    // On Linux, list the very directory whose descriptor was opened (and judged).
    #[cfg(target_os = "linux")]
    let listed = {
        use std::os::unix::io::AsRawFd;
        std::fs::read_dir(format!("/proc/self/fd/{}", dir.file.as_raw_fd()))
    };
    #[cfg(not(target_os = "linux"))]
    let listed = std::fs::read_dir(&dir.path);
    let mut names = Vec::new();
    for entry in listed? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Whether this is Linux without a usable `/proc` (listing and loading go through
/// `/proc/self/fd`, so nothing can load).
pub(crate) fn proc_missing() -> bool {
    cfg!(target_os = "linux") && !std::path::Path::new("/proc/self/fd").is_dir()
}

/// Whether a directory entry named `name` is one the loader considers (not hidden, a
/// library file name); every other entry is skipped unread.
pub fn is_candidate_name(name: &OsStr) -> bool {
    !is_hidden(name) && is_library_name(name)
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".")
}

fn is_library_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    SUFFIXES
        .iter()
        .any(|suffix| bytes.len() > suffix.len() && bytes.ends_with(suffix.as_bytes()))
}

/// Whether `name` is the detached signature of a candidate library
/// (`libacme.so.minisig`): read with that library, not reported on its own.
pub(crate) fn is_signature_name(name: &OsStr) -> bool {
    name.as_bytes()
        .strip_suffix(crate::SIGNATURE_SUFFIX.as_bytes())
        .is_some_and(|library| {
            let library = OsStr::from_bytes(library);
            !is_hidden(library) && is_library_name(library)
        })
}

/// `None` if `name` is a candidate library ([`is_candidate_name`]), else why it is
/// skipped.
pub(crate) fn skip_reason(name: &OsStr) -> Option<String> {
    if is_hidden(name) {
        return Some("hidden file (its name starts with '.'); not considered".into());
    }
    if is_library_name(name) {
        return None;
    }
    // Composed once: a directory may hold thousands of other files.
    static NOT_A_LIBRARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = NOT_A_LIBRARY.get_or_init(|| {
        format!(
            "not a plugin library (only {} files are loaded)",
            SUFFIXES
                .iter()
                .map(|s| format!("*{s}"))
                .collect::<Vec<_>>()
                .join(" and ")
        )
    });
    Some(text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_platform_suffixes_and_no_dotfiles() {
        assert_eq!(skip_reason(OsStr::new("libacme.so")), None);
        assert!(skip_reason(OsStr::new(".libacme.so"))
            .unwrap()
            .contains("hidden"));
        assert!(skip_reason(OsStr::new(".so")).is_some());
        assert!(skip_reason(OsStr::new("libacme.so.1"))
            .unwrap()
            .contains("*.so"));
        assert!(skip_reason(OsStr::new("README")).is_some());
        assert!(is_signature_name(OsStr::new("libacme.so.minisig")));
        assert!(!is_signature_name(OsStr::new(".libacme.so.minisig")));
        assert!(!is_signature_name(OsStr::new("notes.minisig")));
    }
}
