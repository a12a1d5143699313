//! The gate between the checks that run no code of a library and the load that does:
//! loading in two halves, so that a library's code can run in another process first:
//! [`prepare_file`] / [`load_all_gated`] run every check that needs no code of the
//! file (open, trust, facts, sealed copy, hash, pin, ELF) and hand over a
//! [`Prepared`] library whose sealed copy can be given to a child; the child calls
//! [`load_sealed`] on that descriptor (`dlopen`, verify, info, constructor). With the
//! verdict cache, [`load_with_gated`] hands over only new or changed files and the
//! selected plugins, each with the cache's verdict when it has one.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    time::Instant,
};

use crate::{
    cache::CachedVerdict, image::Image, pipeline, text::shown, LibraryRecord, LoadedPlugin,
    PluginFacts, Refusal, RefusalKind, Stage, Verdict,
};

/// A library that passed every check made without running its code.
pub struct Prepared {
    pub(crate) record: LibraryRecord,
    pub(crate) image: Image,
    pub(crate) started: Instant,
    /// The verdict cache's entry for this very file (same identity), when it has one.
    pub(crate) cached: Option<Box<CachedVerdict>>,
    /// The `(name, path)` of the plugins accepted before it in this run, for the
    /// duplicate-name rule of a verdict decided elsewhere.
    pub(crate) loaded: Vec<(String, PathBuf)>,
    /// The signature mode of the run, for the checks that need the plugin's own
    /// facts (its name and interface against the signature's).
    pub(crate) signature_mode: crate::SignatureMode,
}

impl Prepared {
    /// What is known so far (path, file facts with the SHA-256 when hashed); the
    /// verdict is still [`Verdict::Loaded`] until [`Prepared::load`] decides.
    pub fn record(&self) -> &LibraryRecord {
        &self.record
    }

    /// What the verdict cache ([`crate::LoaderOptions::cache_dir`]) recorded for this
    /// file when an earlier run judged it and its identity
    /// ([`crate::FileIdentity`]) has not changed since: a crash-isolating host need
    /// not load it in a child again to know its verdict. `None` for a new or changed
    /// file, or without a cache. Steps 1–6 have run on its bytes all the same.
    pub fn cached_verdict(&self) -> Option<&CachedVerdict> {
        self.cached.as_deref()
    }

    /// Whether a plugin named `name` was accepted earlier in this run (this library
    /// would be refused as its duplicate).
    pub fn name_taken(&self, name: &str) -> bool {
        self.loaded.iter().any(|(n, _)| n == name)
    }

    /// The sealed in-memory copy whose bytes were checked, to hand to a child process
    /// (which loads it with [`load_sealed`]); `None` where no sealed copy could be
    /// made (no `memfd`), so a child could not be sure to load the same bytes.
    pub fn sealed_fd(&self) -> Option<BorrowedFd<'_>> {
        self.image.is_sealed().then(|| self.image.fd().as_fd())
    }

    /// Loads it in this process: `dlopen`, verify, info, constructor. `loaded` lists
    /// the `(name, path)` of plugins already loaded, for the duplicate-name rule.
    pub fn load(self, loaded: &[(String, PathBuf)]) -> (LibraryRecord, Option<LoadedPlugin>) {
        let Prepared {
            mut record,
            image,
            started,
            signature_mode,
            ..
        } = self;
        let path = record.path.clone();
        let accepted = match pipeline::finish(image, &path, loaded, &mut record)
            .and_then(|accepted| check_signed_facts(signature_mode, &mut record).map(|()| accepted))
        {
            Ok(accepted) => Some(accepted),
            Err(refusal) => {
                record.verdict = Verdict::Rejected(refusal);
                None
            }
        };
        record.load_time = started.elapsed();
        record.log();
        let plugin = accepted.map(|(info, resolver)| LoadedPlugin {
            record: 0,
            info,
            resolver,
        });
        (record, plugin)
    }

    /// Refuses it without loading it (e.g. a child that loaded it crashed).
    pub fn refuse(self, refusal: Refusal) -> LibraryRecord {
        let mut record = self.record;
        record.verdict = Verdict::Rejected(refusal);
        record.load_time = self.started.elapsed();
        record.log();
        record
    }

    /// Its record as decided elsewhere (e.g. by a child process that loaded it):
    /// `verdict` and `plugin` replace the ones here; file facts are kept. An accepted
    /// plugin whose name an earlier file of this run already has is refused as a
    /// duplicate, as it would be here.
    pub fn decided_elsewhere(self, verdict: Verdict, plugin: Option<PluginFacts>) -> LibraryRecord {
        let mut record = self.record;
        record.verdict = match (verdict, &plugin) {
            (Verdict::Loaded, Some(facts)) => {
                match pipeline::check_unique(&facts.info, &record.path, &self.loaded) {
                    Ok(()) => Verdict::Loaded,
                    Err(refusal) => Verdict::Rejected(refusal),
                }
            }
            (verdict, _) => verdict,
        };
        record.plugin = plugin;
        if record.verdict == Verdict::Loaded {
            if let Err(refusal) = check_signed_facts(self.signature_mode, &mut record) {
                record.verdict = Verdict::Rejected(refusal);
            }
        }
        record.load_time = self.started.elapsed();
        record.log();
        record
    }
}

/// What a gate decides about a prepared library.
pub enum Gated {
    /// Load it in this process, as [`crate::load_all`] would.
    Load(Prepared),
    /// Decided by the gate (refused, or loaded elsewhere, e.g. by a child process):
    /// this record is the library's entry in the report, and nothing is loaded here.
    Decided(LibraryRecord),
}

/// Decides, for each library that passed every check made without running its code,
/// whether it is loaded in this process: a [`Gatekeeper`] (any
/// `FnMut(Prepared) -> Gated` closure is one).
pub type Gate<'a> = dyn Gatekeeper + 'a;

/// What a [`Gate`] is told: each library that passed every check made without running
/// its code ([`Gatekeeper::judge`]), and, earlier, each library whose signature is
/// still being verified when every other such check has passed
/// ([`Gatekeeper::verifying`]), so that a child can be handed its sealed copy, check
/// it and wait, running none of its code, while the host verifies.
pub trait Gatekeeper {
    /// Decides whether `prepared` is loaded in this process.
    fn judge(&mut self, prepared: Prepared) -> Gated;

    /// `library` passed every check made without running its code except its
    /// signature, which is being verified now. Whatever the gatekeeper does with its
    /// sealed copy must run none of its code: the library reaches
    /// [`Gatekeeper::judge`] once verified, or [`Gatekeeper::withdrawn`] if refused.
    /// Nothing by default.
    fn verifying(&mut self, library: Verifying<'_>) {
        let _ = library;
    }

    /// The library at `path`, announced by [`Gatekeeper::verifying`], was refused (its
    /// signature): it never reaches [`Gatekeeper::judge`], and nothing of it may run.
    /// Nothing by default.
    fn withdrawn(&mut self, path: &Path) {
        let _ = path;
    }
}

impl<F: FnMut(Prepared) -> Gated> Gatekeeper for F {
    fn judge(&mut self, prepared: Prepared) -> Gated {
        self(prepared)
    }
}

/// A library whose signature is being verified, every other check made without
/// running its code passed: see [`Gatekeeper::verifying`].
pub struct Verifying<'a> {
    pub(crate) path: &'a Path,
    pub(crate) image: &'a Image,
    pub(crate) cached: bool,
}

impl Verifying<'_> {
    /// The library's path.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// Its sealed in-memory copy (the bytes being verified, and the ones
    /// [`Prepared::sealed_fd`] will give once verified).
    pub fn sealed_fd(&self) -> BorrowedFd<'_> {
        self.image.fd().as_fd()
    }

    /// Whether the verdict cache holds a verdict for this very file
    /// ([`Prepared::cached_verdict`] will then be `Some`).
    pub fn cached(&self) -> bool {
        self.cached
    }
}

/// Like [`crate::load_all`], but each library that passed every check made without
/// running its code is handed to `gate` first, which loads it here
/// ([`Gated::Load`]) or decides its record itself ([`Gated::Decided`]). With a gate
/// that always loads, this is exactly `load_all`.
pub fn load_all_gated(options: &crate::LoaderOptions, gate: &mut Gate<'_>) -> crate::LoadReport {
    load_with_gated(options, |names| (0..names.len()).collect(), gate)
}

/// [`crate::load_with`] (the verdict cache answers for unchanged files; only the
/// plugins `select` picks are loaded) with a `gate` before every load, as in
/// [`load_all_gated`]. A file the cache answers for never reaches the gate; a
/// selected plugin known only from the cache is checked in full (steps 1–6 on its
/// bytes) and then reaches the gate, its cached verdict in
/// [`Prepared::cached_verdict`].
pub fn load_with_gated(
    options: &crate::LoaderOptions,
    select: impl FnMut(&[&str]) -> Vec<usize>,
    gate: &mut Gate<'_>,
) -> crate::LoadReport {
    crate::scan::load_scan(options, select, Some(gate))
}

/// The first half of [`crate::check_file`]: every check on `path` that needs no code
/// of it. `Err` is the final record of a refused file.
pub fn prepare_file(
    path: &Path,
    options: &crate::LoaderOptions,
) -> Result<Prepared, Box<LibraryRecord>> {
    crate::scan::prepare_file(path, options)
}

/// The second half, in the process that may run the library's code: `dlopen`s the
/// sealed copy `fd` made by [`Prepared`] in another process (`path` names it in
/// messages), re-runs the ELF pre-check on it, verifies it, reads its information and
/// constructs the resolver. A descriptor that is not a sealed copy is refused.
/// [`check_sealed`] then [`Sealed::load`].
pub fn load_sealed(fd: OwnedFd, path: &Path) -> (LibraryRecord, Option<LoadedPlugin>) {
    match check_sealed(fd, path) {
        Ok(sealed) => sealed.load(),
        Err(record) => (*record, None),
    }
}

/// The checks [`load_sealed`] makes before `dlopen`, none of which runs code of the
/// library: `fd` must be a sealed copy, and its bytes pass the ELF pre-check. `Err` is
/// the final record of a refused copy.
pub fn check_sealed(fd: OwnedFd, path: &Path) -> Result<Sealed, Box<LibraryRecord>> {
    let started = Instant::now();
    let record = LibraryRecord::new(path);
    #[cfg(target_os = "linux")]
    let image = Image::from_sealed(File::from(fd));
    #[cfg(not(target_os = "linux"))]
    let image: std::io::Result<Image> = {
        let _ = fd;
        Err(std::io::Error::other("sealed copies need Linux"))
    };
    let image = match image {
        Ok(image) => image,
        Err(e) => {
            let refusal = Refusal::new(
                Stage::Open,
                RefusalKind::Unreadable,
                format!("cannot read {}: {e}", shown(path)),
            );
            return Err(Box::new(refuse(record, refusal, started)));
        }
    };
    if let Err(refusal) = pipeline::recheck(&image, path) {
        return Err(Box::new(refuse(record, refusal, started)));
    }
    Ok(Sealed(Prepared {
        record,
        image,
        started,
        cached: None,
        loaded: Vec::new(),
        // The host checked the signature before handing the copy over (or before
        // telling the child to load it).
        signature_mode: crate::SignatureMode::Off,
    }))
}

/// A sealed copy received from another process that passed [`check_sealed`]; nothing
/// of it has run.
pub struct Sealed(Prepared);

impl Sealed {
    /// Loads it here: `dlopen`, verify, info, constructor.
    pub fn load(self) -> (LibraryRecord, Option<LoadedPlugin>) {
        self.0.load(&[])
    }
}

/// The signature's `name:` and `interface:` fields against the loaded plugin's facts.
fn check_signed_facts(
    mode: crate::SignatureMode,
    record: &mut LibraryRecord,
) -> Result<(), Refusal> {
    let (Some(sig), Some(plugin)) = (&record.signature, &record.plugin) else {
        return Ok(());
    };
    match crate::signature::check_loaded(sig, plugin, &record.path) {
        None => Ok(()),
        Some(problem) => crate::signature::judge(mode, record, sig.clone(), problem),
    }
}

fn refuse(mut record: LibraryRecord, refusal: Refusal, started: Instant) -> LibraryRecord {
    record.verdict = Verdict::Rejected(refusal);
    record.load_time = started.elapsed();
    record.log();
    record
}
