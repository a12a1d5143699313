//! What the loader reports: a [`Verdict`] per file, a [`Refusal`] (stage, kind and
//! one-line message) for every file refused, and the facts gathered on the way.
#![forbid(unsafe_code)]

use std::{fmt, path::PathBuf, time::Duration, time::SystemTime};

use provtarget_abi::{
    host::{PluginInfo, PluginResolver},
    ConfigKey,
};

/// Declares, from one table of `Variant => "name"` rows, both directions of an
/// enum's stable names: `as_str` (an exhaustive match, so a new variant without a
/// name does not compile) and `parse` (its inverse).
macro_rules! names {
    ($ty:ident; #[$as_doc:meta] as_str; #[$parse_doc:meta] parse; $($variant:ident => $name:literal,)*) => {
        impl $ty {
            #[$as_doc]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            #[$parse_doc]
            pub fn parse(name: &str) -> Option<$ty> {
                match name {
                    $($name => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        /// Written as its stable name ([`as_str`](Self::as_str)).
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Read from its stable name; any other text is an error naming the names
        /// allowed.
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let name = String::deserialize(d)?;
                $ty::parse(&name).ok_or_else(|| {
                    serde::de::Error::unknown_variant(&name, &[$($name,)*])
                })
            }
        }
    };
}

/// The stage at which a library was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the file failed.
    Open,
    /// Owner, mode or file type failed the trust rule.
    Trust,
    /// SHA-256 pinning refused it.
    Pin,
    /// Not a well-formed library for this platform, or built in a way the host cannot
    /// contain (checked before `dlopen`).
    Format,
    /// The dynamic linker refused it.
    Load,
    /// It is not a provtarget plugin (no root module).
    RootModule,
    /// Built with an incompatible abi_stable.
    AbiHeader,
    /// Interface version or layout mismatch.
    Interface,
    /// Plugin info invalid (empty name, version not semver).
    Info,
    /// Not a Provisioning Target Resolver.
    PluginType,
    /// Its constructor failed or panicked.
    Constructor,
    /// Another library already provides a plugin of that name.
    Duplicate,
    /// Its signature is missing, invalid, untrusted or revoked
    /// (`plugin.provtarget.signatures = enforce`), or its build or key is revoked.
    Signature,
}

names! {
    Stage;
    /// A short lower-case name, as shown in reports and JSON.
    as_str;
    /// The stage whose [`Stage::as_str`] is `name`.
    parse;
    Open => "open",
    Trust => "trust",
    Pin => "pin",
    Format => "format",
    Load => "load",
    RootModule => "root-module",
    AbiHeader => "abi-header",
    Interface => "interface",
    Info => "info",
    PluginType => "plugin-type",
    Constructor => "constructor",
    Duplicate => "duplicate",
    Signature => "signature",
}

/// What exactly was wrong, for callers that branch on a refusal instead of reading
/// its message. New kinds may be added; match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The file (or its directory) could not be opened, listed, stat'ed or read, or
    /// the path names no file.
    Unreadable,
    /// A symlink where a plugin file or plugin directory must be (a plugin directory
    /// is judged by its last component, however the path is spelled).
    Symlink,
    /// Not a regular file (a directory, FIFO, socket or device), or a plugin
    /// directory path naming something other than a directory.
    NotRegularFile,
    /// Owned by someone other than root or the user running the host.
    BadOwner,
    /// Group- or world-writable.
    WritableByOthers,
    /// The file changed size while it was being read.
    ChangedWhileRead,
    /// Larger than any plugin library; refused unread.
    TooLarge,
    /// The pin file pins no build of this file name.
    PinMissing,
    /// The file's SHA-256 differs from its pin.
    PinMismatch,
    /// The pin file pins this file name with several different hashes.
    PinConflict,
    /// The pin file cannot be used (missing, untrusted, malformed): nothing loads.
    PinFileUnusable,
    /// Not an ELF file at all (empty, text, no magic number).
    NotElf,
    /// An ELF file of another class or byte order than this host.
    WrongClass,
    /// An ELF file for another machine architecture.
    WrongMachine,
    /// An ELF file that is not a shared library (an executable, no dynamic section,
    /// no loadable segment).
    NotASharedLibrary,
    /// Malformed ELF: impossible offsets, sizes or counts.
    Malformed,
    /// A header, table or segment lies past the end of the file: a partial copy.
    Truncated,
    /// A shared library that does not export the provtarget root module (decided
    /// from its dynamic symbol table, before `dlopen`).
    NoRootSymbol,
    /// Built with `panic = "abort"`: its first panic would end the host, so it is
    /// refused before any of its code runs.
    PanicAbortBuild,
    /// The dynamic linker refused it (missing dependency, wrong format...).
    DlopenFailed,
    /// It needs a symbol that neither the host nor its libraries provide.
    UnresolvedSymbol,
    /// abi_stable found no provtarget root module in the loaded library.
    NotAPlugin,
    /// Built with an incompatible abi_stable.
    AbiStableMismatch,
    /// Built against an incompatible interface version of the contract.
    InterfaceMismatch,
    /// Its types' layout differs from the contract it claims.
    LayoutMismatch,
    /// Its plugin info is invalid (empty name, control characters, version not
    /// semver).
    BadInfo,
    /// It calls itself by a name reserved for the built-in resolver.
    ReservedName,
    /// Not a Provisioning Target Resolver.
    WrongType,
    /// Its root module or its constructor failed or panicked.
    ConstructorFailed,
    /// A plugin of the same name was already loaded from an earlier file.
    Duplicate,
    /// Loading it in a child process killed the child (a signal, `exit()`, or no
    /// answer before the deadline): its load-time code would have taken the host down.
    CrashedWhileLoading,
    /// The library, once loaded, is not the plugin its verdict-cache entry described
    /// (name, version, type or interface): the entry is dropped.
    CacheMismatch,
    /// No `.minisig` beside it while signatures are enforced.
    Unsigned,
    /// Its signature file is unusable (a FIFO, too large, garbage) or does not match
    /// its bytes.
    BadSignature,
    /// Signed by a key that is not in the trusted-keys directory (or none is usable).
    UntrustedKey,
    /// Signed by a key in the revocation list.
    RevokedKey,
    /// Its SHA-256 is in the revocation list.
    RevokedBuild,
    /// Its signature binds another file name, plugin name or interface.
    SignatureMismatch,
    /// Its signing key may not sign a plugin of that name.
    NameNotAllowed,
}

names! {
    RefusalKind;
    /// A short kebab-case name (`panic-abort-build`...), stable for JSON and logs.
    as_str;
    /// The kind whose [`RefusalKind::as_str`] is `name`.
    parse;
    Unreadable => "unreadable",
    Symlink => "symlink",
    NotRegularFile => "not-regular-file",
    BadOwner => "bad-owner",
    WritableByOthers => "writable-by-others",
    ChangedWhileRead => "changed-while-read",
    TooLarge => "too-large",
    PinMissing => "pin-missing",
    PinMismatch => "pin-mismatch",
    PinConflict => "pin-conflict",
    PinFileUnusable => "pin-file-unusable",
    NotElf => "not-elf",
    WrongClass => "wrong-class",
    WrongMachine => "wrong-machine",
    NotASharedLibrary => "not-a-shared-library",
    Malformed => "malformed",
    Truncated => "truncated",
    NoRootSymbol => "no-root-symbol",
    PanicAbortBuild => "panic-abort-build",
    DlopenFailed => "dlopen-failed",
    UnresolvedSymbol => "unresolved-symbol",
    NotAPlugin => "not-a-plugin",
    AbiStableMismatch => "abi-stable-mismatch",
    InterfaceMismatch => "interface-mismatch",
    LayoutMismatch => "layout-mismatch",
    BadInfo => "bad-info",
    ReservedName => "reserved-name",
    WrongType => "wrong-type",
    ConstructorFailed => "constructor-failed",
    Duplicate => "duplicate",
    CrashedWhileLoading => "crashed-while-loading",
    CacheMismatch => "cache-mismatch",
    Unsigned => "unsigned",
    BadSignature => "bad-signature",
    UntrustedKey => "untrusted-key",
    RevokedKey => "revoked-key",
    RevokedBuild => "revoked-build",
    SignatureMismatch => "signature-mismatch",
    NameNotAllowed => "name-not-allowed",
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a library was refused: where, what exactly, and one line naming the file and
/// the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The check that refused it.
    pub stage: Stage,
    /// What was wrong, to branch on.
    pub kind: RefusalKind,
    /// One line (no newline, control characters escaped) naming the file and what to
    /// do.
    pub message: String,
}

impl Refusal {
    /// A refusal at `stage` of `kind`, saying `message`.
    pub fn new(stage: Stage, kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            stage,
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Loaded and constructed.
    Loaded,
    /// Refused, saying where and why.
    Rejected(Refusal),
    /// Not considered (e.g. a dotfile or another suffix), with why.
    Skipped {
        /// Why it was skipped.
        reason: String,
    },
}

impl Verdict {
    /// `loaded`, `rejected` or `skipped`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Loaded => "loaded",
            Verdict::Rejected(_) => "rejected",
            Verdict::Skipped { .. } => "skipped",
        }
    }

    /// The refusal's message or the skip reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Loaded => None,
            Verdict::Rejected(refusal) => Some(&refusal.message),
            Verdict::Skipped { reason } => Some(reason),
        }
    }

    /// The refusal, when the file was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Verdict::Rejected(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// Facts about the file itself, taken from the open descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// SHA-256 of the contents, lower-case hex: computed when pinning is on or
    /// [`LoaderOptions::always_hash`](crate::LoaderOptions::always_hash) is set, and
    /// the file got as far as being read (a file refused for its owner or mode is not
    /// read).
    pub sha256: Option<String>,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// What the plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFacts {
    /// The plugin's self-description (name, version, type, vendor, canaries...).
    pub info: PluginInfo,
    /// The interface layout it was read with (e.g. `1.0.0`).
    pub interface_version: String,
    /// The configuration keys it declares.
    pub config_keys: Vec<ConfigKey>,
}

/// Everything recorded about one library file.
#[derive(Debug, Clone)]
pub struct LibraryRecord {
    /// The path as found in the directory.
    pub path: PathBuf,
    /// Loaded, rejected or skipped.
    pub verdict: Verdict,
    /// File facts, when the file could be opened.
    pub file: Option<FileFacts>,
    /// Plugin facts, when the library could be read.
    pub plugin: Option<PluginFacts>,
    /// Time spent on this file.
    pub load_time: Duration,
    /// The verdict and plugin facts come from the verdict cache: the file is
    /// unchanged since an earlier run judged it, and it was not loaded this run.
    pub cached: bool,
    /// Its signature, when signatures were checked this run or recorded with its
    /// cached verdict (`None` when the file was not read).
    pub signature: Option<crate::SignatureFacts>,
    /// What its verdict is bound to in the verdict cache besides its identity: the
    /// signature mode, trust store and signature file.
    pub(crate) signature_key: Option<String>,
}

impl LibraryRecord {
    /// A record for `path` before any check: facts unknown, verdict to be decided.
    pub(crate) fn new(path: impl Into<PathBuf>) -> LibraryRecord {
        LibraryRecord {
            path: path.into(),
            verdict: Verdict::Loaded,
            file: None,
            plugin: None,
            load_time: Duration::ZERO,
            cached: false,
            signature: None,
            signature_key: None,
        }
    }

    /// A record for `path` with `verdict`, logged.
    pub(crate) fn decided(path: impl Into<PathBuf>, verdict: Verdict) -> LibraryRecord {
        let mut record = LibraryRecord::new(path);
        record.verdict = verdict;
        record.log();
        record
    }

    /// One `tracing` event per verdict: info when loaded, warn when rejected (none when
    /// [`log_verdicts`] turned it off).
    pub(crate) fn log(&self) {
        if VERDICTS_LOGGED_BY_HOST.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // Every field is escaped: `%` fields are written raw by the log formatter, and
        // a file name may hold newlines or escape sequences. Field expressions are
        // evaluated only when the event is enabled (a directory may hold thousands of
        // skipped files, whose debug events are usually off).
        // Fields are quoted (`?`: Rust's escaping of a `str`), so a name like
        // `x=1 ok=2` cannot forge fields of its own.
        let path = || crate::text::shown(&self.path);
        match &self.verdict {
            Verdict::Loaded => {
                let plugin = self.plugin.as_ref();
                let name = plugin.map_or("", |p| p.info.name.as_str());
                let version = plugin.map_or("", |p| p.info.version.as_str());
                let interface = plugin.map_or("", |p| p.interface_version.as_str());
                let load_time_us = self.load_time.as_micros() as u64;
                match self.file.as_ref().and_then(|f| f.sha256.as_deref()) {
                    Some(sha256) => tracing::info!(
                        path = ?self.path,
                        plugin = ?name,
                        version = ?version,
                        interface = ?interface,
                        sha256,
                        load_time_us,
                        cached = self.cached,
                        "loaded provtarget plugin"
                    ),
                    // Not hashed this run (no pins, no report asked for it): said so,
                    // never an empty field.
                    None => tracing::info!(
                        path = ?self.path,
                        plugin = ?name,
                        version = ?version,
                        interface = ?interface,
                        sha256 = "not-hashed",
                        load_time_us,
                        cached = self.cached,
                        "loaded provtarget plugin"
                    ),
                }
            }
            Verdict::Rejected(refusal) if !RefusalLog::name_one() => {
                tracing::debug!(
                    path = ?self.path,
                    stage = refusal.stage.as_str(),
                    kind = refusal.kind.as_str(),
                    "refused plugin library: {}",
                    crate::text::printable(&refusal.message)
                );
            }
            Verdict::Rejected(refusal) => {
                tracing::warn!(
                    path = ?self.path,
                    stage = refusal.stage.as_str(),
                    kind = refusal.kind.as_str(),
                    "refused plugin library: {}",
                    crate::text::printable(&refusal.message)
                );
            }
            Verdict::Skipped { reason } => {
                tracing::debug!(path = %path(), "skipped: {}", crate::text::printable(reason));
            }
        }
    }
}

/// A loaded plugin with its constructed resolver.
pub struct LoadedPlugin {
    /// Index of this plugin's entry in [`LoadReport::libraries`].
    pub record: usize,
    /// The plugin's self-description.
    pub info: PluginInfo,
    /// The resolver its constructor returned.
    pub resolver: PluginResolver,
}

/// The result of scanning the configured directories.
#[derive(Default)]
pub struct LoadReport {
    /// Every file found, in scan order (directory order, then file name).
    pub libraries: Vec<LibraryRecord>,
    /// The loaded plugins, in the same order.
    pub plugins: Vec<LoadedPlugin>,
    /// Conditions worth a warning (e.g. the developer override is on, a configured
    /// directory is missing or refused).
    pub warnings: Vec<String>,
    /// The signature mode the libraries were checked under (the automatic default
    /// resolved); `None` when nothing was scanned.
    pub signatures: Option<crate::SignatureMode>,
}

/// How many refused libraries one scan names in a warning each: a directory of junk
/// files (50,000 empty `lib*.so`) must not write one line per file. The rest are
/// logged at debug level and counted in one warning at the end of the scan
/// ([`RefusalLog::finish`]); every one of them is still in the report (buildinfo).
pub(crate) const MAX_NAMED_REFUSALS: usize = 10;

/// Refusals logged at warn level in the current scan (reset by [`RefusalLog::begin`]).
static REFUSALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The bound on the refusal warnings of one scan.
pub(crate) struct RefusalLog;

impl RefusalLog {
    /// A scan starts: the first [`MAX_NAMED_REFUSALS`] refusals are named again.
    pub(crate) fn begin() -> RefusalLog {
        REFUSALS.store(0, std::sync::atomic::Ordering::Relaxed);
        RefusalLog
    }

    /// Whether the refusal being logged is named in a warning (else debug only).
    fn name_one() -> bool {
        REFUSALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_NAMED_REFUSALS
    }

    /// The summary of the refusals not named, when there were any.
    pub(crate) fn finish(self) -> Option<String> {
        let total = REFUSALS.load(std::sync::atomic::Ordering::Relaxed);
        let more = total.checked_sub(MAX_NAMED_REFUSALS).filter(|n| *n > 0)?;
        Some(format!(
            "{more} more plugin libraries were refused ({total} in all; the first \
             {MAX_NAMED_REFUSALS} are named above): run provtarget buildinfo to see each \
             and why, and remove the files that are not plugins"
        ))
    }
}

/// Set when this process's verdicts are reported by someone else (see
/// [`log_verdicts`]).
static VERDICTS_LOGGED_BY_HOST: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether each library's verdict is logged here (the default). Turned off in a child
/// process that loads a library for its host (crash isolation), since the host logs
/// each verdict once when the child reports it, and by a command whose output is the
/// verdict itself (`plugins check`): else every verdict would be shown twice.
pub fn log_verdicts(on: bool) {
    VERDICTS_LOGGED_BY_HOST.store(!on, std::sync::atomic::Ordering::Relaxed);
}
/// How the plugin a library really is (`actual`, read from it once loaded, here or in
/// a child) differs from what its verdict-cache entry said (`cached`, which the
/// selection used): `None` when name, version, plugin type and interface all agree.
/// The verdict cache is a hint, never an authority over what runs: a mismatch refuses
/// the library (see [`cache_mismatch_refusal`]).
pub fn cache_mismatch(cached: &PluginFacts, actual: &PluginFacts) -> Option<String> {
    let (c, a) = (&cached.info, &actual.info);
    let p = crate::text::printable;
    let mut differences = Vec::new();
    if c.name != a.name {
        differences.push(format!("name {:?}, not {:?}", p(&a.name), p(&c.name)));
    }
    if c.version != a.version {
        differences.push(format!("version {}, not {}", p(&a.version), p(&c.version)));
    }
    if c.plugin_type_id != a.plugin_type_id {
        differences.push(format!(
            "plugin type {}, not {}",
            a.plugin_type_id, c.plugin_type_id
        ));
    }
    if cached.interface_version != actual.interface_version {
        differences.push(format!(
            "interface {}, not {}",
            p(&actual.interface_version),
            p(&cached.interface_version)
        ));
    }
    (!differences.is_empty()).then(|| differences.join(", "))
}

/// The refusal of the library at `path` whose loaded plugin differs from its
/// verdict-cache entry (`differences` from [`cache_mismatch`]).
pub fn cache_mismatch_refusal(path: &std::path::Path, differences: &str) -> Refusal {
    Refusal::new(
        Stage::Load,
        RefusalKind::CacheMismatch,
        format!(
            "{} is not the plugin its verdict-cache entry describes (it has {differences}); \
             refused, and the entry dropped: the next run checks it in full (if this \
             repeats, check who writes to the cache directory)",
            crate::text::shown(path)
        ),
    )
}
