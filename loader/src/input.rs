//! Reading a small input file (configuration, provisioning JWT, pin file) without
//! ever blocking or reading without bound.
//!
//! The file is opened with `O_NONBLOCK | O_NOCTTY | O_CLOEXEC` (a FIFO opens at once
//! instead of waiting for a writer, a terminal never becomes the controlling one),
//! judged by `fstat` of that very descriptor (only a regular file is read: a FIFO,
//! socket, device such as `/dev/zero` or directory is refused), refused if it is
//! larger than the caller's bound, and then read with that bound even if it grows
//! meanwhile. Symlinks are followed, as for any configuration file: a configuration
//! management tool may well link `/etc/choria/server.conf`.
//!
//! ```
//! use provtarget_loader::{read_bounded, InputError};
//!
//! // A device is refused from its type, before a single byte is read.
//! let err = read_bounded(std::path::Path::new("/dev/zero"), 1024).unwrap_err();
//! assert_eq!(err.to_string(), "is a character device, not a regular file");
//! // A missing file is its own case: callers often treat it as "not configured".
//! let err = read_bounded(std::path::Path::new("/nonexistent/x.conf"), 1024).unwrap_err();
//! assert!(matches!(err, InputError::NotFound));
//! ```
#![forbid(unsafe_code)]

use std::{
    fmt,
    fs::Metadata,
    io::{self, Read},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use crate::{sys, text::shown, trust};

/// Why [`read_bounded`] read nothing. Its text (`Display`) is the part of a one-line
/// message that follows the file's name, e.g. `is a FIFO (named pipe), not a regular
/// file`; the caller adds what the file is and the fix.
#[derive(Debug)]
pub enum InputError {
    /// The path does not exist (`ENOENT`).
    NotFound,
    /// The path exists but is not a regular file.
    NotRegular {
        /// What it is instead: `a FIFO (named pipe)`, `a socket`, `a character
        /// device`, `a block device`, `a directory`.
        kind: &'static str,
    },
    /// The path is the null device (`/dev/null` or a link to it). It is not a regular
    /// file, but it reads as empty and is the usual way to say "no file", so callers
    /// may take it as an empty one.
    NullDevice,
    /// The file is larger than the bound.
    TooLarge {
        /// Its size, or at least how much of it was seen (it may have grown).
        size: u64,
        /// The bound.
        max: u64,
    },
    /// Opening or reading failed for another reason (permissions, I/O error).
    Io(io::Error),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::NotFound => f.write_str("does not exist"),
            InputError::NotRegular { kind } => write!(f, "is {kind}, not a regular file"),
            InputError::NullDevice => f.write_str("is the null device, not a regular file"),
            InputError::TooLarge { size, max } => {
                write!(f, "is {size} bytes, more than the limit of {max} bytes")
            }
            InputError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl std::error::Error for InputError {}

/// A file [`read_bounded`] read: its bytes and the metadata of the descriptor they
/// were read from (owner, mode: for trust warnings that must not race a rename).
#[derive(Debug)]
pub struct InputFile {
    /// The whole content (at most the bound).
    pub bytes: Vec<u8>,
    /// `fstat` of the descriptor the bytes came from.
    pub metadata: Metadata,
}

/// Reads the regular file at `path`, at most `max` bytes, without blocking on a FIFO
/// or reading a device: opened with `O_NONBLOCK`, judged by `fstat` of that very
/// descriptor (only a regular file is read), refused when larger than `max`, and read
/// with that bound even if it grows meanwhile.
pub fn read_bounded(path: &Path, max: u64) -> Result<InputFile, InputError> {
    let file = sys::open_config_file(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => InputError::NotFound,
        // A socket cannot be opened at all (ENXIO): say what it is.
        _ if e.raw_os_error() == Some(sys::Errno::NXIO.raw_os_error()) => InputError::NotRegular {
            kind: "a socket or a device without a reader",
        },
        _ => InputError::Io(e),
    })?;
    let metadata = file.metadata().map_err(InputError::Io)?;
    let t = metadata.file_type();
    if t.is_char_device() && is_null_device(metadata.rdev()) {
        return Err(InputError::NullDevice);
    }
    if !t.is_file() {
        let kind = special_file_kind(t).unwrap_or("not a plain file");
        return Err(InputError::NotRegular { kind });
    }
    if metadata.len() > max {
        return Err(InputError::TooLarge {
            size: metadata.len(),
            max,
        });
    }
    // The size may be 0 (`/proc` files) or grow after the `fstat`: read with the bound.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Io)?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(InputFile { bytes, metadata })
}

/// What a file of type `t` that is not a regular file is ("a directory", "a FIFO
/// (named pipe)"...), for one-line refusals; `None` for a type it has no name for.
pub(crate) fn special_file_kind(t: std::fs::FileType) -> Option<&'static str> {
    Some(if t.is_dir() {
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
        return None;
    })
}

/// Whether `rdev` is Linux's null device (character device 1:3).
fn is_null_device(rdev: u64) -> bool {
    rustix::fs::major(rdev) == 1 && rustix::fs::minor(rdev) == 3
}

/// One-line warnings when the input file at `path`, read as `metadata` (from
/// [`read_bounded`]), could have been written by someone other than root or the user
/// running this process: its owner, its mode, and its directory (owned by another
/// user, or group- or world-writable without the sticky bit, so anyone could replace
/// the file). `what` names the file (`configuration file`) and `stakes` says why it
/// matters (`it decides where plugins are loaded from`). Empty when all is well.
pub fn trust_warnings(path: &Path, metadata: &Metadata, what: &str, stakes: &str) -> Vec<String> {
    let euid = sys::effective_uid();
    let p = shown(path);
    let mut warnings = Vec::new();
    if let Some((_, problem)) = trust::owner_mode_problem(metadata, path, what, euid) {
        warnings.push(format!("{problem}; this matters because {stakes}"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::metadata(dir) {
        let shown_dir = shown(dir);
        let (uid, mode) = (d.uid(), d.mode() & 0o7777);
        if uid != 0 && uid != euid {
            warnings.push(format!(
                "{what} {p} is in directory {shown_dir} owned by uid {uid}, who could replace it; chown root {shown_dir}; this matters because {stakes}"
            ));
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            warnings.push(format!(
                "{what} {p} is in directory {shown_dir} (mode {mode:04o}) that others can write to, so they could replace it; chmod go-w {shown_dir}; this matters because {stakes}"
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_fifos_are_refused_without_blocking() {
        let tmp = provtarget_testsupport::TempDir::new("input");
        let dir = tmp.path().to_path_buf();
        let fifo = tmp.fifo("fifo");
        // No writer: a blocking open would wait forever.
        assert_eq!(
            read_bounded(&fifo, 10).unwrap_err().to_string(),
            "is a FIFO (named pipe), not a regular file"
        );
        assert_eq!(
            read_bounded(&dir, 10).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 10),
            Err(InputError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/null"), 10),
            Err(InputError::NullDevice)
        ));
        let file = dir.join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_bounded(&file, 10).unwrap().bytes, b"0123456789");
        assert_eq!(
            read_bounded(&file, 9).unwrap_err().to_string(),
            "is 10 bytes, more than the limit of 9 bytes"
        );
    }

    #[test]
    fn foreign_owners_and_open_directories_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("provtarget-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("server.conf");
        std::fs::write(&file, "a = b\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let read = read_bounded(&file, 100).unwrap();
        assert!(trust_warnings(&file, &read.metadata, "configuration file", "x").is_empty());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let read = read_bounded(&file, 100).unwrap();
        let w = trust_warnings(&file, &read.metadata, "configuration file", "it matters");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("world-writable") && w[0].ends_with("; this matters because it matters"),
            "{w:?}"
        );
        assert!(
            w[1].contains("(mode 0777) that others can write to"),
            "{w:?}"
        );
        // The sticky bit (as on /tmp) stops others replacing the file.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let w = trust_warnings(&file, &read.metadata, "configuration file", "x");
        assert_eq!(w.len(), 1, "{w:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
