//! The two entry points: [`load_all`] over the configured directories, and
//! [`check_file`] for one file.
#![forbid(unsafe_code)]

use std::{
    collections::HashSet,
    ffi::OsString,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::{
    cache::{CachedVerdict, FileIdentity, VerdictCache},
    directory::{self, Dir, DirError},
    discover,
    pipeline::{CacheUse, Session},
    probe::{Gate, Prepared},
    text::shown,
    LibraryRecord, LoadReport, LoadedPlugin, LoaderOptions, Refusal, RefusalKind, Stage, Verdict,
};

/// Scans every directory in `options` and loads what passes every check. Never fails
/// as a whole: each file gets its verdict. A directory that is missing, relative, a
/// symlink (under any spelling: `dir/`, `dir/.`, `dir//`...) or otherwise unusable
/// loads nothing and gets a one-line warning in [`LoadReport::warnings`]. A directory
/// listed more than once (by any spelling: the same device and inode) is scanned once,
/// where it is first listed. With [`LoaderOptions::cache_dir`], cached refusals of
/// unchanged files are reported without loading them; every accepted plugin is loaded.
pub fn load_all(options: &LoaderOptions) -> LoadReport {
    load_with(options, |names| (0..names.len()).collect())
}

/// [`load_all`] that loads only the accepted plugins `select` picks, when the verdict
/// cache ([`LoaderOptions::cache_dir`]) can tell the others' verdicts without
/// loading them.
///
/// Every file is opened and judged by the trust rule as in [`load_all`]. A file whose
/// identity ([`FileIdentity`](crate::FileIdentity)) the cache knows gets its cached
/// verdict (pins checked against its cached SHA-256, then the duplicate rule) and is
/// neither read nor loaded: its record says [`LibraryRecord::cached`]. New and changed
/// files are checked and loaded in full, and their verdicts recorded. Then `select`
/// is given the names of the accepted plugins (cached or loaded), in scan order, and
/// returns the indices into that list of the plugins the caller will run; those that
/// were only cached are now checked and loaded in full (read, sealed, hashed when
/// pinning is on, pinned, ELF-checked, loaded, constructed), exactly as without a
/// cache. If one of them is refused now, `select` is asked again with the names left,
/// until every selected plugin is loaded. [`LoadReport::plugins`] then holds every
/// plugin loaded, in scan order.
pub fn load_with(options: &LoaderOptions, select: impl FnMut(&[&str]) -> Vec<usize>) -> LoadReport {
    load_scan(options, select, None)
}

/// [`load_with`] with an optional gate before each in-process load (see
/// [`crate::probe::load_with_gated`]).
pub(crate) fn load_scan(
    options: &LoaderOptions,
    mut select: impl FnMut(&[&str]) -> Vec<usize>,
    mut gate: Option<&mut Gate<'_>>,
) -> LoadReport {
    let (session, warnings) = Session::start(options);
    let mut report = LoadReport {
        warnings,
        signatures: Some(session.signature_mode()),
        ..LoadReport::default()
    };
    let warn = |report: &mut LoadReport, w: String| {
        tracing::warn!("{w}");
        report.warnings.push(w);
    };
    let mut cache = options.cache_dir.as_deref().and_then(|dir| {
        let (cache, warnings) =
            VerdictCache::open(dir, session.euid(), options.insecure_skip_owner_checks);
        for w in warnings {
            warn(&mut report, w);
        }
        cache
    });
    // The opened directories, and for each record the directory index and file name
    // it came from (to load a cached plugin later); what was scanned and seen, to drop
    // the cache entries of removed files.
    let mut dirs: Vec<Dir> = Vec::new();
    let mut sources: Vec<Option<(usize, OsString)>> = Vec::new();
    let mut scanned_paths: Vec<PathBuf> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
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
                    directory = %shown(dir_path),
                    same_as = %shown(first),
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
        scanned_paths.push(dir.path.clone());
        let untrusted_dir = session.directory_problem(&dir);
        if let Some((_, problem)) = &untrusted_dir {
            warn(&mut report, format!("{problem}; no plugin in it will load"));
        }
        for name in names {
            // `libacme.so.minisig` is part of `libacme.so` (read and reported with it),
            // not a file of its own in the report.
            if discover::is_signature_name(&name) {
                continue;
            }
            let path = dir.path.join(&name);
            if cache.is_some() {
                // Only the cache needs to know (to forget the entries of removed files).
                seen.insert(path.clone());
            }
            let mut source = None;
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
                let loaded = accepted_before(&report, report.libraries.len());
                let (record, accepted, identity) = session.examine_with(
                    &dir,
                    &name,
                    &path,
                    &loaded,
                    CacheUse {
                        cache: cache.as_ref(),
                        answer: true,
                        hash_for_cache: cache.is_some(),
                    },
                    gate.as_deref_mut(),
                );
                remember(cache.as_mut(), &record, identity);
                source = Some((dirs.len(), name.clone()));
                (record, accepted)
            };
            report.libraries.push(record);
            sources.push(source);
            if let Some((info, resolver)) = accepted {
                report.plugins.push(LoadedPlugin {
                    record: report.libraries.len() - 1,
                    info,
                    resolver,
                });
            }
        }
        dirs.push(dir);
    }
    // Load the selected plugins the cache only described, until every plugin the
    // caller selects is loaded (each round loads at least one cached record or ends).
    loop {
        let accepted: Vec<usize> = (0..report.libraries.len())
            .filter(|&i| accepted_name(&report.libraries[i]).is_some())
            .collect();
        let names: Vec<&str> = accepted
            .iter()
            .filter_map(|&i| accepted_name(&report.libraries[i]))
            .collect();
        let to_load: Vec<usize> = select(&names)
            .into_iter()
            .filter_map(|i| accepted.get(i).copied())
            .filter(|&r| report.libraries[r].cached)
            .collect();
        if to_load.is_empty() {
            break;
        }
        for r in to_load {
            let Some((d, name)) = sources[r].clone() else {
                continue;
            };
            let path = report.libraries[r].path.clone();
            let loaded = accepted_before(&report, r);
            // Checked in full from its bytes; the cached verdict travels with it to
            // the gate.
            let (record, accepted, identity) = session.examine_with(
                &dirs[d],
                &name,
                &path,
                &loaded,
                CacheUse {
                    cache: cache.as_ref(),
                    answer: false,
                    hash_for_cache: false,
                },
                gate.as_deref_mut(),
            );
            remember(cache.as_mut(), &record, identity);
            report.libraries[r] = record;
            if let Some((info, resolver)) = accepted {
                report.plugins.push(LoadedPlugin {
                    record: r,
                    info,
                    resolver,
                });
            }
        }
    }
    report.plugins.sort_by_key(|p| p.record);
    if let Some(cache) = cache.as_mut() {
        cache.forget_missing(&scanned_paths, &seen);
        if let Err(w) = cache.save() {
            warn(&mut report, w);
        }
    }
    report
}

/// The plugin name of an accepted record (loaded, or accepted by the cache).
fn accepted_name(record: &LibraryRecord) -> Option<&str> {
    match (&record.verdict, &record.plugin) {
        (Verdict::Loaded, Some(p)) => Some(p.info.name.as_str()),
        _ => None,
    }
}

/// The (name, path) of every accepted record before index `end`, for the
/// duplicate-name rule.
fn accepted_before(report: &LoadReport, end: usize) -> Vec<(String, PathBuf)> {
    report.libraries[..end]
        .iter()
        .filter_map(|l| Some((accepted_name(l)?.to_string(), l.path.clone())))
        .collect()
}

/// Records a verdict just decided in full (not one taken from the cache) in the cache.
fn remember(
    cache: Option<&mut VerdictCache>,
    record: &LibraryRecord,
    identity: Option<FileIdentity>,
) {
    let (Some(cache), Some(identity)) = (cache, identity) else {
        return;
    };
    if record.cached {
        return;
    }
    let refusal = match &record.verdict {
        Verdict::Loaded => None,
        Verdict::Rejected(refusal) => Some(refusal.clone()),
        Verdict::Skipped { .. } => return,
    };
    let verdict = CachedVerdict {
        refusal,
        plugin: record.plugin.clone(),
        sha256: record.file.as_ref().and_then(|f| f.sha256.clone()),
        signature: record
            .signature_key
            .clone()
            .map(|key| crate::cache::CachedSignature {
                key,
                facts: record.signature.clone(),
            }),
    };
    cache.record(&record.path, identity, verdict);
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
