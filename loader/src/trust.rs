//! Trust: the rules a plugin file and its directory must pass, judged by the *open
//! descriptor* (`fstat`), never by a path that could be swapped between the check and
//! the load.
//!
//! The rules (ARCHITECTURE.md §5, trust model): a plugin is a regular file, opened without following a
//! symlink or blocking; it and its directory are owned by root or by the effective
//! uid of this process, and are neither group- nor world-writable. The developer
//! override skips the owner/mode rule only; the file-type and symlink rules always
//! apply.
#![forbid(unsafe_code)]

use std::{
    ffi::OsStr,
    fs::{File, Metadata},
    os::unix::fs::MetadataExt,
    path::Path,
};

use crate::{
    directory::Dir,
    sys::{self, Errno},
    text::shown,
    Refusal, RefusalKind, Stage,
};

/// Opens `name` inside `dir` (see [`sys::open_in_dir`]): a symlink fails with `ELOOP`
/// instead of being followed, and a FIFO opens at once instead of blocking.
pub(crate) fn open_in(dir: &Dir, name: &OsStr, path: &Path) -> Result<File, Refusal> {
    sys::open_in_dir(&dir.file, name).map_err(|e| {
        let p = shown(path);
        match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::LOOP) => Refusal::new(
                Stage::Trust,
                RefusalKind::Symlink,
                format!(
                    "{p} is a symlink; plugins must be regular files: replace the link with \
                     the file it points to"
                ),
            ),
            Some(Errno::NXIO) => Refusal::new(
                Stage::Trust,
                RefusalKind::NotRegularFile,
                format!("{p} is a socket or device, not a regular file; remove it"),
            ),
            _ => Refusal::new(
                Stage::Open,
                RefusalKind::Unreadable,
                format!("cannot open {p}: {e}; check its permissions"),
            ),
        }
    })
}

/// The file-type rule: `None` for a regular file, else why not, naming the fix.
pub(crate) fn file_type_problem(meta: &Metadata, path: &Path) -> Option<Refusal> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    let what = crate::input::special_file_kind(t).unwrap_or("not a regular file");
    Some(Refusal::new(
        Stage::Trust,
        RefusalKind::NotRegularFile,
        format!(
            "{} is {what}, not a regular file; remove or rename it",
            shown(path)
        ),
    ))
}

/// The owner/mode rule for a file or directory: `None` when `meta` is owned by root or
/// `euid` and is neither group- nor world-writable; else why, naming the fix. `what`
/// introduces the path ("plugin directory", "pin file", or "" for a plugin).
pub(crate) fn owner_mode_problem(
    meta: &Metadata,
    path: &Path,
    what: &str,
    euid: u32,
) -> Option<(RefusalKind, String)> {
    let p = shown(path);
    let subject = if what.is_empty() {
        p.clone()
    } else {
        format!("{what} {p}")
    };
    let uid = meta.uid();
    if uid != 0 && uid != euid {
        let trusted = if euid == 0 {
            "root".to_string()
        } else {
            format!("root or uid {euid} (the user running provtarget)")
        };
        return Some((
            RefusalKind::BadOwner,
            format!(
                "{subject} is owned by uid {uid}, but only {trusted} may own it; chown root {p}"
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    let (group, world) = (mode & 0o020 != 0, mode & 0o002 != 0);
    let (which, flags) = match (group, world) {
        (false, false) => return None,
        (true, false) => ("group-writable", "g-w"),
        (false, true) => ("world-writable", "o-w"),
        (true, true) => ("group- and world-writable", "go-w"),
    };
    Some((
        RefusalKind::WritableByOthers,
        format!(
            "{subject} is {which} (mode {mode:04o}), so others could replace it; chmod {flags} {p}"
        ),
    ))
}
