//! Turns plugin directories into loaded resolvers and precise refusals.
//!
//! [`load_all`] scans the configured directories (not recursively) for `*.so` files
//! (`*.dylib` and `*.so` on macOS), in file-name order, and gives every file a
//! [`Verdict`]: loaded, rejected at a [`Stage`] with a one-line reason naming the file
//! and the fix, or skipped. Nothing here fails as a whole and nothing panics: a
//! refused file is reported, never fatal, and a missing directory just means no
//! plugins.
//!
//! ```
//! use provtarget_loader::{load_all, LoaderOptions, Stage, Verdict};
//!
//! // A missing directory is not an error: the host runs its built-in resolver.
//! let options = LoaderOptions {
//!     directories: vec!["/nonexistent/provtarget".into()],
//!     ..LoaderOptions::default()
//! };
//! let report = load_all(&options);
//! assert!(report.libraries.is_empty() && report.plugins.is_empty());
//! assert!(report.warnings.is_empty());
//!
//! // A text file named like a library is refused before any code of it could run;
//! // other files are skipped, saying why.
//! let dir = std::env::temp_dir().join(format!("provtarget-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("broken.so"), "not a library")?;
//! std::fs::write(dir.join("notes.txt"), "hello")?;
//! # use std::os::unix::fs::PermissionsExt;
//! # for name in ["", "broken.so", "notes.txt"] {
//! #     let mode = if name.is_empty() { 0o755 } else { 0o644 };
//! #     std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode))?;
//! # }
//! let report = load_all(&LoaderOptions { directories: vec![dir.clone()], ..Default::default() });
//! for library in &report.libraries {
//!     println!("{} {}: {}", library.verdict.status(), library.path.display(),
//!              library.verdict.reason().unwrap_or(""));
//! }
//! assert!(matches!(report.libraries[0].verdict,
//!                  Verdict::Rejected { stage: Stage::Format, .. }));
//! assert_eq!(report.libraries[1].verdict.status(), "skipped");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # What is checked, in order
//!
//! 1. **Trust**, on the *open descriptor*, never on a path: the directory is opened
//!    with `O_DIRECTORY | O_NOFOLLOW` and each file relative to it with
//!    `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK` (a symlink is refused, a FIFO cannot
//!    block). The file must be a regular file; it and its directory must be owned by
//!    root or by the effective uid of this process, and be neither group- nor
//!    world-writable. [`LoaderOptions::insecure_skip_owner_checks`] skips the owner and
//!    mode rule (never the file-type rule) and says so in [`LoadReport::warnings`].
//! 2. **Facts** from the same descriptor: size, mtime, owner, mode ([`FileFacts`]).
//!    Only then is the file read, once: straight into a sealed `memfd` on Linux (see
//!    5), whose bytes are hashed (SHA-256, when pinning is on or
//!    [`LoaderOptions::always_hash`] asks for it), ELF-checked and loaded.
//! 3. **Pinning**, when [`LoaderOptions::pin_file`] is set: a `sha256sum` listing
//!    (`<hash>  <file name>`, matched by file name). A malformed pin file loads
//!    nothing; a file name pinned with two different hashes refuses that library
//!    only (keep one line per file).
//! 4. **Format** (Linux): ELF class, byte order and machine of this host, a shared
//!    object, every segment and header table inside the file, and the provtarget root
//!    module symbol among its exports. A truncated copy would crash the process inside
//!    `dlopen`; a library without the symbol would run its initialisers for nothing.
//! 5. **Load** of exactly the bytes checked: on Linux the file is copied in the kernel
//!    (`copy_file_range`/`sendfile`) into a sealed `memfd` before any check reads it
//!    (named after the file, so `/proc/<pid>/maps` shows
//!    `/memfd:<path> (deleted)`), and `/proc/self/fd/<memfd>` is loaded, so changing or
//!    truncating the file afterwards cannot crash the host or change what runs (where
//!    `memfd_create` is unavailable, the file's own descriptor is loaded instead). It
//!    is opened with `RTLD_NOW`, so a library needing a function nothing provides is
//!    refused here instead of killing the host on its first call. Then the abi_stable
//!    header, the interface version and layout, the plugin info (non-empty name,
//!    not one of [`RESERVED_NAMES`], semver version), the plugin type, the duplicate-name rule (the later file is
//!    refused) and the constructor.
//!
//! Libraries are never unloaded: upgrade a plugin by restarting the host.
//!
//! # What is not checked
//!
//! - **Parent directories.** `O_NOFOLLOW` applies to the last component of a path
//!   only, and the owner/mode rule to the plugin directory itself: the directories
//!   above it (e.g. `/usr/lib/choria`) are neither checked nor protected against a
//!   symlink swap. Whoever can write to one of them can replace the plugin directory.
//!   Keep every parent of a plugin directory owned by root with mode 0755 (the
//!   default for `/usr/lib` and its packages' directories).
//! - **`/proc` is required on Linux.** Directories are listed and libraries loaded
//!   through `/proc/self/fd/N` (that is what ties the load to the descriptor that was
//!   checked). Without `/proc` (some minimal containers and chroots), no directory can
//!   be listed: the report's warning says `/proc is not mounted; provtarget needs /proc
//!   on Linux`, and no plugin loads.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod discover;
#[cfg(target_os = "linux")]
mod elf;
mod load;
mod pins;
mod text;
mod trust;

pub use text::printable;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use provtarget_abi::{
    host::{PluginInfo, PluginResolver},
    ConfigKey,
};

/// Where operators install plugins.
pub const DEFAULT_DIRECTORY: &str = "/usr/lib/choria/provtarget";

/// Plugin names reserved for the built-in resolver: `default` (the alias the
/// host configuration uses for it) and `Choria JWT Resolver` (its name). A plugin
/// calling itself one of these would shadow the built-in resolver, so it is refused at
/// the [`Stage::Info`] stage. Compare names with [`is_reserved_name`], not with `==`.
pub const RESERVED_NAMES: [&str; 2] = ["default", "Choria JWT Resolver"];

/// Whether `name` is one of [`RESERVED_NAMES`], ignoring ASCII case and surrounding
/// whitespace (the host treats `default` in any case as the built-in resolver; the
/// loader is as strict for `Choria JWT Resolver`). The host should use this too when it
/// resolves a configured name, so both agree on what is reserved.
///
/// ```
/// use provtarget_loader::is_reserved_name;
/// assert!(is_reserved_name("Default"));
/// assert!(is_reserved_name("choria jwt resolver"));
/// assert!(!is_reserved_name("Acme DC hints Provisioning Target"));
/// ```
pub fn is_reserved_name(name: &str) -> bool {
    let name = name.trim();
    RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// What to load and how strictly.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Directories to scan, in order (not recursive).
    pub directories: Vec<PathBuf>,
    /// A `sha256sum`-format pin file; when set, only pinned libraries load.
    pub pin_file: Option<PathBuf>,
    /// Developer override: skip the owner/mode rule. Off by default; reported as a
    /// warning and in `buildinfo`.
    pub insecure_skip_owner_checks: bool,
    /// Compute every examined library's SHA-256 for the report
    /// ([`FileFacts::sha256`]) even when no pin file asks for it. With a pin file,
    /// every library is hashed anyway (the hash is then the gate). Off by default:
    /// without pinning the hash is a reported fact, not a check, and it costs about
    /// 0.5 ms per MB (`BENCHMARKS.md`). `buildinfo` and `plugins check` turn it on.
    pub always_hash: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            directories: vec![PathBuf::from(DEFAULT_DIRECTORY)],
            pin_file: None,
            insecure_skip_owner_checks: false,
            always_hash: false,
        }
    }
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
    /// Not a well-formed library for this platform (checked before `dlopen`).
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
}

impl Stage {
    /// A short lower-case name, as shown in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Open => "open",
            Stage::Trust => "trust",
            Stage::Pin => "pin",
            Stage::Format => "format",
            Stage::Load => "load",
            Stage::RootModule => "root-module",
            Stage::AbiHeader => "abi-header",
            Stage::Interface => "interface",
            Stage::Info => "info",
            Stage::PluginType => "plugin-type",
            Stage::Constructor => "constructor",
            Stage::Duplicate => "duplicate",
        }
    }
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Loaded and constructed.
    Loaded,
    /// Refused: the stage, and one line naming the file and what to do.
    Rejected {
        /// Where it was refused.
        stage: Stage,
        /// Why, in one line.
        reason: String,
    },
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
            Verdict::Rejected { .. } => "rejected",
            Verdict::Skipped { .. } => "skipped",
        }
    }

    /// The refusal or skip reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Loaded => None,
            Verdict::Rejected { reason, .. } | Verdict::Skipped { reason } => Some(reason),
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
    /// [`LoaderOptions::always_hash`] is set, and the file got as far as being read
    /// (a file refused for its owner or mode is not read).
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
    /// Conditions worth a warning (e.g. the developer override is on).
    pub warnings: Vec<String>,
}

/// Scans every directory in `options` and loads what passes every check. Never fails
/// as a whole: each file gets its verdict; missing directories are not errors. A
/// directory listed more than once (by any spelling: the same device and inode) is
/// scanned once, where it is first listed.
pub fn load_all(options: &LoaderOptions) -> LoadReport {
    let (session, warnings) = load::Session::start(options);
    let mut report = LoadReport {
        warnings,
        ..LoadReport::default()
    };
    // Directories already scanned, by the identity of the opened directory (device and
    // inode), so one configured twice (or under two spellings) is scanned once.
    let mut scanned: Vec<((u64, u64), &Path)> = Vec::new();
    for dir_path in &options.directories {
        let dir = match trust::open_dir(dir_path) {
            Ok(dir) => dir,
            Err(trust::DirError::Missing) => {
                tracing::debug!(directory = %dir_path.display(), "plugin directory does not exist");
                continue;
            }
            Err(trust::DirError::Unusable { reason, .. }) => {
                tracing::warn!("{reason}");
                report.warnings.push(reason);
                continue;
            }
        };
        if let Ok(meta) = dir.file.metadata() {
            use std::os::unix::fs::MetadataExt;
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
                        text::shown(dir_path)
                    )
                } else {
                    format!(
                        "cannot list plugin directory {}: {e}; check its permissions",
                        text::shown(dir_path)
                    )
                };
                tracing::warn!("{w}");
                report.warnings.push(w);
                continue;
            }
        };
        let untrusted_dir = session.directory_problem(&dir);
        if let Some(problem) = &untrusted_dir {
            let w = format!("{problem}; no plugin in it will load");
            tracing::warn!("{w}");
            report.warnings.push(w);
        }
        for name in names {
            let path = dir_path.join(&name);
            let (record, accepted) = if let Some(reason) = discover::skip_reason(&name) {
                let mut record = load::new_record(&path);
                record.verdict = Verdict::Skipped { reason };
                load::log_verdict(&record);
                (record, None)
            } else if let Some(problem) = &untrusted_dir {
                let mut record = load::new_record(&path);
                record.verdict = Verdict::Rejected {
                    stage: Stage::Trust,
                    reason: format!("{}: {problem}", text::shown(&path)),
                };
                load::log_verdict(&record);
                (record, None)
            } else {
                let loaded: Vec<(String, PathBuf)> = report
                    .plugins
                    .iter()
                    .filter_map(|p| {
                        let earlier = report.libraries.get(p.record)?;
                        Some((p.info.name.clone(), earlier.path.clone()))
                    })
                    .collect();
                session.examine(&dir, &name, &path, &loaded)
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
/// is not required. Warnings (e.g. the developer override) are logged.
pub fn check_file(path: &Path, options: &LoaderOptions) -> (LibraryRecord, Option<LoadedPlugin>) {
    let (session, _warnings) = load::Session::start(options);
    let reject = |stage, reason: String| {
        let mut record = load::new_record(path);
        record.verdict = Verdict::Rejected { stage, reason };
        load::log_verdict(&record);
        (record, None)
    };
    let p = text::shown(path);
    let Some(name) = path.file_name() else {
        return reject(
            Stage::Open,
            format!("{p} does not name a file; give the path of a plugin library"),
        );
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = match trust::open_dir(parent) {
        Ok(dir) => dir,
        Err(trust::DirError::Missing) => {
            return reject(
                Stage::Open,
                format!("cannot open {p}: its directory does not exist"),
            )
        }
        Err(trust::DirError::Unusable { reason, untrusted }) => {
            let stage = if untrusted { Stage::Trust } else { Stage::Open };
            return reject(stage, format!("{p}: {reason}"));
        }
    };
    if let Some(problem) = session.directory_problem(&dir) {
        return reject(Stage::Trust, format!("{p}: {problem}"));
    }
    let (record, accepted) = session.examine(&dir, name, path, &[]);
    let plugin = accepted.map(|(info, resolver)| LoadedPlugin {
        record: 0,
        info,
        resolver,
    });
    (record, plugin)
}
