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
    gate::{Gate, Prepared},
    pipeline::{Accepted, CacheUse, Session},
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
/// [`crate::gate::load_with_gated`]): scan every directory once, settle duplicate
/// names, load the selected plugins the cache only described, then save the cache.
pub(crate) fn load_scan(
    options: &LoaderOptions,
    mut select: impl FnMut(&[&str]) -> Vec<usize>,
    mut gate: Option<&mut Gate<'_>>,
) -> LoadReport {
    let mut scan = Scan::start(options);
    for dir_path in &options.directories {
        if let Some((dir, names)) = scan.open_directory(dir_path) {
            scan.examine_directory(dir, names, gate.as_deref_mut());
        }
    }
    // One plugin name in several files: the higher version wins, then scan order.
    choose_duplicate_winners(&mut scan.report);
    // Load the selected plugins the cache only described, until every plugin the
    // caller selects is loaded (each round loads at least one cached record or ends).
    loop {
        let to_load = scan.selected_from_cache(&mut select);
        if to_load.is_empty() {
            break;
        }
        for r in to_load {
            scan.load_cached(r, gate.as_deref_mut());
        }
    }
    scan.finish()
}

/// One run of [`load_scan`]: the report so far, the verdict cache, and what was
/// scanned.
struct Scan<'a> {
    session: Session<'a>,
    refusals_logged: crate::report::RefusalLog,
    report: LoadReport,
    cache: Option<VerdictCache>,
    /// The opened directories, and for each record the directory index and file name
    /// it came from (to load a cached plugin later).
    dirs: Vec<Dir>,
    sources: Vec<Option<(usize, OsString)>>,
    /// What was scanned and seen, to drop the cache entries of removed files.
    scanned_paths: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
    /// Directories already scanned, by the identity of the opened directory (device
    /// and inode), so one configured twice (or under two spellings) is scanned once.
    scanned: Vec<((u64, u64), &'a Path)>,
    /// The (name, path) of every accepted record so far, in scan order, for the
    /// duplicate-name rule: kept as the scan goes (recomputing it per file made a
    /// directory of n files cost n² steps).
    accepted_so_far: Vec<(String, PathBuf)>,
}

impl<'a> Scan<'a> {
    /// Starts the session (pin file, trusted keys) and opens the verdict cache.
    fn start(options: &'a LoaderOptions) -> Scan<'a> {
        let (session, warnings) = Session::start(options);
        let refusals_logged = crate::report::RefusalLog::begin();
        let mut report = LoadReport {
            warnings,
            signatures: Some(session.signature_mode()),
            ..LoadReport::default()
        };
        let cache = options.cache_dir.as_deref().and_then(|dir| {
            let (cache, warnings) =
                VerdictCache::open(dir, session.euid(), options.insecure_skip_owner_checks);
            for w in warnings {
                warn(&mut report, w);
            }
            cache
        });
        Scan {
            session,
            refusals_logged,
            report,
            cache,
            dirs: Vec::new(),
            sources: Vec::new(),
            scanned_paths: Vec::new(),
            seen: HashSet::new(),
            scanned: Vec::new(),
            accepted_so_far: Vec::new(),
        }
    }

    /// Opens and lists a configured directory; `None` (with a warning) when it cannot
    /// be used, or (logged) when it was scanned already under another spelling.
    fn open_directory(&mut self, dir_path: &'a Path) -> Option<(Dir, Vec<OsString>)> {
        let dir = match directory::open(dir_path, true) {
            Ok(dir) => dir,
            Err(DirError::Missing) => {
                let w = format!(
                    "plugin directory {} does not exist; no plugins are loaded from it \
                     (create it, or fix the configured path)",
                    shown(dir_path)
                );
                warn(&mut self.report, w);
                return None;
            }
            Err(DirError::Unusable { reason, .. }) => {
                warn(&mut self.report, reason);
                return None;
            }
        };
        if let Ok(meta) = dir.file.metadata() {
            let id = (meta.dev(), meta.ino());
            if let Some((_, first)) = self.scanned.iter().find(|(seen, _)| *seen == id) {
                tracing::debug!(
                    directory = ?dir_path,
                    same_as = ?first,
                    "plugin directory configured more than once; scanned once"
                );
                return None;
            }
            self.scanned.push((id, dir_path));
        }
        match discover::list(&dir) {
            Ok(names) => Some((dir, names)),
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
                warn(&mut self.report, w);
                None
            }
        }
    }

    /// Gives every file `names` of `dir` its record (skipped, refused with its
    /// untrusted directory, or examined: from the cache or checked and loaded).
    fn examine_directory(
        &mut self,
        dir: Dir,
        names: Vec<OsString>,
        mut gate: Option<&mut Gate<'_>>,
    ) {
        self.scanned_paths.push(dir.path.clone());
        let untrusted_dir = self.session.directory_problem(&dir);
        if let Some((_, problem)) = &untrusted_dir {
            warn(
                &mut self.report,
                format!("{problem}; no plugin in it will load"),
            );
        }
        for name in names {
            // `libacme.so.minisig` is part of `libacme.so` (read and reported with it),
            // not a file of its own in the report.
            if discover::is_signature_name(&name) {
                continue;
            }
            let path = dir.path.join(&name);
            if self.cache.is_some() {
                // Only the cache needs to know (to forget the entries of removed files).
                self.seen.insert(path.clone());
            }
            let mut source = None;
            let (record, accepted) = if let Some(reason) = discover::skip_reason(&name) {
                (
                    LibraryRecord::decided(&path, Verdict::Skipped { reason }),
                    None,
                )
            } else if let Some((kind, problem)) = &untrusted_dir {
                let refusal =
                    Refusal::new(Stage::Trust, *kind, format!("{}: {problem}", shown(&path)));
                (
                    LibraryRecord::decided(&path, Verdict::Rejected(refusal)),
                    None,
                )
            } else {
                let (record, accepted, identity) = self.session.examine_with(
                    &dir,
                    &name,
                    &path,
                    &self.accepted_so_far,
                    CacheUse {
                        cache: self.cache.as_ref(),
                        answer: true,
                        hash_for_cache: self.cache.is_some(),
                    },
                    gate.as_deref_mut(),
                );
                remember(self.cache.as_mut(), &record, identity);
                source = Some((self.dirs.len(), name.clone()));
                (record, accepted)
            };
            if let Some(name) = accepted_name(&record) {
                self.accepted_so_far
                    .push((name.to_string(), record.path.clone()));
            }
            self.push(record, accepted, source);
        }
        self.dirs.push(dir);
    }

    /// Adds a newly scanned file's record, and its plugin when it was loaded.
    fn push(
        &mut self,
        record: LibraryRecord,
        accepted: Option<Accepted>,
        source: Option<(usize, OsString)>,
    ) {
        self.report.libraries.push(record);
        self.sources.push(source);
        if let Some((info, resolver)) = accepted {
            self.report.plugins.push(LoadedPlugin {
                record: self.report.libraries.len() - 1,
                info,
                resolver,
            });
        }
    }

    /// Asks `select` which accepted plugins (by name, in scan order) the caller will
    /// run, and returns the records among them known from the cache only.
    fn selected_from_cache(&self, select: &mut impl FnMut(&[&str]) -> Vec<usize>) -> Vec<usize> {
        let libraries = &self.report.libraries;
        let accepted: Vec<usize> = (0..libraries.len())
            .filter(|&i| accepted_name(&libraries[i]).is_some())
            .collect();
        let names: Vec<&str> = accepted
            .iter()
            .filter_map(|&i| accepted_name(&libraries[i]))
            .collect();
        select(&names)
            .into_iter()
            .filter_map(|i| accepted.get(i).copied())
            .filter(|&r| libraries[r].cached)
            .collect()
    }

    /// Checks and loads in full the record `r` the cache only described (its cached
    /// verdict travels with it to the gate); the library loaded must be the plugin the
    /// cache described, or it is refused and forgotten by the cache.
    fn load_cached(&mut self, r: usize, gate: Option<&mut Gate<'_>>) {
        let Some((d, name)) = self.sources[r].clone() else {
            return;
        };
        let path = self.report.libraries[r].path.clone();
        // What the cache said, which the selection used.
        let said = self.report.libraries[r].plugin.clone();
        let loaded = accepted_before(&self.report, r);
        let (mut record, mut accepted, identity) = self.session.examine_with(
            &self.dirs[d],
            &name,
            &path,
            &loaded,
            CacheUse {
                cache: self.cache.as_ref(),
                answer: false,
                hash_for_cache: false,
            },
            gate,
        );
        let mismatch = match (&said, &record.verdict, &record.plugin) {
            (Some(said), Verdict::Loaded, Some(actual)) => {
                crate::report::cache_mismatch(said, actual)
            }
            _ => None,
        };
        match mismatch {
            Some(differences) => {
                let refusal = crate::report::cache_mismatch_refusal(&path, &differences);
                record.verdict = Verdict::Rejected(refusal);
                record.log();
                accepted = None;
                if let Some(cache) = self.cache.as_mut() {
                    cache.forget(&path);
                }
            }
            None => remember(self.cache.as_mut(), &record, identity),
        }
        self.report.libraries[r] = record;
        if let Some((info, resolver)) = accepted {
            self.report.plugins.push(LoadedPlugin {
                record: r,
                info,
                resolver,
            });
        }
    }

    /// Orders the plugins, logs the refusal summary, and saves the cache.
    fn finish(mut self) -> LoadReport {
        // The trust store's warnings, if it was read after the start (or only now:
        // they are reported even when no signature was checked).
        let late = self.session.late_warnings(true);
        let report = &mut self.report;
        report.warnings.extend(late);
        report.plugins.sort_by_key(|p| p.record);
        if let Some(w) = self.refusals_logged.finish() {
            warn(report, w);
        }
        if let Some(cache) = self.cache.as_mut() {
            cache.forget_missing(&self.scanned_paths, &self.seen);
            if let Err(w) = cache.save() {
                warn(report, w);
            }
        }
        self.report
    }
}

/// Logs a warning and adds it to the report.
fn warn(report: &mut LoadReport, w: String) {
    tracing::warn!("{w}");
    report.warnings.push(w);
}

/// For every plugin name found in more than one file (an upgrade left
/// `libacme-1.0.so` beside `libacme-1.1.so`), the file that wins: the higher plugin
/// version (semver), then the first in scan order. The scan accepts the first file
/// and refuses the later ones as duplicates as it goes; here a later file with a
/// higher version takes the place of the one accepted (which is refused, and whose
/// resolver is dropped), and is marked as known from its facts only
/// ([`LibraryRecord::cached`]), so it is checked and loaded in full if the caller
/// selects it. Every duplicate's refusal names the winner and the rule.
fn choose_duplicate_winners(report: &mut LoadReport) {
    use std::collections::HashMap;
    let version = |r: &LibraryRecord| {
        r.plugin
            .as_ref()
            .and_then(|p| semver::Version::parse(&p.info.version).ok())
    };
    // Name → the records of that plugin that are accepted or refused only as a
    // duplicate, in scan order.
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in report.libraries.iter().enumerate() {
        let candidate = match &r.verdict {
            Verdict::Loaded => true,
            Verdict::Rejected(refusal) => refusal.kind == RefusalKind::Duplicate,
            Verdict::Skipped { .. } => false,
        };
        if let (true, Some(p)) = (candidate, &r.plugin) {
            by_name.entry(p.info.name.clone()).or_default().push(i);
        }
    }
    for records in by_name.into_values().filter(|r| r.len() > 1) {
        // The first of the highest version.
        let mut winner = records[0];
        for &r in &records[1..] {
            if version(&report.libraries[r]) > version(&report.libraries[winner]) {
                winner = r;
            }
        }
        let winner_path = report.libraries[winner].path.clone();
        let winner_version = report.libraries[winner]
            .plugin
            .as_ref()
            .map(|p| p.info.version.clone())
            .unwrap_or_default();
        for &r in &records {
            let lib = &mut report.libraries[r];
            if r == winner {
                if lib.verdict != Verdict::Loaded {
                    // Not constructed (refused before); loaded in full if selected.
                    lib.verdict = Verdict::Loaded;
                    lib.cached = true;
                    lib.log();
                }
                continue;
            }
            let (name, own) = lib
                .plugin
                .as_ref()
                .map(|p| (p.info.name.clone(), p.info.version.clone()))
                .unwrap_or_default();
            let was_accepted = lib.verdict == Verdict::Loaded;
            lib.verdict = Verdict::Rejected(Refusal::new(
                Stage::Duplicate,
                RefusalKind::Duplicate,
                format!(
                    "{}: plugin {} (version {}) is also in {} (version {}), which wins \
                     (the higher plugin version, then the first file in scan order: \
                     directories as configured, then file names by their bytes); remove \
                     the file not wanted",
                    shown(&lib.path),
                    crate::text::printable(&name),
                    crate::text::printable(&own),
                    shown(&winner_path),
                    crate::text::printable(&winner_version)
                ),
            ));
            if was_accepted {
                lib.log();
                report.plugins.retain(|p| p.record != r);
            }
        }
    }
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
        // A duplicate is a good library by itself (the rule depends on the other
        // files, and is applied again every run from the cached facts): recorded as
        // accepted, so an unchanged duplicate is answered from the cache, never loaded
        // again.
        Verdict::Rejected(refusal)
            if refusal.kind == RefusalKind::Duplicate && record.plugin.is_some() =>
        {
            None
        }
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
