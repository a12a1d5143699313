//! The per-file pipeline: open → trust → read (facts, hash) → pin → ELF pre-check →
//! `dlopen` → verify → construct. Each step either passes or returns the [`Refusal`]
//! for its [`Stage`]; [`Session::run`] reads as the list of steps.
#![forbid(unsafe_code)]

use std::{
    ffi::OsStr,
    fs::{File, Metadata},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Instant, UNIX_EPOCH},
};

use provtarget_abi::host::{PluginInfo, PluginResolver};

use crate::{
    cache::{CachedVerdict, FileIdentity, VerdictCache},
    directory::Dir,
    image::Image,
    info, library,
    pins::Pins,
    sys,
    text::shown,
    trust, FileFacts, LibraryRecord, LoaderOptions, PluginFacts, Refusal, RefusalKind, Stage,
    Verdict,
};

/// A file larger than this is refused unread: no resolver plugin is near it, and the
/// whole file is held in memory (the sealed copy) for as long as the host runs.
const MAX_LIBRARY_SIZE: u64 = 256 << 20;

/// What one load run shares between files: options, our uid, the parsed pin file.
pub(crate) struct Session<'a> {
    options: &'a LoaderOptions,
    euid: u32,
    /// `None` when pinning is off; `Some(Err)` when the pin file is unusable.
    pins: Option<Result<Pins, String>>,
}

/// A plugin that passed every check, ready to be recorded as loaded.
pub(crate) type Accepted = (PluginInfo, PluginResolver);

impl<'a> Session<'a> {
    /// Starts a run: reads the pin file once, and returns the warnings the options
    /// call for (each also logged).
    pub(crate) fn start(options: &'a LoaderOptions) -> (Session<'a>, Vec<String>) {
        let euid = sys::effective_uid();
        let mut warnings = Vec::new();
        if options.insecure_skip_owner_checks {
            let w = "insecure_skip_owner_checks is on: plugin files, their directories and \
                     the pin file are not checked for owner and mode (developer override; \
                     never use it in production)"
                .to_string();
            tracing::warn!("{w}");
            warnings.push(w);
        }
        let pins = options.pin_file.as_deref().map(|path| {
            let pins = Pins::load(path, euid, options.insecure_skip_owner_checks);
            if let Err(reason) = &pins {
                let w = format!("{reason}; no plugin will load until it is fixed");
                tracing::warn!("{w}");
                warnings.push(w);
            }
            pins
        });
        let session = Session {
            options,
            euid,
            pins,
        };
        (session, warnings)
    }

    /// The owner/mode rule for a plugin directory (`None`: passes or skipped by the
    /// developer override).
    pub(crate) fn directory_problem(&self, dir: &Dir) -> Option<(RefusalKind, String)> {
        if self.options.insecure_skip_owner_checks {
            return None;
        }
        match dir.file.metadata() {
            Ok(meta) => trust::owner_mode_problem(&meta, &dir.path, "plugin directory", self.euid),
            Err(e) => Some((
                RefusalKind::Unreadable,
                format!("cannot stat plugin directory {}: {e}", shown(&dir.path)),
            )),
        }
    }

    /// Runs every check on `name` in `dir` (shown as `path`). `loaded` lists the
    /// plugins already loaded in this run, for the duplicate-name rule.
    pub(crate) fn examine(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
    ) -> (LibraryRecord, Option<Accepted>) {
        let (record, accepted, _) = self.examine_with(dir, name, path, loaded, None, false);
        (record, accepted)
    }

    /// [`Session::examine`] with a verdict cache. When `cache` holds a verdict for the
    /// file's current identity (and its SHA-256 when pinning or the report needs it),
    /// the verdict is taken from it after the trust and pin checks, without reading
    /// or loading the file: the record says `cached` and no resolver is returned even
    /// when it is accepted. Otherwise every check runs, hashing the file when
    /// `hash_for_cache` asks for it. Also returns the identity of the file opened
    /// (when it could be opened), to record its verdict under.
    pub(crate) fn examine_with(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
        cache: Option<&VerdictCache>,
        hash_for_cache: bool,
    ) -> (LibraryRecord, Option<Accepted>, Option<FileIdentity>) {
        let start = Instant::now();
        let mut record = LibraryRecord::new(path);
        let mut identity = None;
        let checked = self.run(
            dir,
            name,
            path,
            loaded,
            &mut record,
            Cached {
                cache,
                hash_for_cache,
                identity: &mut identity,
            },
        );
        let accepted = match checked {
            Ok(accepted) => accepted,
            Err(refusal) => {
                record.verdict = Verdict::Rejected(refusal);
                None
            }
        };
        record.load_time = start.elapsed();
        record.log();
        (record, accepted, identity)
    }

    /// The steps, in order; facts are recorded as they become known. `Ok(None)`: the
    /// accepted verdict came from the cache, nothing was loaded.
    fn run(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
        record: &mut LibraryRecord,
        cached: Cached<'_>,
    ) -> Result<Option<Accepted>, Refusal> {
        // 1–3. Open without following symlinks or blocking, relative to the judged
        //      directory; file type; facts; owner and mode. Nothing is read yet.
        let (file, meta) = self.open_trusted(dir, name, path, record)?;
        let identity = FileIdentity::of(&meta);
        *cached.identity = Some(identity);
        // An unchanged file judged by an earlier run: its verdict without loading it.
        if let Some(hit) = cached.cache.and_then(|c| c.lookup(path, &identity)) {
            if let Some(verdict) = self.verdict_from_cache(hit, name, path, loaded, record) {
                return verdict.map(|()| None);
            }
        }
        // 4. Read it once, from the descriptor (into a sealed memfd on Linux): hash,
        //    ELF check and dlopen all see these very bytes.
        let image = read(file, &meta, path)?;
        // 5. Hash (when pinning is on or the caller wants it reported) and pinning.
        self.hash_and_pin(&image, name, path, record, cached.hash_for_cache)?;
        // 6. A complete library for this host, exporting the root module, not built
        //    with panic = "abort": decided from the bytes, before any code runs.
        precheck(&image, path)?;
        // 7. Load exactly the bytes checked above and read its root module.
        let library = library::open(image, path)?;
        let plugin_info = library.info();
        record.plugin = Some(PluginFacts {
            info: plugin_info.clone(),
            interface_version: library.interface_version().to_string(),
            config_keys: library.config_keys(),
        });
        // 8. What it says about itself.
        info::validate(&plugin_info, path)?;
        info::check_type(&plugin_info, path)?;
        info::check_unique(&plugin_info, path, loaded)?;
        // 9. Construct the resolver (panics come back as errors).
        let resolver = library::construct(&library, &plugin_info, path)?;
        Ok(Some((plugin_info, resolver)))
    }

    /// The verdict for a file whose identity the cache knows: pins (checked against
    /// the cached SHA-256 of these unchanged bytes), then the cached verdict, then the
    /// duplicate rule. `None` when the cache lacks the SHA-256 this run needs: the
    /// file is then checked in full.
    fn verdict_from_cache(
        &self,
        hit: &CachedVerdict,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
        record: &mut LibraryRecord,
    ) -> Option<Result<(), Refusal>> {
        let need_hash = self.pins.is_some() || self.options.always_hash;
        if need_hash && hit.sha256.is_none() {
            return None;
        }
        let accepted_info = match (&hit.refusal, &hit.plugin) {
            (None, Some(plugin)) => Some(&plugin.info),
            (None, None) => return None,
            (Some(_), _) => None,
        };
        record.cached = true;
        if let (Some(facts), Some(sha256)) = (record.file.as_mut(), &hit.sha256) {
            if need_hash {
                facts.sha256 = Some(sha256.clone());
            }
        }
        if let Some(sha256) = &hit.sha256 {
            if let Err(refusal) = self.pin_check(name, path, sha256) {
                return Some(Err(refusal));
            }
        }
        record.plugin = hit.plugin.clone();
        if let Some(refusal) = &hit.refusal {
            return Some(Err(refusal.clone()));
        }
        Some(accepted_info.map_or(Ok(()), |info| info::check_unique(info, path, loaded)))
    }

    /// Steps 1–3: the open descriptor, judged by the file-type rule (never skipped,
    /// not even by the developer override) and the owner/mode rule.
    fn open_trusted(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        record: &mut LibraryRecord,
    ) -> Result<(File, Metadata), Refusal> {
        let file = trust::open_in(dir, name, path)?;
        let meta = file.metadata().map_err(|e| {
            Refusal::new(
                Stage::Open,
                RefusalKind::Unreadable,
                format!("cannot stat {}: {e}", shown(path)),
            )
        })?;
        if let Some(refusal) = trust::file_type_problem(&meta, path) {
            return Err(refusal);
        }
        record.file = Some(FileFacts {
            size: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            sha256: None,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        });
        if !self.options.insecure_skip_owner_checks {
            if let Some((kind, reason)) = trust::owner_mode_problem(&meta, path, "", self.euid) {
                return Err(Refusal::new(Stage::Trust, kind, reason));
            }
        }
        Ok((file, meta))
    }

    /// Step 5. `for_cache`: hash even when neither pinning nor the report needs it,
    /// to record it in the verdict cache.
    fn hash_and_pin(
        &self,
        image: &Image,
        name: &OsStr,
        path: &Path,
        record: &mut LibraryRecord,
        for_cache: bool,
    ) -> Result<(), Refusal> {
        if self.pins.is_none() && !self.options.always_hash && !for_cache {
            return Ok(());
        }
        let p = shown(path);
        let sha256 = image.sha256().map_err(|e| {
            Refusal::new(
                Stage::Open,
                RefusalKind::Unreadable,
                format!("cannot read {p}: {e}"),
            )
        })?;
        if let Some(facts) = record.file.as_mut() {
            facts.sha256 = Some(sha256.clone());
        }
        self.pin_check(name, path, &sha256)
    }

    /// The pin rule for the file `name` (at `path`) whose bytes hash to `sha256`.
    fn pin_check(&self, name: &OsStr, path: &Path, sha256: &str) -> Result<(), Refusal> {
        match &self.pins {
            None => Ok(()),
            Some(Ok(pins)) => pins
                .check(path, name, sha256)
                .map_err(|(kind, reason)| Refusal::new(Stage::Pin, kind, reason)),
            Some(Err(reason)) => Err(Refusal::new(
                Stage::Pin,
                RefusalKind::PinFileUnusable,
                format!("{} not loaded: {reason}", shown(path)),
            )),
        }
    }

    /// The effective uid owners are judged against.
    pub(crate) fn euid(&self) -> u32 {
        self.euid
    }
}

/// What [`Session::run`] needs for the verdict cache.
struct Cached<'c> {
    /// `None`: check in full whatever the cache says.
    cache: Option<&'c VerdictCache>,
    /// Hash the file for the cache entry.
    hash_for_cache: bool,
    /// Set to the identity of the file opened.
    identity: &'c mut Option<FileIdentity>,
}

/// Step 4: the size limit, then one read of the whole file, which must still have the
/// size `fstat` gave.
fn read(file: File, meta: &Metadata, path: &Path) -> Result<Image, Refusal> {
    let p = shown(path);
    if meta.len() > MAX_LIBRARY_SIZE {
        return Err(Refusal::new(
            Stage::Format,
            RefusalKind::TooLarge,
            format!(
                "{p} is {} bytes, larger than any plugin library ({MAX_LIBRARY_SIZE} bytes at \
                 most, as it is held in memory while loaded); strip its debug information or \
                 remove it",
                meta.len()
            ),
        ));
    }
    let image = Image::read(file, meta.len(), path).map_err(|e| {
        Refusal::new(
            Stage::Open,
            RefusalKind::Unreadable,
            format!("cannot read {p}: {e}"),
        )
    })?;
    if image.len() != meta.len() {
        return Err(Refusal::new(
            Stage::Open,
            RefusalKind::ChangedWhileRead,
            format!(
                "{p} changed while being read ({} bytes, then {}); retry once it is \
                 completely copied",
                meta.len(),
                image.len()
            ),
        ));
    }
    Ok(image)
}

/// Step 6, the ELF pre-check (Linux). Elsewhere the dynamic linker is the only judge.
#[cfg(target_os = "linux")]
fn precheck(image: &Image, path: &Path) -> Result<(), Refusal> {
    use provtarget_abi::{PANIC_ABORT_SYMBOL, ROOT_SYMBOL};
    let p = shown(path);
    let problem = match image.check_elf(ROOT_SYMBOL, PANIC_ABORT_SYMBOL) {
        Ok(()) => return Ok(()),
        Err(problem) => problem,
    };
    let what = problem.what;
    let (stage, message) = match problem.kind {
        RefusalKind::Truncated => (
            Stage::Format,
            format!("{p} is truncated: {what}; copy or reinstall it completely"),
        ),
        RefusalKind::NoRootSymbol => (
            Stage::RootModule,
            format!(
                "{p} is not a provtarget plugin: {what}; build it with \
                 provtarget_abi::export_plugin!"
            ),
        ),
        RefusalKind::PanicAbortBuild => (
            Stage::Format,
            format!(
                "{p} {what}: its first panic would end the host; build it with \
                 [profile.release] panic = \"unwind\" (the default)"
            ),
        ),
        _ => (
            Stage::Format,
            format!(
                "{p} {what}; it is not a plugin library for this host: remove it or install \
                 the right build"
            ),
        ),
    };
    Err(Refusal::new(stage, problem.kind, message))
}

#[cfg(not(target_os = "linux"))]
fn precheck(_image: &Image, _path: &Path) -> Result<(), Refusal> {
    Ok(())
}
