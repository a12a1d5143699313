//! The per-file pipeline: open → trust → read (facts, hash) → pin → ELF pre-check →
//! `dlopen` → verify → construct. Each step either passes or returns the [`Refusal`]
//! for its [`Stage`]; [`Session::prepare`] (steps 1–6, no code of the file runs)
//! and [`finish`] (steps 7–9) read as the list of steps.
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
    gate::{Gate, Gated, Prepared, Verifying},
    image::Image,
    info, library,
    pins::Pins,
    signature::{self, SigFile},
    sys,
    text::shown,
    trust,
    trusted_keys::{SignatureMode, TrustStore},
    FileFacts, LibraryRecord, LoaderOptions, PluginFacts, Refusal, RefusalKind, Stage, Verdict,
};

/// A file larger than this is refused unread: no resolver plugin is near it, and the
/// whole file is held in memory (the sealed copy) for as long as the host runs.
pub(crate) const MAX_LIBRARY_SIZE: u64 = 256 << 20;

/// What one load run shares between files: options, our uid, the parsed pin file.
pub(crate) struct Session<'a> {
    options: &'a LoaderOptions,
    euid: u32,
    /// `None` when pinning is off; `Some(Err)` when the pin file is unusable.
    pins: Option<Result<Pins, String>>,
    /// Trusted keys, revocations and the effective signature mode: read at the start,
    /// or, with a mode set (`warn`, `enforce`) and no verdict cache (nothing needs
    /// its digest before a library's signature is checked), when a signature is
    /// first checked, while the library's hash is being computed.
    store: std::cell::OnceCell<TrustStore>,
    /// Warnings of a trust store read after the start, for the report.
    late_warnings: std::cell::RefCell<Vec<String>>,
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
            store: std::cell::OnceCell::new(),
            late_warnings: Default::default(),
        };
        let explicit = options
            .signatures
            .mode
            .is_some_and(|m| m != SignatureMode::Off);
        if !explicit || options.cache_dir.is_some() {
            warnings.extend(session.late_warnings(true));
        }
        (session, warnings)
    }

    /// The trust store, read (and its warnings logged) on first use.
    fn store(&self) -> &TrustStore {
        self.store.get_or_init(|| {
            let (store, warnings) = TrustStore::load(
                &self.options.signatures,
                self.euid,
                self.options.insecure_skip_owner_checks,
            );
            for w in &warnings {
                tracing::warn!("{}", crate::text::printable(w));
            }
            self.late_warnings.borrow_mut().extend(warnings);
            store
        })
    }

    /// The warnings of the trust store read since the last call (see
    /// [`Session::store`]); with `read`, the store is read now if it was not yet.
    pub(crate) fn late_warnings(&self, read: bool) -> Vec<String> {
        if read {
            self.store();
        }
        std::mem::take(&mut self.late_warnings.borrow_mut())
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

    /// Runs every check on `name` in `dir` (shown as `path`); the one pipeline behind
    /// every entry point. `loaded` lists the plugins accepted earlier in this run, for
    /// the duplicate-name rule.
    ///
    /// With a verdict cache ([`CacheUse`]) that may answer, a file whose identity the
    /// cache knows (and whose SHA-256 it holds when pinning or the report needs it)
    /// gets its verdict from the cache after the trust and pin checks, without being
    /// read or loaded: the record says `cached` and no resolver is returned even when
    /// it is accepted. Otherwise steps 1–6 run (none runs code of the file) and the
    /// sealed image is a [`Prepared`] library, carrying the cache's verdict for it
    /// when there was one. `gate`, when given, sees that library before it is loaded
    /// here and may decide its record itself (refused, or loaded in a child);
    /// otherwise steps 7–9 run in this process. Also returns the identity of the file
    /// opened (when it could be opened), to record its verdict under.
    pub(crate) fn examine_with(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
        cache: CacheUse<'_>,
        gate: Option<&mut Gate<'_>>,
    ) -> (LibraryRecord, Option<Accepted>, Option<FileIdentity>) {
        let started = Instant::now();
        let mut record = LibraryRecord::new(path);
        let mut identity = None;
        let mut gate = gate;
        let facts = (loaded, &mut record, &mut identity);
        let prepared = match self.prepare(dir, name, path, facts, cache, gate.as_deref_mut()) {
            Ok(Prepare::Image { image, cached }) => Prepared {
                record,
                image,
                started,
                cached,
                loaded: loaded.to_vec(),
                signature_mode: self.signature_mode(),
            },
            Ok(Prepare::FromCache(verdict)) => {
                if let Err(refusal) = verdict {
                    record.verdict = Verdict::Rejected(refusal);
                }
                record.load_time = started.elapsed();
                record.log();
                return (record, None, identity);
            }
            Err(refusal) => {
                record.verdict = Verdict::Rejected(refusal);
                record.load_time = started.elapsed();
                record.log();
                return (record, None, identity);
            }
        };
        let prepared = match gate {
            None => prepared,
            Some(gate) => match gate.judge(prepared) {
                Gated::Load(prepared) => prepared,
                Gated::Decided(record) => return (record, None, identity),
            },
        };
        let (record, plugin) = prepared.load(loaded);
        (record, plugin.map(|p| (p.info, p.resolver)), identity)
    }

    /// Steps 1–6 as a [`Prepared`] library, or the final record of a refused one;
    /// no verdict cache.
    pub(crate) fn prepare_only(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
    ) -> Result<Prepared, Box<LibraryRecord>> {
        let started = Instant::now();
        let mut record = LibraryRecord::new(path);
        let mut identity = None;
        let facts = (&[][..], &mut record, &mut identity);
        match self.prepare(dir, name, path, facts, CacheUse::NONE, None) {
            Ok(Prepare::Image { image, cached }) => Ok(Prepared {
                record,
                image,
                started,
                cached,
                loaded: Vec::new(),
                signature_mode: self.signature_mode(),
            }),
            // Without a cache there is no answer from it; were there one, it would be
            // the final record.
            Ok(Prepare::FromCache(verdict)) => {
                if let Err(refusal) = verdict {
                    record.verdict = Verdict::Rejected(refusal);
                }
                record.load_time = started.elapsed();
                record.log();
                Err(Box::new(record))
            }
            Err(refusal) => {
                record.verdict = Verdict::Rejected(refusal);
                record.load_time = started.elapsed();
                record.log();
                Err(Box::new(record))
            }
        }
    }

    /// Steps 1–6, none of which runs any code of the file, with the verdict cache:
    /// the answer from the cache, or a sealed image that may be loaded (in this
    /// process or in a child). Facts are recorded as they become known: `facts` is
    /// the plugins accepted so far, the record and the identity of the file opened.
    /// `gate` is told of the library while its signature is verified
    /// ([`crate::Gatekeeper::verifying`]).
    fn prepare(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        facts: PrepareFacts<'_, '_>,
        cache: CacheUse<'_>,
        gate: Option<&mut Gate<'_>>,
    ) -> Result<Prepare, Refusal> {
        let (loaded, record, identity) = facts;
        // 1–3. Open without following symlinks or blocking, relative to the judged
        //      directory; file type; facts; owner and mode. Nothing is read yet.
        let (file, meta) = self.open_trusted(dir, name, path, record)?;
        let id = FileIdentity::of(&meta);
        *identity = Some(id);
        // 3b. The signature beside it, by identity (one fstatat; not looked at when
        //     signatures are off). A cached verdict is used only if it was decided
        //     under the same mode, trust store and signature file.
        let checking = self.signature_mode() != SignatureMode::Off;
        let hit = self.cache_hit(dir, name, path, &id, cache, record);
        // An unchanged file judged by an earlier run: its verdict without loading it.
        if let (Some(hit), true) = (hit, cache.answer) {
            if let Some(verdict) = self.verdict_from_cache(hit, name, path, loaded, record) {
                return Ok(Prepare::FromCache(verdict));
            }
        }
        // The signature file itself, now that it is needed; the verdict is recorded
        // under the identity of the very file read.
        let sig = checking.then(|| SigFile::read(&dir.file, name, path));
        if let Some(sig) = &sig {
            record.signature_key = self.signature_key(cache, || sig.key_part());
        }
        // 4. Read it once, from the descriptor (into a sealed memfd on Linux): hash,
        //    ELF check and dlopen all see these very bytes.
        //    The BLAKE2b a prehashed signature covers (the larger part of verifying
        //    it) is computed on a thread of its own as the copy is made and while
        //    steps 5 and 6 run here; waited for in step 5b.
        //    When this file was picked at start-up (`crate::early`), its sealed copy
        //    and hash are on their way already: the very file judged above (same
        //    identity), copied once.
        let (image, prehash) = match crate::early::take(path, &id) {
            Some(early) => early,
            None => read_hashing(file, &meta, path, sig.as_ref())?,
        };
        // 5. Hash (when pinning is on or the caller wants it reported) and pinning.
        let known = hit.and_then(|h| h.sha256.as_deref());
        self.hash_and_pin(&image, name, path, record, cache.hash_for_cache, known)?;
        // 6. A complete library for this host, exporting the root module, not built
        //    with panic = "abort": decided from the bytes, before any code runs (and
        //    reported after the signature's verdict).
        let elf = precheck(&image, path);
        // 5b. The signature, verified over the sealed copy: the bytes loaded next (here
        //     or in a child) are the bytes verified. While its hash is still being
        //     computed, the gate may hand the copy to a child that checks it and waits
        //     (it runs none of its code before the gate's `judge`).
        let mut ahead = gate.filter(|_| elf.is_ok() && prehash.is_running() && image.is_sealed());
        if let Some(gate) = ahead.as_deref_mut() {
            let cached = hit.is_some();
            gate.verifying(Verifying {
                path,
                image: &image,
                cached,
            });
        }
        let verified = self.check_signature(&image, name, path, sig.as_ref(), record, prehash);
        if let (Err(_), Some(gate)) = (&verified, ahead) {
            gate.withdrawn(path);
        }
        verified?;
        elf?;
        Ok(Prepare::Image {
            image,
            cached: hit.cloned().map(Box::new),
        })
    }

    /// Step 3b: the verdict cache's entry for this very file (`id`), recorded under the
    /// same mode, trust store and signature file (whose key is set in `record`).
    fn cache_hit<'c>(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        id: &FileIdentity,
        cache: CacheUse<'c>,
        record: &mut LibraryRecord,
    ) -> Option<&'c CachedVerdict> {
        record.signature_key = self.signature_key(cache, || signature::stat_key(&dir.file, name));
        let key = record.signature_key.as_ref()?;
        let hit = cache.cache?.lookup(path, id)?;
        hit.signature
            .as_ref()
            .is_some_and(|s| &s.key == key)
            .then_some(hit)
    }

    /// The key a record's verdict is cached under for its signature: the mode's
    /// when signatures are off; else, with a verdict cache, the trust store's digest
    /// and `sig_part` (the `.minisig`'s identity); `None` without a cache (nothing
    /// needs it, and the trust store may not be read yet).
    fn signature_key(
        &self,
        cache: CacheUse<'_>,
        sig_part: impl FnOnce() -> String,
    ) -> Option<String> {
        if self.signature_mode() == SignatureMode::Off {
            Some(signature::OFF_KEY.to_string())
        } else if cache.cache.is_some() {
            Some(signature::cache_key(self.store(), &sig_part()))
        } else {
            None
        }
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
        record.signature = hit.signature.as_ref().and_then(|s| s.facts.clone());
        if self.signature_mode() == SignatureMode::Warn && hit.refusal.is_none() {
            signature::warn_loaded(record);
        }
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
    /// to record it in the verdict cache. `known`: the SHA-256 the verdict cache holds
    /// for this unchanged file (same identity), reported as is when only the report or
    /// the cache needs it, as for every other file the cache answers for; pinning
    /// always hashes the bytes that will run.
    fn hash_and_pin(
        &self,
        image: &Image,
        name: &OsStr,
        path: &Path,
        record: &mut LibraryRecord,
        for_cache: bool,
        known: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.pins.is_none() && !self.options.always_hash && !for_cache {
            return Ok(());
        }
        if let (None, Some(known)) = (&self.pins, known) {
            if let Some(facts) = record.file.as_mut() {
                facts.sha256 = Some(known.to_string());
            }
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

    /// Step 5b: the signature of `image` under the session's mode (`prehash`: its
    /// BLAKE2b, when started early). `Err` when the library must not load (enforce, or
    /// a revoked key or build).
    fn check_signature(
        &self,
        image: &Image,
        name: &OsStr,
        path: &Path,
        sig: Option<&SigFile>,
        record: &mut LibraryRecord,
        prehash: signature::Prehash,
    ) -> Result<(), Refusal> {
        let Some(sig) = sig else {
            record.signature = Some(signature::off());
            return Ok(());
        };
        let verdict = signature::verify(
            image,
            name,
            path,
            sig,
            self.store(),
            &mut record.file,
            prehash,
        );
        match verdict {
            Ok(facts) => {
                record.signature = Some(facts);
                Ok(())
            }
            Err((facts, problem)) => {
                signature::judge(self.signature_mode(), record, facts, problem)
            }
        }
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

    /// The signature mode of this run (the automatic default resolved).
    pub(crate) fn signature_mode(&self) -> SignatureMode {
        match self.store.get() {
            Some(store) => store.mode,
            // Not read yet: the mode is set (`warn` or `enforce`), and the store keeps it.
            None => self.options.signatures.mode.unwrap_or(SignatureMode::Off),
        }
    }

    /// The effective uid owners are judged against.
    pub(crate) fn euid(&self) -> u32 {
        self.euid
    }
}

/// What [`Session::prepare`] records as it goes: the plugins accepted so far, the
/// library's record and the identity of the file opened.
type PrepareFacts<'l, 'r> = (
    &'l [(String, PathBuf)],
    &'r mut LibraryRecord,
    &'r mut Option<FileIdentity>,
);

/// How [`Session::examine_with`] uses the verdict cache.
#[derive(Clone, Copy)]
pub(crate) struct CacheUse<'c> {
    /// `None`: no cache.
    pub(crate) cache: Option<&'c VerdictCache>,
    /// Take a cached verdict as the file's verdict (without reading or loading it);
    /// when `false` the file is checked in full and the cached verdict only travels
    /// with the [`Prepared`] library (see [`Prepared::cached_verdict`]).
    pub(crate) answer: bool,
    /// Hash the file for the cache entry.
    pub(crate) hash_for_cache: bool,
}

impl CacheUse<'_> {
    /// No cache: check in full.
    pub(crate) const NONE: CacheUse<'static> = CacheUse {
        cache: None,
        answer: false,
        hash_for_cache: false,
    };
}

/// What steps 1–6 end with.
enum Prepare {
    /// The verdict of the cache (`Ok`: accepted), nothing read.
    FromCache(Result<(), Refusal>),
    /// The sealed image that passed steps 1–6, and the cache's verdict for the file
    /// when it had one.
    Image {
        image: Image,
        cached: Option<Box<CachedVerdict>>,
    },
}

/// Steps 7–9 on an image that passed steps 1–6 (in this process, or in the child
/// that was handed its sealed copy): `dlopen`, verify, info, construct.
pub(crate) fn finish(
    image: Image,
    path: &Path,
    loaded: &[(String, PathBuf)],
    record: &mut LibraryRecord,
) -> Result<Accepted, Refusal> {
    // 7. Load exactly the bytes checked above and read its root module.
    tracing::debug!(path = ?path, "dlopen: the library's constructors run now");
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
    Ok((plugin_info, resolver))
}

/// Step 6 for an image handed over by another process.
pub(crate) fn recheck(image: &Image, path: &Path) -> Result<(), Refusal> {
    precheck(image, path)
}

/// The duplicate-name rule for a library accepted elsewhere (by a child process).
pub(crate) fn check_unique(
    info: &PluginInfo,
    path: &Path,
    loaded: &[(String, PathBuf)],
) -> Result<(), Refusal> {
    info::check_unique(info, path, loaded)
}

/// Step 4: the size limit, then one read of the whole file, which must still have the
/// size `fstat` gave.
fn read(
    file: File,
    meta: &Metadata,
    path: &Path,
    follow: Option<&mut dyn FnMut(File, std::sync::Arc<crate::image::CopyProgress>)>,
) -> Result<Image, Refusal> {
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
    let charge = crate::image::Charge::reserve(meta.len()).map_err(|held| {
        Refusal::new(
            Stage::Format,
            RefusalKind::TooLarge,
            format!(
                "{p} is {} bytes, and the plugin libraries held now take {held}: at most {} \
                 MiB of libraries are held at once, all together; remove the libraries \
                 that are not needed (old versions, duplicates, padded or debug builds)",
                meta.len(),
                crate::image::MAX_HELD_TOTAL >> 20
            ),
        )
    })?;
    let image = Image::read(file, meta.len(), path, charge, follow).map_err(|e| {
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

/// Step 4 with the BLAKE2b a prehashed signature `sig` covers started on a thread of
/// its own, following the copy as it is made ([`signature::Prehash::follow`]).
fn read_hashing(
    file: File,
    meta: &Metadata,
    path: &Path,
    sig: Option<&SigFile>,
) -> Result<(Image, signature::Prehash), Refusal> {
    let mut prehash = signature::Prehash::none();
    let mut follow = |fd, progress| prehash = signature::Prehash::follow(fd, progress);
    let follow: Option<&mut dyn FnMut(_, _)> =
        signature::Prehash::wanted(sig).then_some(&mut follow);
    let image = read(file, meta, path, follow)?;
    Ok((image, prehash))
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
