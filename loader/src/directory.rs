//! Plugin directories: what a configured path names, and opening it so that no
//! spelling of the path can follow a symlink in its last component.
//!
//! A path is judged by its *last component*. `O_NOFOLLOW` only covers the last
//! component the kernel sees, and `dir/`, `dir/.` and `dir//` all end past the
//! directory's own name, so opening them as spelled follows a symlinked `dir`. So the
//! path is first normalised lexically, only in ways that never change what it names:
//! repeated slashes, trailing slashes and `.` components are dropped. Then its parent
//! is opened (following symlinks, like every parent: see "What is not checked" in the
//! crate docs) and its last component is opened relative to that parent with
//! `O_DIRECTORY | O_NOFOLLOW`.
//!
//! `..` is *not* folded lexically (`a/../dir` is not always `dir`: when `a` is a
//! symlink the kernel resolves `..` from its target), so a `..` in the middle is left
//! to the kernel like any parent, and the last component, `dir`, still gets
//! `O_NOFOLLOW`. A path whose last component is `..` names no directory by its own
//! name and is refused. A relative plugin directory is refused by [`load_all`]
//! (what it names would depend on the directory the host was started from), while
//! [`check_file`] accepts a relative file path, as any command-line argument.
//!
//! [`load_all`]: crate::load_all
//! [`check_file`]: crate::check_file
#![forbid(unsafe_code)]

use std::{
    ffi::OsString,
    fs::File,
    io,
    path::{Component, Path, PathBuf},
};

use crate::{
    sys::{self, Errno},
    text::shown,
    RefusalKind,
};

/// An open, not yet judged, plugin directory.
pub(crate) struct Dir {
    /// The directory, normalised (see the module docs): for messages and for the
    /// paths of the files in it.
    pub(crate) path: PathBuf,
    /// Opened with `O_DIRECTORY | O_NOFOLLOW` on its last component; files are opened
    /// relative to it.
    pub(crate) file: File,
}

/// Why a directory could not be used at all.
pub(crate) enum DirError {
    /// It does not exist.
    Missing,
    /// It exists but cannot be used, or its path is refused.
    Unusable {
        /// One line, naming it and the fix.
        reason: String,
        /// What was wrong.
        kind: RefusalKind,
    },
}

impl DirError {
    fn unusable(kind: RefusalKind, reason: String) -> DirError {
        DirError::Unusable { reason, kind }
    }
}

/// `path` with repeated slashes, trailing slashes and `.` components dropped (a
/// leading `./` too); `..` is kept. Never changes what the path names.
pub(crate) fn normalise(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Opens the plugin directory `path`. With `absolute_only`, a relative path is refused
/// before anything is opened.
pub(crate) fn open(path: &Path, absolute_only: bool) -> Result<Dir, DirError> {
    let p = shown(path);
    check_spelling(path, absolute_only, &p)?;
    let mut normal = normalise(path);
    if normal.as_os_str().is_empty() {
        normal = PathBuf::from(".");
    }
    let mut components = normal.components();
    let (parent, name): (Option<File>, OsString) = match components.next_back() {
        // `.` (or `./`): the working directory itself, not a link to it.
        None | Some(Component::CurDir) => (None, OsString::from(".")),
        // `/`: cannot be a symlink.
        Some(Component::RootDir) => {
            let root = sys::open_parent_dir(Path::new("/")).map_err(|e| failed(&p, e))?;
            return Ok(Dir {
                path: normal,
                file: root,
            });
        }
        Some(Component::ParentDir) => {
            return Err(DirError::unusable(
                RefusalKind::Unreadable,
                format!(
                    "plugin directory {p} ends in `..`; configure the directory by its own \
                     name"
                ),
            ))
        }
        Some(Component::Normal(name)) => {
            (open_parent(components.as_path(), &p)?, name.to_os_string())
        }
        Some(Component::Prefix(_)) => {
            return Err(DirError::unusable(
                RefusalKind::Unreadable,
                format!("plugin directory {p} is not a usable path; fix the configured path"),
            ))
        }
    };
    let file = open_last(parent.as_ref(), &name, &p)?;
    Ok(Dir { path: normal, file })
}

/// Refuses an empty path, and a relative one when `absolute_only`.
fn check_spelling(path: &Path, absolute_only: bool, p: &str) -> Result<(), DirError> {
    if path.as_os_str().is_empty() {
        return Err(DirError::unusable(
            RefusalKind::Unreadable,
            "a plugin directory is configured as an empty path; remove it or give an \
             absolute path"
                .into(),
        ));
    }
    if absolute_only && !path.is_absolute() {
        return Err(DirError::unusable(
            RefusalKind::Unreadable,
            format!(
                "plugin directory {p} is a relative path, so what it names would depend on \
                 the directory provtarget is started from; configure an absolute path"
            ),
        ));
    }
    Ok(())
}

/// Opens `rest`, the parent of the directory's last component (following symlinks);
/// `None` for an empty parent (the working directory).
fn open_parent(rest: &Path, p: &str) -> Result<Option<File>, DirError> {
    if rest.as_os_str().is_empty() {
        return Ok(None);
    }
    match sys::open_parent_dir(rest) {
        Ok(parent) => Ok(Some(parent)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DirError::Missing),
        Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
            Err(DirError::unusable(
                RefusalKind::NotRegularFile,
                format!(
                    "plugin directory {p} is not a directory (a component of its path is not \
                     one); fix the configured path"
                ),
            ))
        }
        Err(e) => Err(failed(p, e)),
    }
}

/// Opens the last component `name` in `parent` with `O_DIRECTORY | O_NOFOLLOW`,
/// telling a symlink and a non-directory apart when that fails.
fn open_last(parent: Option<&File>, name: &OsString, p: &str) -> Result<File, DirError> {
    match sys::open_dir_in(parent, name) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DirError::Missing),
        Err(e) => {
            if sys::is_symlink_in(parent, name) {
                Err(DirError::unusable(
                    RefusalKind::Symlink,
                    format!(
                        "plugin directory {p} is a symlink; configure the directory it \
                         points to instead"
                    ),
                ))
            } else if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) {
                Err(DirError::unusable(
                    RefusalKind::NotRegularFile,
                    format!("plugin directory {p} is not a directory; fix the configured path"),
                ))
            } else {
                Err(failed(p, e))
            }
        }
    }
}

fn failed(p: &str, e: io::Error) -> DirError {
    DirError::unusable(
        RefusalKind::Unreadable,
        format!("cannot open plugin directory {p}: {e}; check its permissions"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_drops_only_what_cannot_change_the_meaning() {
        for (spelled, normal) in [
            ("/a/dir", "/a/dir"),
            ("/a/dir/", "/a/dir"),
            ("/a/dir/.", "/a/dir"),
            ("/a/dir/./", "/a/dir"),
            ("/a//dir//", "/a/dir"),
            ("/a/./dir", "/a/dir"),
            ("/a/../dir", "/a/../dir"),
            ("./rel", "rel"),
            ("rel/.", "rel"),
            ("/", "/"),
            ("//", "/"),
        ] {
            assert_eq!(
                normalise(Path::new(spelled)),
                Path::new(normal),
                "{spelled}"
            );
        }
    }

    #[test]
    fn relative_and_dot_dot_paths_are_refused_saying_why() {
        let Err(DirError::Unusable { reason, .. }) = open(Path::new("plugins"), true) else {
            panic!("a relative plugin directory was accepted");
        };
        assert!(
            reason.contains("relative path") && reason.contains("absolute"),
            "{reason}"
        );
        let Err(DirError::Unusable { reason, .. }) = open(Path::new("/usr/lib/.."), true) else {
            panic!("a directory ending in .. was accepted");
        };
        assert!(reason.contains("ends in `..`"), "{reason}");
        assert!(matches!(
            open(Path::new("/nonexistent/provtarget/"), true),
            Err(DirError::Missing)
        ));
        assert!(open(Path::new("/"), true).is_ok());
        // The working directory, as `check_file` opens it for `x.so`: named `.`.
        let Ok(dot) = open(Path::new("./"), false) else {
            panic!("the working directory does not open");
        };
        assert_eq!(dot.path, Path::new("."));
    }
}
