//! The verdict cache: what the loader decided about each library file, kept between
//! runs so an unchanged file need not be loaded (its code run) again to be reported.
//!
//! One file, `<cache_dir>/verdicts.json` ([`CACHE_FILE_NAME`]), holds one entry per
//! library path: the file's [`FileIdentity`] (device, inode, size, mtime and ctime
//! with nanoseconds), its SHA-256 when it was computed, and the verdict: accepted
//! with the plugin's information and configuration keys, or refused with the typed
//! [`Refusal`] (stage, kind, message). The whole file is bound to the host's own
//! build ([`host_build_key`]): a cache written by another build is never trusted.
//!
//! Only verdicts that follow from the file's bytes and the host's build are kept:
//! accepted files, and refusals at the format, root-module, abi-header, interface,
//! info and plugin-type stages. Refusals that depend on anything else are decided
//! again every run: trust (owner and mode are checked on every run before the cache
//! is consulted), pins (the pin file may change; it is checked against the cached
//! SHA-256 for a file that will not run, and against the sealed bytes for one that
//! will), `dlopen` failures (a missing dependency may be installed), constructor
//! failures (a constructor may depend on its environment) and duplicates (they depend
//! on the other files).
//!
//! The cache is read the way plugins are: its directory opened with `O_NOFOLLOW` and
//! judged by the same owner/mode rule as a plugin directory, the file opened with
//! `O_NOFOLLOW` relative to it, judged on the open descriptor (regular file, owned by
//! root or us, not group- or world-writable), read up to [`MAX_CACHE_FILE`] bytes. A
//! cache that is corrupt, of the wrong shape (a missing or unknown field: entries are
//! the record model of [`crate::record`]), written by another build, foreign-owned,
//! writable by others or a symlink is ignored with a one-line warning and rebuilt,
//! never trusted. A cache of another format version (an older or newer host) is not
//! read either: it is rebuilt, logged at debug level only. A cache directory that cannot be created or is not
//! trusted means no cache (a warning, never an error). The file is replaced
//! atomically: written to a new temporary file in the same directory (mode 0644) and
//! renamed over the old one.
#![forbid(unsafe_code)]

use std::{
    collections::{HashMap, HashSet},
    ffi::OsStr,
    fs::{File, Metadata},
    io::{self, Read, Write},
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use provtarget_abi::host::supported_interfaces;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    record::{PluginRecord, RecordError, SignatureRecord, VerdictRecord},
    sys::{self, Errno},
    text::shown,
    trust, PluginFacts, Refusal, RefusalKind, Stage, Verdict,
};

/// The name of the cache file inside the cache directory.
pub const CACHE_FILE_NAME: &str = "verdicts.json";

/// A cache file larger than this is not read (it is ignored and rebuilt): a real one
/// holds about a kilobyte per library.
pub const MAX_CACHE_FILE: u64 = 4 << 20;

/// At most this many entries are written; the oldest are dropped first.
const MAX_ENTRIES: usize = 2048;

/// The `format` field of a cache file.
const FORMAT: &str = "provtarget-verdict-cache";

/// The layout of the cache file; bumped whenever it changes. A cache of another
/// version (older or newer) is not read: it is rebuilt, and said so at debug level.
/// 2: entries spelled by the record model ([`crate::record`]): `verdict` is a
/// [`VerdictRecord`], `plugin` a [`PluginRecord`], `identity` an object; 1 had them
/// mapped by hand (`refusal`, `sdk`, `identity` as an array).
const VERSION: u64 = 2;

/// What identifies one version of a library file: if any of these changed, the file
/// may have changed, and its cached verdict is not used. Any write changes mtime and
/// ctime, and `chmod`, `chown`, `touch` and replacing the file change ctime, which
/// only the kernel sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    /// Device of the file system.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
    /// Status change time, seconds.
    pub ctime: i64,
    /// Status change time, nanoseconds.
    pub ctime_nsec: i64,
}

impl FileIdentity {
    /// The identity of the file `meta` describes (from `fstat` of the open
    /// descriptor).
    pub fn of(meta: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// A verdict as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedVerdict {
    /// `None`: the file passed every check and its constructor succeeded; else why
    /// it was refused.
    pub refusal: Option<Refusal>,
    /// What the plugin said about itself, when the library got that far.
    pub plugin: Option<PluginFacts>,
    /// The SHA-256 of the file's bytes (lower-case hex), when it was computed.
    pub sha256: Option<String>,
    /// The signature check the verdict was decided with: its binding (signature
    /// mode, trust store and signature file) and its result. A verdict is reused only
    /// under the same binding, so a changed key, `.minisig`, revocation or mode never
    /// reuses a stale verdict. `None` in caches written without it (never reused).
    pub signature: Option<CachedSignature>,
}

/// The signature part of a [`CachedVerdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSignature {
    /// What the verdict is bound to: mode, trust store digest and signature file
    /// digest.
    pub key: String,
    /// The signature as reported.
    pub facts: Option<crate::SignatureFacts>,
}

impl CachedVerdict {
    /// Whether a refusal (`None`: accepted) follows from the file's bytes and the
    /// host's build alone, so it may be cached (see [`VerdictCache`]).
    pub fn cacheable(refusal: Option<&Refusal>) -> bool {
        match refusal {
            None => true,
            Some(r) => {
                matches!(
                    r.stage,
                    Stage::Format
                        | Stage::RootModule
                        | Stage::AbiHeader
                        | Stage::Interface
                        | Stage::Info
                        | Stage::PluginType
                ) && r.kind != RefusalKind::TooLarge
            }
        }
    }
}

struct Entry {
    identity: FileIdentity,
    /// When the entry was recorded (seconds since the epoch), for eviction.
    recorded: u64,
    verdict: CachedVerdict,
}

/// The verdicts of earlier runs, read from the cache directory, and the changes of
/// this run, written back by [`VerdictCache::save`].
///
/// One file, `<cache_dir>/verdicts.json`, bound to [`host_build_key`], one entry per
/// library path with its [`FileIdentity`]. Only verdicts that follow from the bytes
/// and the host build are kept: accepted files, and refusals at the format,
/// root-module, abi-header, interface, info and plugin-type stages. Trust is checked
/// every run before the cache is consulted; pins are checked against the cached
/// SHA-256 for a file that will not run and against the sealed bytes for one that
/// will; `dlopen` failures, constructor failures and duplicates are decided every run.
/// The file and its directory pass the plugins' owner/mode rule and are opened with
/// `O_NOFOLLOW`; a damaged, foreign-build or untrusted cache is ignored with a
/// one-line warning and rebuilt. A crash-isolating prober can ask whether a file is
/// new or changed with [`VerdictCache::lookup`].
pub struct VerdictCache {
    /// The cache directory, opened with `O_NOFOLLOW` and trusted.
    dir: File,
    dir_path: PathBuf,
    entries: HashMap<PathBuf, Entry>,
    dirty: bool,
}

impl VerdictCache {
    /// Opens the cache in `dir` (created with mode 0755 when missing), for a host
    /// running as `euid`. Returns the cache (empty when the file is missing or not
    /// trustworthy) and the warnings to report; `None` when there can be no cache
    /// (the directory cannot be created, is a symlink or is not trusted).
    /// `skip_owner_checks` is the developer override: it skips the owner/mode rule,
    /// as it does for plugins and the pin file.
    pub fn open(
        dir: &Path,
        euid: u32,
        skip_owner_checks: bool,
    ) -> (Option<VerdictCache>, Vec<String>) {
        let mut warnings = Vec::new();
        let dir_file = match open_dir(dir, euid, skip_owner_checks) {
            Ok(f) => f,
            Err(w) => {
                warnings.push(w);
                return (None, warnings);
            }
        };
        let mut cache = VerdictCache {
            dir: dir_file,
            dir_path: dir.to_path_buf(),
            entries: HashMap::new(),
            dirty: false,
        };
        match cache.read(euid, skip_owner_checks) {
            Ok(entries) => cache.entries = entries,
            Err(Some(problem)) => {
                // Rewritten at the end of this run even if nothing else changes.
                cache.dirty = true;
                warnings.push(format!(
                    "verdict cache {problem}; it is ignored (not trusted) and rebuilt: \
                     every library is checked and loaded again (if this repeats, remove it \
                     and check who writes to {})",
                    shown(dir)
                ));
            }
            Err(None) => cache.dirty = true,
        }
        (Some(cache), warnings)
    }

    /// The path of the cache file.
    pub fn file_path(&self) -> PathBuf {
        self.dir_path.join(CACHE_FILE_NAME)
    }

    /// The cached verdict for the library at `path` if its identity is still
    /// `identity`; `None` when it is new, changed or never cached.
    pub fn lookup(&self, path: &Path, identity: &FileIdentity) -> Option<&CachedVerdict> {
        self.entries
            .get(path)
            .filter(|e| e.identity == *identity)
            .map(|e| &e.verdict)
    }

    /// Records `verdict` for the file at `path` with `identity`, replacing what was
    /// there (keeping the SHA-256 of an entry with the same identity when `verdict`
    /// has none). A verdict that may not be cached ([`CachedVerdict::cacheable`]) or a
    /// path that is not UTF-8 removes the entry instead.
    pub fn record(&mut self, path: &Path, identity: FileIdentity, mut verdict: CachedVerdict) {
        if verdict.sha256.is_none() {
            // A run that did not hash the file keeps the hash an earlier run took of
            // the same bytes.
            if let Some(e) = self.entries.get(path).filter(|e| e.identity == identity) {
                verdict.sha256 = e.verdict.sha256.clone();
            }
        }
        if !CachedVerdict::cacheable(verdict.refusal.as_ref()) || path.to_str().is_none() {
            self.forget(path);
            return;
        }
        if self
            .entries
            .get(path)
            .is_some_and(|e| e.identity == identity && e.verdict == verdict)
        {
            return;
        }
        let recorded = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.entries.insert(
            path.to_path_buf(),
            Entry {
                identity,
                recorded,
                verdict,
            },
        );
        self.dirty = true;
    }

    /// Drops the entry for `path`, if any.
    pub fn forget(&mut self, path: &Path) {
        if self.entries.remove(path).is_some() {
            self.dirty = true;
        }
    }

    /// Drops the entries of files that were in one of `scanned` (directory paths as
    /// listed) but not among `seen` this run: removed or renamed libraries.
    pub fn forget_missing(&mut self, scanned: &[PathBuf], seen: &HashSet<PathBuf>) {
        let before = self.entries.len();
        self.entries.retain(|path, _| {
            let in_scanned = path
                .parent()
                .is_some_and(|p| scanned.iter().any(|s| s == p));
            !in_scanned || seen.contains(path)
        });
        if self.entries.len() != before {
            self.dirty = true;
        }
    }

    /// Writes the cache back if anything changed: a new file (mode 0644) in the cache
    /// directory, renamed over the old one, so a reader sees the old or the new file,
    /// never a part of one. `Err` is a one-line warning.
    pub fn save(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<(u64, PathBuf)> = self
                .entries
                .iter()
                .map(|(p, e)| (e.recorded, p.clone()))
                .collect();
            by_age.sort();
            for (_, p) in by_age.iter().take(self.entries.len() - MAX_ENTRIES) {
                self.entries.remove(p);
            }
        }
        let bytes = self.to_bytes();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tmp = format!(
            ".{CACHE_FILE_NAME}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = OsStr::new(&tmp);
        let written = sys::create_new_in(&self.dir, tmp, 0o644).and_then(|mut f| {
            f.write_all(&bytes)?;
            sys::rename_in(&self.dir, tmp, OsStr::new(CACHE_FILE_NAME))
        });
        match written {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(e) => {
                let _ = sys::unlink_in(&self.dir, tmp);
                Err(format!(
                    "cannot write verdict cache {}: {e}; the next run checks and loads \
                     every library again (make {} writable by the user running provtarget, \
                     or set plugin.provtarget.cache_dir)",
                    shown(&self.file_path()),
                    shown(&self.dir_path)
                ))
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut paths: Vec<&PathBuf> = self.entries.keys().collect();
        paths.sort();
        let entries: Vec<EntryRecord> = paths
            .into_iter()
            .filter_map(|p| {
                let e = &self.entries[p];
                let v = &e.verdict;
                let verdict = match &v.refusal {
                    None => Verdict::Loaded,
                    Some(r) => Verdict::Rejected(r.clone()),
                };
                Some(EntryRecord {
                    path: p.to_str()?.to_string(),
                    identity: e.identity,
                    recorded: e.recorded,
                    sha256: v.sha256.clone(),
                    verdict: VerdictRecord::from(&verdict),
                    plugin: v.plugin.as_ref().map(PluginRecord::from),
                    signature: v.signature.as_ref().map(|s| SignatureBinding {
                        key: s.key.clone(),
                        facts: s.facts.as_ref().map(SignatureRecord::from),
                    }),
                })
            })
            .collect();
        let file = FileRecord {
            format: FORMAT.to_string(),
            version: VERSION,
            host: host_build_key(),
            entries,
        };
        let mut bytes = serde_json::to_vec(&file).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Reads the cache file. `Err(Some(problem))`: it exists but is not trusted
    /// (`problem` names it); `Err(None)`: there is none yet.
    fn read(
        &self,
        euid: u32,
        skip_owner_checks: bool,
    ) -> Result<HashMap<PathBuf, Entry>, Option<String>> {
        let path = self.file_path();
        let p = shown(&path);
        let mut file = match sys::open_in_dir(&self.dir, OsStr::new(CACHE_FILE_NAME)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(None),
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                return Err(Some(format!("{p} is a symlink")))
            }
            Err(e) => return Err(Some(format!("{p} cannot be opened ({e})"))),
        };
        let meta = file
            .metadata()
            .map_err(|e| Some(format!("{p} cannot be examined ({e})")))?;
        if !meta.file_type().is_file() {
            return Err(Some(format!("{p} is not a regular file")));
        }
        if !skip_owner_checks {
            if let Some((_, problem)) = trust::owner_mode_problem(&meta, &path, "file", euid) {
                return Err(Some(problem));
            }
        }
        if meta.len() > MAX_CACHE_FILE {
            return Err(Some(format!("{p} is larger than {MAX_CACHE_FILE} bytes")));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut file)
            .take(MAX_CACHE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Some(format!("{p} cannot be read ({e})")))?;
        if bytes.len() as u64 > MAX_CACHE_FILE {
            return Err(Some(format!("{p} is larger than {MAX_CACHE_FILE} bytes")));
        }
        match parse(&bytes) {
            Ok(entries) => Ok(entries),
            Err(Unusable::OtherVersion(v)) => {
                // An upgrade (or a downgrade) is not damage: rebuilt without a warning.
                tracing::debug!(
                    "verdict cache {p} has cache format version {v}, not {VERSION}: it is \
                     not read, and rebuilt"
                );
                Err(None)
            }
            Err(Unusable::Damaged(why)) => Err(Some(format!("{p} {why}"))),
        }
    }
}

/// Opens (creating when missing) and judges the cache directory.
fn open_dir(dir: &Path, euid: u32, skip_owner_checks: bool) -> Result<File, String> {
    let p = shown(dir);
    let fix = "set plugin.provtarget.cache_dir to a directory owned by root (mode 0755)";
    if !dir.is_absolute() {
        return Err(format!(
            "verdict cache directory {p} is not an absolute path; running without a verdict \
             cache ({fix})"
        ));
    }
    let normal: PathBuf = dir
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let (Some(name), Some(parent)) = (normal.file_name(), normal.parent()) else {
        return Err(format!(
            "verdict cache directory {p} names no directory of its own; running without a \
             verdict cache ({fix})"
        ));
    };
    let parent = sys::open_parent_dir(parent).map_err(|e| {
        format!(
            "cannot open the parent of verdict cache directory {p}: {e}; running without a \
             verdict cache ({fix})"
        )
    })?;
    let file = match sys::open_dir_in(Some(&parent), name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => sys::mkdir_in(Some(&parent), name, 0o755)
            .and_then(|()| sys::open_dir_in(Some(&parent), name))
            .map_err(|e| {
                format!(
                    "cannot create verdict cache directory {p}: {e}; running without a \
                         verdict cache (create it with `install -d -m 0755 {p}`, or {fix})"
                )
            })?,
        Err(_) if sys::is_symlink_in(Some(&parent), name) => {
            return Err(format!(
                "verdict cache directory {p} is a symlink; running without a verdict cache \
                 (configure the directory it points to, or {fix})"
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot open verdict cache directory {p}: {e}; running without a verdict \
                 cache ({fix})"
            ))
        }
    };
    if !skip_owner_checks {
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat verdict cache directory {p}: {e}"))?;
        if let Some((_, problem)) =
            trust::owner_mode_problem(&meta, dir, "verdict cache directory", euid)
        {
            return Err(format!(
                "{problem}; running without a verdict cache until it is fixed"
            ));
        }
    }
    Ok(file)
}

/// The cache file as written: its format, version and host build, then one
/// [`EntryRecord`] per library.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord<E> {
    format: String,
    version: u64,
    host: String,
    entries: Vec<E>,
}

/// One entry of the cache file: a library's path and identity, when it was recorded,
/// and its record (verdict, plugin, hash and signature), in the one spelling of
/// [`crate::record`]. Every field is required; an unknown one makes the cache damaged.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRecord {
    path: String,
    identity: FileIdentity,
    recorded: u64,
    #[serde(deserialize_with = "Option::deserialize")]
    sha256: Option<String>,
    verdict: VerdictRecord,
    #[serde(deserialize_with = "Option::deserialize")]
    plugin: Option<PluginRecord>,
    #[serde(deserialize_with = "Option::deserialize")]
    signature: Option<SignatureBinding>,
}

/// A [`CachedSignature`] in the cache file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBinding {
    key: String,
    #[serde(deserialize_with = "Option::deserialize")]
    facts: Option<SignatureRecord>,
}

/// Why a cache file is not read.
enum Unusable {
    /// It is of another cache format version: rebuilt quietly.
    OtherVersion(u64),
    /// What is wrong with it ("is corrupt (not valid JSON ...)"): a warning.
    Damaged(String),
}

/// Parses a cache file: read straight into its records when it is a well-formed cache
/// of this format and version (every run of a warm cache), else through
/// [`parse_checked`], which names what is wrong.
fn parse(bytes: &[u8]) -> Result<HashMap<PathBuf, Entry>, Unusable> {
    let Ok(file) = serde_json::from_slice::<FileRecord<EntryRecord>>(bytes) else {
        return parse_checked(bytes);
    };
    if file.format != FORMAT || file.version != VERSION {
        return parse_checked(bytes);
    }
    entries_of(file)
}

/// [`parse`] one step at a time (JSON, then the shape, format and version, then each
/// entry), so that a damaged or other cache is reported by what is wrong with it.
fn parse_checked(bytes: &[u8]) -> Result<HashMap<PathBuf, Entry>, Unusable> {
    let damaged = |what: String| Unusable::Damaged(what);
    let wrong_shape = |what: &str| {
        damaged(format!(
            "is corrupt (valid JSON of the wrong shape: {what})"
        ))
    };
    let root: Value = serde_json::from_slice(bytes)
        .map_err(|e| damaged(format!("is corrupt (not valid JSON: {e})")))?;
    let fields = root
        .as_object()
        .ok_or_else(|| wrong_shape("not an object"))?;
    if fields.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(wrong_shape("no `format` field naming a verdict cache"));
    }
    match fields.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => return Err(Unusable::OtherVersion(v)),
        None => return Err(wrong_shape("no `version` number")),
    }
    let file: FileRecord<Value> =
        serde_json::from_value(root).map_err(|e| wrong_shape(&e.to_string()))?;
    let mut records = Vec::with_capacity(file.entries.len());
    for (i, e) in file.entries.into_iter().enumerate() {
        let record = serde_json::from_value::<EntryRecord>(e)
            .map_err(|e| wrong_shape(&format!("entry {i}: {e}")))?;
        records.push(record);
    }
    entries_of(FileRecord {
        format: file.format,
        version: file.version,
        host: file.host,
        entries: records,
    })
}

/// The entries of a cache file of this format and version, once its host build is
/// this one's.
fn entries_of(file: FileRecord<EntryRecord>) -> Result<HashMap<PathBuf, Entry>, Unusable> {
    if file.host != host_build_key() {
        return Err(Unusable::Damaged(
            "was written by another provtarget build (its host build key differs)".into(),
        ));
    }
    let mut entries = HashMap::with_capacity(file.entries.len());
    for (i, e) in file.entries.into_iter().enumerate() {
        let (path, entry) = entry_from(e).map_err(|why| {
            Unusable::Damaged(format!(
                "is corrupt (valid JSON of the wrong shape: entry {i}: {why})"
            ))
        })?;
        entries.insert(path, entry);
    }
    Ok(entries)
}

/// An entry as the cache keeps it; `Err` names the field that cannot be.
fn entry_from(e: EntryRecord) -> Result<(PathBuf, Entry), RecordError> {
    let bad = |field, problem| Err(RecordError { field, problem });
    if e.sha256
        .as_ref()
        .is_some_and(|s| s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return bad("sha256", "is not 64 hex digits");
    }
    let refusal = match Verdict::try_from(e.verdict)? {
        Verdict::Loaded => None,
        Verdict::Rejected(r) => Some(r),
        Verdict::Skipped { .. } => return bad("verdict", "is skipped, which is never cached"),
    };
    if refusal.as_ref().is_some_and(|r| !cacheable_kind(r.kind))
        || !CachedVerdict::cacheable(refusal.as_ref())
    {
        return bad("verdict", "has a refusal that is decided again every run");
    }
    if refusal.is_none() && e.plugin.is_none() {
        return bad("plugin", "is null for a loaded library");
    }
    let verdict = CachedVerdict {
        refusal,
        plugin: e.plugin.map(PluginFacts::from),
        sha256: e.sha256,
        signature: e.signature.map(|s| CachedSignature {
            key: s.key,
            facts: s.facts.map(crate::SignatureFacts::from),
        }),
    };
    let entry = Entry {
        identity: e.identity,
        recorded: e.recorded,
        verdict,
    };
    Ok((PathBuf::from(e.path), entry))
}

/// The kinds a cacheable refusal can have; any other kind makes the entry unusable.
const KINDS: [RefusalKind; 13] = [
    RefusalKind::NotElf,
    RefusalKind::WrongClass,
    RefusalKind::WrongMachine,
    RefusalKind::NotASharedLibrary,
    RefusalKind::Malformed,
    RefusalKind::Truncated,
    RefusalKind::NoRootSymbol,
    RefusalKind::PanicAbortBuild,
    RefusalKind::NotAPlugin,
    RefusalKind::AbiStableMismatch,
    RefusalKind::InterfaceMismatch,
    RefusalKind::LayoutMismatch,
    RefusalKind::BadInfo,
];

fn cacheable_kind(k: RefusalKind) -> bool {
    KINDS.contains(&k) || matches!(k, RefusalKind::ReservedName | RefusalKind::WrongType)
}

/// What binds a cache to the host build that wrote it: the cache format, this
/// loader's version, the contract's interface version and every layout the host
/// reads, the compiler, target and abi_stable version, and the identity (device,
/// inode, size, mtime, ctime) of the running executable, so a rebuilt or reinstalled
/// host never trusts a cache an older build wrote. Computed once per process.
pub fn host_build_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let exe = std::fs::metadata("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::metadata))
            .map(|m| {
                let i = FileIdentity::of(&m);
                format!(
                    "{}:{}:{}:{}.{:09}:{}.{:09}",
                    i.dev, i.ino, i.size, i.mtime, i.mtime_nsec, i.ctime, i.ctime_nsec
                )
            })
            .unwrap_or_else(|_| format!("unknown-{}", std::process::id()));
        format!(
            "cache {VERSION}; loader {}; interface {} (reads {}); {}; {}; abi_stable {}; exe {exe}",
            env!("CARGO_PKG_VERSION"),
            provtarget_abi::INTERFACE_VERSION,
            supported_interfaces().collect::<Vec<_>>().join(" "),
            provtarget_abi::BUILD_RUSTC,
            provtarget_abi::BUILD_TARGET,
            provtarget_abi::ABI_STABLE_VERSION,
        )
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record model's sample plugin: one sample for the loader's tests.
    fn facts() -> PluginFacts {
        crate::record::tests::plugin()
    }

    fn identity() -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: 4,
            mtime_nsec: 5,
            ctime: 6,
            ctime_nsec: 7,
        }
    }

    fn cache_in(dir: &Path) -> VerdictCache {
        let (cache, warnings) = VerdictCache::open(dir, sys::effective_uid(), false);
        assert!(warnings.is_empty(), "{warnings:?}");
        cache.expect("a cache")
    }

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "provtarget-cache-unit-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Saves a cache in `dir` holding one accepted library, `/p/a.so`.
    fn save_one_accepted(dir: &Path) {
        let mut cache = cache_in(dir);
        cache.record(
            Path::new("/p/a.so"),
            identity(),
            CachedVerdict {
                refusal: None,
                plugin: Some(facts()),
                sha256: None,
                signature: None,
            },
        );
        cache.save().unwrap();
    }

    #[test]
    fn verdicts_round_trip_and_identity_must_match_exactly() {
        let dir = temp("roundtrip");
        let mut cache = cache_in(&dir);
        let accepted = CachedVerdict {
            refusal: None,
            plugin: Some(facts()),
            sha256: Some("ab".repeat(32)),
            signature: None,
        };
        let refused = CachedVerdict {
            refusal: Some(Refusal::new(
                Stage::PluginType,
                RefusalKind::WrongType,
                "x is an Agent",
            )),
            plugin: Some(facts()),
            sha256: None,
            signature: None,
        };
        cache.record(Path::new("/p/a.so"), identity(), accepted.clone());
        cache.record(Path::new("/p/b.so"), identity(), refused.clone());
        // Not cacheable: decided again each run.
        cache.record(
            Path::new("/p/c.so"),
            identity(),
            CachedVerdict {
                refusal: Some(Refusal::new(Stage::Pin, RefusalKind::PinMismatch, "m")),
                plugin: None,
                sha256: None,
                signature: None,
            },
        );
        cache.save().expect("saved");
        let mode = std::fs::metadata(dir.join(CACHE_FILE_NAME)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o644);
        let again = cache_in(&dir);
        assert_eq!(
            again.lookup(Path::new("/p/a.so"), &identity()),
            Some(&accepted)
        );
        assert_eq!(
            again.lookup(Path::new("/p/b.so"), &identity()),
            Some(&refused)
        );
        assert_eq!(again.lookup(Path::new("/p/c.so"), &identity()), None);
        for changed in [
            FileIdentity {
                ctime_nsec: 8,
                ..identity()
            },
            FileIdentity {
                mtime_nsec: 8,
                ..identity()
            },
            FileIdentity {
                size: 4,
                ..identity()
            },
            FileIdentity {
                ino: 9,
                ..identity()
            },
        ] {
            assert_eq!(again.lookup(Path::new("/p/a.so"), &changed), None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_files_are_ignored_with_a_warning_naming_them() {
        let dir = temp("damaged");
        save_one_accepted(&dir);
        let good = std::fs::read(dir.join(CACHE_FILE_NAME)).unwrap();
        let text = String::from_utf8(good.clone()).unwrap();
        for (bytes, expect) in [
            (b"\x00\xffgarbage".to_vec(), "not valid JSON"),
            (good[..good.len() / 2].to_vec(), "not valid JSON"),
            (b"[1,2,3]".to_vec(), "wrong shape"),
            (
                text.replace("\"identity\":{", "\"identity\":{\"x\":0,")
                    .into_bytes(),
                "entry 0: unknown field `x`",
            ),
            (
                text.replace("\"stage\":null,", "").into_bytes(),
                "entry 0: missing field `stage`",
            ),
            (
                text.replace("\"sdk_version\":", "\"sdk\":").into_bytes(),
                "entry 0: unknown field `sdk`",
            ),
            (
                text.replace("\"plugin\":{", "\"plugin\":null,\"x\":{")
                    .into_bytes(),
                "entry 0: unknown field `x`",
            ),
            (
                text.replace("\"signature\":null", "\"signature\":null,\"more\":1")
                    .into_bytes(),
                "entry 0: unknown field `more`",
            ),
            (
                text.replace("\"entries\":", "\"extra\":1,\"entries\":")
                    .into_bytes(),
                "unknown field `extra`",
            ),
            (
                text.replace("\"host\":\"cache", "\"host\":\"other")
                    .into_bytes(),
                "another provtarget build",
            ),
        ] {
            std::fs::write(dir.join(CACHE_FILE_NAME), &bytes).unwrap();
            let (cache, warnings) = VerdictCache::open(&dir, sys::effective_uid(), false);
            let cache = cache.expect("still a cache, empty");
            assert_eq!(cache.lookup(Path::new("/p/a.so"), &identity()), None);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].contains(expect)
                    && warnings[0].contains(&dir.join(CACHE_FILE_NAME).display().to_string())
                    && warnings[0].contains("rebuilt"),
                "{expect}: {}",
                warnings[0]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A cache of another format version, older (version 1, as the host wrote it
    /// before the record model) or newer, is not read, and rebuilt without a warning.
    #[test]
    fn a_cache_of_another_version_is_rebuilt_quietly() {
        let dir = temp("version");
        save_one_accepted(&dir);
        let text = std::fs::read_to_string(dir.join(CACHE_FILE_NAME)).unwrap();
        let host = serde_json::from_str::<Value>(&text).unwrap()["host"].clone();
        let v1 = serde_json::json!({
            "format": FORMAT,
            "version": 1,
            "host": host,
            "entries": [{
                "path": "/p/a.so",
                "identity": [1, 2, 3, 4, 5, 6, 7],
                "recorded": 1,
                "sha256": null,
                "refusal": null,
                "plugin": null,
                "signature": null,
            }],
        });
        let future = text.replace(&format!("\"version\":{VERSION}"), "\"version\":99");
        assert_ne!(future, text);
        for bytes in [v1.to_string(), future] {
            std::fs::write(dir.join(CACHE_FILE_NAME), bytes).unwrap();
            let (cache, warnings) = VerdictCache::open(&dir, sys::effective_uid(), false);
            let mut cache = cache.expect("still a cache, empty");
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(cache.lookup(Path::new("/p/a.so"), &identity()), None);
            // Rewritten in this version even though nothing was recorded.
            cache.save().unwrap();
            let again = std::fs::read_to_string(dir.join(CACHE_FILE_NAME)).unwrap();
            assert!(again.contains(&format!("\"version\":{VERSION}")), "{again}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
