//! What the loader is told: where to look and how strictly, and the names reserved
//! for the built-in resolver.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// Where operators install plugins.
pub const DEFAULT_DIRECTORY: &str = "/usr/lib/choria/provtarget";

/// Plugin names reserved for the built-in resolver: `default` (the alias the
/// host configuration uses for it) and `Choria JWT Resolver` (its name). A plugin
/// calling itself one of these would shadow the built-in resolver, so it is refused at
/// the [`Stage::Info`](crate::Stage::Info) stage. Compare names with [`is_reserved_name`], not with `==`.
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
    /// Directories to scan, in order (not recursive). Each must be an absolute path
    /// whose last component is the directory itself, not a symlink to it (see the
    /// crate docs, "Directories"); a relative path is refused with a warning.
    pub directories: Vec<PathBuf>,
    /// A `sha256sum`-format pin file; when set, only pinned libraries load.
    pub pin_file: Option<PathBuf>,
    /// Developer override: skip the owner/mode rule. Off by default; reported as a
    /// warning and in `buildinfo`.
    pub insecure_skip_owner_checks: bool,
    /// Compute every examined library's SHA-256 for the report
    /// ([`FileFacts::sha256`](crate::FileFacts::sha256)) even when no pin file asks for it. With a pin file,
    /// every library is hashed anyway (the hash is then the gate). Off by default:
    /// without pinning the hash is a reported fact, not a check, and it costs about
    /// 0.5 ms per MB (`BENCHMARKS.md`). `buildinfo` and `plugins check` turn it on.
    pub always_hash: bool,
    /// Where the verdict cache lives (`<cache_dir>/verdicts.json`, see
    /// [`VerdictCache`](crate::VerdictCache)); `None` (the default) keeps no cache.
    /// With a cache, [`load_with`](crate::load_with) reports unchanged libraries from
    /// it and loads only the plugins its caller selects.
    pub cache_dir: Option<PathBuf>,
    /// Signed plugins: the mode (`None`: automatic), the trusted-keys directory and
    /// the revocation list (see [`SignaturePolicy`](crate::SignaturePolicy)).
    pub signatures: crate::SignaturePolicy,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            directories: vec![PathBuf::from(DEFAULT_DIRECTORY)],
            pin_file: None,
            insecure_skip_owner_checks: false,
            always_hash: false,
            cache_dir: None,
            signatures: crate::SignaturePolicy::default(),
        }
    }
}
