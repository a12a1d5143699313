//! The two entry points: [`load_all`] over the configured directories, and
//! [`check_file`] for one file.
#![forbid(unsafe_code)]

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::{
    directory::{self, DirError},
    discover,
    pipeline::Session,
    probe::{Gate, Prepared},
    text::shown,
    LibraryRecord, LoadReport, LoadedPlugin, LoaderOptions, Refusal, RefusalKind, Stage, Verdict,
};

/// Scans every directory in `options` and loads what passes every check. Never fails
/// as a whole: each file gets its verdict. A directory that is missing, relative, a
/// symlink (under any spelling: `dir/`, `dir/.`, `dir//`...) or otherwise unusable
/// loads nothing and gets a one-line warning in [`LoadReport::warnings`]. A directory
/// listed more than once (by any spelling: the same device and inode) is scanned once,
/// where it is first listed.
pub fn load_all(options: &LoaderOptions) -> LoadReport {
    load_all_with(options, None)
}

/// [`load_all`] with an optional gate before each in-process load (see
/// [`crate::probe::load_all_gated`]).
pub(crate) fn load_all_with(
    options: &LoaderOptions,
    mut gate: Option<&mut Gate<'_>>,
) -> LoadReport {
    let (session, warnings) = Session::start(options);
    let mut report = LoadReport {
        warnings,
        ..LoadReport::default()
    };
    let warn = |report: &mut LoadReport, w: String| {
        tracing::warn!("{w}");
        report.warnings.push(w);
    };
    // Directories already scanned, by the identity of the opened directory (device and
    // inode), so one configured twice (or under two spellings) is scanned once.
    let mut scanned: Vec<((u64, u64), &Path)> = Vec::new();
    for dir_path in &options.directories {
        let dir = match directory::open(dir_path, true) {
            Ok(dir) => dir,
            Err(DirError::Missing) => {
                warn(
                    &mut report,
                    format!(
                        "plugin directory {} does not exist; no plugins are loaded from it \
                         (create it, or fix the configured path)",
                        shown(dir_path)
                    ),
                );
                continue;
            }
            Err(DirError::Unusable { reason, .. }) => {
                warn(&mut report, reason);
                continue;
            }
        };
        if let Ok(meta) = dir.file.metadata() {
            let id = (meta.dev(), meta.ino());
            if let Some((_, first)) = scanned.iter().find(|(seen, _)| *seen == id) {
                tracing::debug!(
                    directory = %dir_path.display(),
                    same_as = %first.display(),
                    "plugin directory configured more than once; scanned once"
                );
                continue;
            }
            scanned.push((id, dir_path));
        }
        let names = match discover::list(&dir) {
            Ok(names) => names,
            Err(e) => {
                let w = if discover::proc_missing() {
                    format!(
                        "cannot list plugin directory {}: /proc is not mounted; provtarget \
                         needs /proc on Linux",
                        shown(dir_path)
                    )
                } else {
                    format!(
                        "cannot list plugin directory {}: {e}; check its permissions",
                        shown(dir_path)
                    )
                };
                warn(&mut report, w);
                continue;
            }
        };
        let untrusted_dir = session.directory_problem(&dir);
        if let Some((_, problem)) = &untrusted_dir {
            warn(&mut report, format!("{problem}; no plugin in it will load"));
        }
        for name in names {
            let path = dir.path.join(&name);
            let (record, accepted) = if let Some(reason) = discover::skip_reason(&name) {
                let record = LibraryRecord::decided(&path, Verdict::Skipped { reason });
                (record, None)
            } else if let Some((kind, problem)) = &untrusted_dir {
                let refusal =
                    Refusal::new(Stage::Trust, *kind, format!("{}: {problem}", shown(&path)));
                (
                    LibraryRecord::decided(&path, Verdict::Rejected(refusal)),
                    None,
                )
            } else {
                let loaded: Vec<(String, PathBuf)> = report
                    .plugins
                    .iter()
                    .filter_map(|p| {
                        let earlier = report.libraries.get(p.record)?;
                        Some((p.info.name.clone(), earlier.path.clone()))
                    })
                    .collect();
                session.examine(&dir, &name, &path, &loaded, gate.as_deref_mut())
            };
            report.libraries.push(record);
            if let Some((info, resolver)) = accepted {
                report.plugins.push(LoadedPlugin {
                    record: report.libraries.len() - 1,
                    info,
                    resolver,
                });
            }
        }
    }
    report
}

/// Runs every check on one file, as `provtarget plugins check FILE` does: the
/// directory rule on its parent, trust, pinning, format, load, info, type and
/// constructor (there is no earlier plugin, so no duplicate). The file-name suffix
/// is not required, and a relative path is taken from the working directory, as any
/// command-line argument. Warnings (e.g. the developer override) are logged.
pub fn check_file(path: &Path, options: &LoaderOptions) -> (LibraryRecord, Option<LoadedPlugin>) {
    match prepare_file(path, options) {
        Ok(prepared) => prepared.load(&[]),
        Err(record) => (*record, None),
    }
}

/// Every check of [`check_file`] that runs no code of the file.
pub(crate) fn prepare_file(
    path: &Path,
    options: &LoaderOptions,
) -> Result<Prepared, Box<LibraryRecord>> {
    let (session, _warnings) = Session::start(options);
    let reject = |stage, kind, reason: String| {
        let refusal = Refusal::new(stage, kind, reason);
        Err(Box::new(LibraryRecord::decided(
            path,
            Verdict::Rejected(refusal),
        )))
    };
    let p = shown(path);
    let normal = directory::normalise(path);
    // `None` for a path ending in `..` (or `/`): no file name to open.
    let Some(name) = normal.file_name() else {
        return reject(
            Stage::Open,
            RefusalKind::Unreadable,
            format!("{p} does not name a file; give the path of a plugin library"),
        );
    };
    let parent = match normal.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = match directory::open(parent, false) {
        Ok(dir) => dir,
        Err(DirError::Missing) => {
            return reject(
                Stage::Open,
                RefusalKind::Unreadable,
                format!("cannot open {p}: its directory does not exist"),
            )
        }
        Err(DirError::Unusable { reason, kind }) => {
            let stage = match kind {
                RefusalKind::Symlink | RefusalKind::BadOwner | RefusalKind::WritableByOthers => {
                    Stage::Trust
                }
                _ => Stage::Open,
            };
            return reject(stage, kind, format!("{p}: {reason}"));
        }
    };
    if let Some((kind, problem)) = session.directory_problem(&dir) {
        return reject(Stage::Trust, kind, format!("{p}: {problem}"));
    }
    session.prepare_only(&dir, name, path)
}
