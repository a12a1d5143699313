//! Turns plugin directories into loaded resolvers and precise refusals.
//!
//! SKELETON: public API fixed; trust checks, ELF pre-checks, pinning and tests are
//! being filled in (issue 3).
#![deny(missing_docs)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use provtarget_abi::{
    host::{PluginInfo, PluginLibrary, PluginResolver},
    ConfigKey, PluginType,
};

/// Where operators install plugins.
pub const DEFAULT_DIRECTORY: &str = "/usr/lib/choria/provtarget";

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
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            directories: vec![PathBuf::from(DEFAULT_DIRECTORY)],
            pin_file: None,
            insecure_skip_owner_checks: false,
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
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
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
/// as a whole: each file gets its verdict; missing directories are not errors.
pub fn load_all(options: &LoaderOptions) -> LoadReport {
    let mut report = LoadReport::default();
    for dir in &options.directories {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => continue,
        };
        entries.sort();
        for path in entries {
            if path.extension().and_then(|e| e.to_str()) != Some("so") {
                continue;
            }
            let (record, loaded) = load_one(&path, &report);
            report.libraries.push(record);
            if let Some((info, resolver)) = loaded {
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

/// Runs every check on one file, as `provtarget plugins check` does.
pub fn check_file(path: &Path, options: &LoaderOptions) -> (LibraryRecord, Option<LoadedPlugin>) {
    let _ = options;
    let (record, loaded) = load_one(path, &LoadReport::default());
    let plugin = loaded.map(|(info, resolver)| LoadedPlugin {
        record: 0,
        info,
        resolver,
    });
    (record, plugin)
}

fn load_one(
    path: &Path,
    report: &LoadReport,
) -> (LibraryRecord, Option<(PluginInfo, PluginResolver)>) {
    let start = Instant::now();
    let mut record = LibraryRecord {
        path: path.to_path_buf(),
        verdict: Verdict::Loaded,
        file: None,
        plugin: None,
        load_time: Duration::ZERO,
    };
    let reject = |record: &mut LibraryRecord, stage, reason: String| {
        record.verdict = Verdict::Rejected { stage, reason };
    };
    // SKELETON: no trust or format checks yet.
    let lib = match unsafe { PluginLibrary::open(path) } {
        Ok(lib) => lib,
        Err(e) => {
            reject(
                &mut record,
                Stage::Load,
                format!("{}: {}", path.display(), e.message),
            );
            record.load_time = start.elapsed();
            return (record, None);
        }
    };
    let info = lib.info();
    record.plugin = Some(PluginFacts {
        info: info.clone(),
        interface_version: lib.interface_version().into(),
        config_keys: lib.config_keys(),
    });
    if info.plugin_type != PluginType::ProvisionTargetResolver {
        reject(
            &mut record,
            Stage::PluginType,
            format!(
                "plugin {} is not a valid ProvisionTargetResolver",
                info.name
            ),
        );
        return (record, None);
    }
    if let Some(first) = report.plugins.iter().find(|p| p.info.name == info.name) {
        let earlier = report.libraries[first.record].path.display().to_string();
        reject(
            &mut record,
            Stage::Duplicate,
            format!("duplicate of {earlier}"),
        );
        return (record, None);
    }
    let resolver = match lib.new_resolver() {
        Ok(r) => r,
        Err(e) => {
            reject(&mut record, Stage::Constructor, e);
            return (record, None);
        }
    };
    record.load_time = start.elapsed();
    (record, Some((info, resolver)))
}
