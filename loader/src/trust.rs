//! Trust: open plugin files and their directory without following symlinks or
//! blocking, and judge them by the *open descriptor* (`fstat`), never by a path that
//! could be swapped between the check and the load.
//!
//! The rules (DESIGN.md §5): a plugin is a regular file; it and its directory are
//! owned by root or by the effective uid of this process, and are neither group- nor
//! world-writable. The developer override skips the owner/mode rule only; the
//! file-type and symlink rules always apply.

use std::{
    ffi::OsStr,
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use crate::text::shown;

/// An open, not yet judged, plugin directory.
pub(crate) struct Dir {
    /// The directory as configured (for messages).
    pub(crate) path: PathBuf,
    /// Opened with `O_DIRECTORY | O_NOFOLLOW`; files are opened relative to it.
    pub(crate) file: File,
}

/// Why a directory could not be used at all.
pub(crate) enum DirError {
    /// It does not exist: not an error (the host runs its built-in resolver).
    Missing,
    /// It exists but cannot be used.
    Unusable {
        /// One line, naming it and the fix.
        reason: String,
        /// Whether the trust rule refused it (a symlink) rather than an error.
        untrusted: bool,
    },
}

/// Opens a plugin directory without following a symlink in its last component.
pub(crate) fn open_dir(path: &Path) -> Result<Dir, DirError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    match opened {
        Ok(file) => Ok(Dir {
            path: path.to_path_buf(),
            file,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DirError::Missing),
        Err(e) => {
            let p = shown(path);
            let is_link = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            let reason = if is_link {
                format!(
                    "plugin directory {p} is a symlink; configure the directory it points \
                     to instead"
                )
            } else if e.raw_os_error() == Some(libc::ENOTDIR) {
                format!("plugin directory {p} is not a directory; fix the configured path")
            } else {
                format!("cannot open plugin directory {p}: {e}; check its permissions")
            };
            Err(DirError::Unusable {
                reason,
                untrusted: is_link,
            })
        }
    }
}

/// The effective uid of this process: the only owner besides root we trust.
pub(crate) fn effective_uid() -> u32 {
    sys::effective_uid()
}

/// Why a plugin file could not be opened; already phrased for the report.
pub(crate) enum OpenFailure {
    /// The file-type rule refused it (a symlink, a socket...): a trust failure.
    Untrusted(String),
    /// Any other error opening it.
    Failed(String),
}

/// Opens `name` inside `dir` with `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY`:
/// a symlink fails with `ELOOP` instead of being followed, and a FIFO opens at once
/// instead of blocking until a writer appears.
pub(crate) fn open_in(dir: &Dir, name: &OsStr, path: &Path) -> Result<File, OpenFailure> {
    sys::open_in_dir(&dir.file, name).map_err(|e| {
        let p = shown(path);
        match e.raw_os_error() {
            Some(libc::ELOOP) => OpenFailure::Untrusted(format!(
                "{p} is a symlink; plugins must be regular files: replace the link with \
                 the file it points to"
            )),
            Some(libc::ENXIO) => OpenFailure::Untrusted(format!(
                "{p} is a socket or device, not a regular file; remove it"
            )),
            _ => OpenFailure::Failed(format!("cannot open {p}: {e}; check its permissions")),
        }
    })
}

/// The file-type rule: `None` for a regular file, else why not, naming the fix.
pub(crate) fn file_type_problem(meta: &Metadata, path: &Path) -> Option<String> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    };
    Some(format!(
        "{} is {what}, not a regular file; remove or rename it",
        shown(path)
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
) -> Option<String> {
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
        return Some(format!(
            "{subject} is owned by uid {uid}, but only {trusted} may own it; chown root {p}"
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
    Some(format!(
        "{subject} is {which} (mode {mode:04o}), so others could replace it; chmod {flags} {p}"
    ))
}

/// The only code in the loader, besides the `dlopen` call itself, that needs `unsafe`:
/// two libc calls that std does not offer.
#[allow(unsafe_code)]
mod sys {
    use std::{
        ffi::{CString, OsStr},
        fs::File,
        io,
        os::unix::{
            ffi::OsStrExt,
            io::{AsRawFd, FromRawFd},
        },
    };

    pub(super) fn effective_uid() -> u32 {
        // SAFETY: geteuid takes no arguments, touches no memory of ours and cannot
        // fail (POSIX).
        unsafe { libc::geteuid() }
    }

    /// `openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)`.
    ///
    /// Relative to the directory descriptor that was judged, so the file opened is in
    /// the very directory that passed the trust rule, even if a path component is
    /// renamed meanwhile.
    pub(super) fn open_in_dir(dir: &File, name: &OsStr) -> io::Result<File> {
        let name = CString::new(name.as_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "file name contains a NUL byte")
        })?;
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        // SAFETY: `dir` is borrowed, so its descriptor stays open for the call; `name`
        // is a NUL-terminated string that outlives the call. Without O_CREAT, openat
        // reads no mode argument.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by a successful openat; nothing else owns it,
        // so the File becomes its sole owner and closes it exactly once.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}
