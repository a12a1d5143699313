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
//! cache that is corrupt, of the wrong shape or version, written by another build,
//! foreign-owned, writable by others or a symlink is ignored with a one-line warning
//! and rebuilt, never trusted. A cache directory that cannot be created or is not
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

use provtarget_abi::{
    host::{supported_interfaces, PluginInfo},
    ConfigKey, PluginType,
};
use serde_json::{json, Map, Value};

use crate::{
    sys::{self, Errno},
    text::shown,
    trust, PluginFacts, Refusal, RefusalKind, Stage,
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

/// The layout of the cache file; bumped whenever it changes.
const VERSION: u64 = 1;

/// What identifies one version of a library file: if any of these changed, the file
/// may have changed, and its cached verdict is not used. Any write changes mtime and
/// ctime, and `chmod`, `chown`, `touch` and replacing the file change ctime, which
/// only the kernel sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    fn to_json(self) -> Value {
        json!([
            self.dev,
            self.ino,
            self.size,
            self.mtime,
            self.mtime_nsec,
            self.ctime,
            self.ctime_nsec
        ])
    }

    fn from_json(v: &Value) -> Option<FileIdentity> {
        let a = v.as_array().filter(|a| a.len() == 7)?;
        let u = |i: usize| a[i].as_u64();
        let s = |i: usize| a[i].as_i64();
        Some(FileIdentity {
            dev: u(0)?,
            ino: u(1)?,
            size: u(2)?,
            mtime: s(3)?,
            mtime_nsec: s(4)?,
            ctime: s(5)?,
            ctime_nsec: s(6)?,
        })
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
        let entries: Vec<Value> = paths
            .into_iter()
            .filter_map(|p| {
                let e = &self.entries[p];
                Some(json!({
                    "path": p.to_str()?,
                    "identity": e.identity.to_json(),
                    "recorded": e.recorded,
                    "sha256": e.verdict.sha256,
                    "refusal": e.verdict.refusal.as_ref().map(|r| json!({
                        "stage": r.stage.as_str(),
                        "kind": r.kind.as_str(),
                        "message": r.message,
                    })),
                    "plugin": e.verdict.plugin.as_ref().map(plugin_to_json),
                    "signature": e.verdict.signature.as_ref().map(|s| json!({
                        "key": s.key,
                        "facts": s.facts.as_ref().map(crate::SignatureFacts::to_json),
                    })),
                }))
            })
            .collect();
        let file = json!({
            "format": FORMAT,
            "version": VERSION,
            "host": host_build_key(),
            "entries": entries,
        });
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
        parse(&bytes).map_err(|why| Some(format!("{p} {why}")))
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

/// Parses a cache file; `Err` says what is wrong with it ("is not valid JSON ...").
fn parse(bytes: &[u8]) -> Result<HashMap<PathBuf, Entry>, String> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("is corrupt (not valid JSON: {e})"))?;
    let wrong_shape = |what: &str| format!("is corrupt (valid JSON of the wrong shape: {what})");
    let root = root
        .as_object()
        .ok_or_else(|| wrong_shape("not an object"))?;
    if root.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(wrong_shape("no `format` field naming a verdict cache"));
    }
    match root.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "has cache format version {v}, not {VERSION} (written by another provtarget build)"
            ))
        }
        None => return Err(wrong_shape("no `version` number")),
    }
    if root.get("host").and_then(Value::as_str) != Some(host_build_key().as_str()) {
        return Err("was written by another provtarget build (its host build key differs)".into());
    }
    let list = root
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| wrong_shape("no `entries` list"))?;
    let mut entries = HashMap::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let (path, entry) = parse_entry(e).ok_or_else(|| wrong_shape(&format!("entry {i}")))?;
        entries.insert(path, entry);
    }
    Ok(entries)
}

fn parse_entry(v: &Value) -> Option<(PathBuf, Entry)> {
    let o = v.as_object()?;
    let path = PathBuf::from(o.get("path")?.as_str()?);
    let identity = FileIdentity::from_json(o.get("identity")?)?;
    let recorded = o.get("recorded")?.as_u64()?;
    let sha256 = opt(o, "sha256", |v| {
        let s = v.as_str()?;
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_string())
    })?;
    let refusal = opt(o, "refusal", |v| {
        let r = v.as_object()?;
        let stage = Stage::parse(r.get("stage")?.as_str()?)?;
        let kind = kind_from(r.get("kind")?.as_str()?)?;
        Some(Refusal::new(stage, kind, r.get("message")?.as_str()?))
    })?;
    let plugin = opt(o, "plugin", plugin_from_json)?;
    // Missing in caches written before signatures: such an entry is never reused.
    let signature = match o.get("signature") {
        None | Some(Value::Null) => None,
        Some(v) => Some(CachedSignature {
            key: v.get("key")?.as_str()?.to_string(),
            facts: opt(v.as_object()?, "facts", crate::SignatureFacts::from_json)?,
        }),
    };
    if !CachedVerdict::cacheable(refusal.as_ref()) || (refusal.is_none() && plugin.is_none()) {
        return None;
    }
    let verdict = CachedVerdict {
        refusal,
        plugin,
        sha256,
        signature,
    };
    Some((
        path,
        Entry {
            identity,
            recorded,
            verdict,
        },
    ))
}

/// A nullable field: `Some(None)` for null, `Some(Some(x))` when it parses, `None`
/// when it is missing or does not parse.
fn opt<T>(o: &Map<String, Value>, key: &str, f: impl Fn(&Value) -> Option<T>) -> Option<Option<T>> {
    match o.get(key)? {
        Value::Null => Some(None),
        v => f(v).map(Some),
    }
}

fn plugin_to_json(p: &PluginFacts) -> Value {
    let i = &p.info;
    json!({
        "name": i.name,
        "version": i.version,
        "type_id": i.plugin_type_id,
        "vendor": i.vendor,
        "description": i.description,
        "declared_interface": i.interface_version,
        "rustc": i.rustc_version,
        "target": i.target,
        "abi_stable": i.abi_stable_version,
        "sdk": i.sdk_version,
        "interface_version": p.interface_version,
        "config_keys": p.config_keys.iter().map(|k| json!([k.key, k.default, k.description])).collect::<Vec<_>>(),
    })
}

fn plugin_from_json(v: &Value) -> Option<PluginFacts> {
    let o = v.as_object()?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let type_id = u32::try_from(o.get("type_id")?.as_u64()?).ok()?;
    let info = PluginInfo {
        name: s("name")?,
        version: s("version")?,
        plugin_type: PluginType::from_id(type_id),
        plugin_type_id: type_id,
        vendor: s("vendor")?,
        description: s("description")?,
        interface_version: s("declared_interface")?,
        rustc_version: s("rustc")?,
        target: s("target")?,
        abi_stable_version: s("abi_stable")?,
        sdk_version: s("sdk")?,
    };
    let mut config_keys = Vec::new();
    for k in o.get("config_keys")?.as_array()? {
        let k = k.as_array().filter(|k| k.len() == 3)?;
        config_keys.push(ConfigKey::new(
            k[0].as_str()?,
            k[1].as_str()?,
            k[2].as_str()?,
        ));
    }
    Some(PluginFacts {
        info,
        interface_version: s("interface_version")?,
        config_keys,
    })
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

fn kind_from(s: &str) -> Option<RefusalKind> {
    RefusalKind::parse(s).filter(|k| {
        KINDS.contains(k) || matches!(k, RefusalKind::ReservedName | RefusalKind::WrongType)
    })
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

    fn facts() -> PluginFacts {
        PluginFacts {
            info: PluginInfo {
                name: "Acme \"DC\"\n".into(),
                version: "1.2.3".into(),
                plugin_type: PluginType::ProvisionTargetResolver,
                plugin_type_id: 3,
                vendor: "Acme".into(),
                description: "d".into(),
                interface_version: "1.1.0".into(),
                rustc_version: "rustc 1".into(),
                target: "x86_64".into(),
                abi_stable_version: "0.11".into(),
                sdk_version: "1.1.0".into(),
            },
            interface_version: "1.1.0".into(),
            config_keys: vec![ConfigKey::new("plugin.acme.file", "/x", "where")],
        }
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
        let mut cache = cache_in(&dir);
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
        let good = std::fs::read(dir.join(CACHE_FILE_NAME)).unwrap();
        let text = String::from_utf8(good.clone()).unwrap();
        for (bytes, expect) in [
            (b"\x00\xffgarbage".to_vec(), "not valid JSON"),
            (good[..good.len() / 2].to_vec(), "not valid JSON"),
            (b"[1,2,3]".to_vec(), "wrong shape"),
            (
                text.replace("\"identity\":[", "\"identity\":[0,")
                    .into_bytes(),
                "wrong shape",
            ),
            (
                text.replace("\"version\":1", "\"version\":99").into_bytes(),
                "format version 99",
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
}
