//! Host configuration: a Choria-style `key = value` file, environment variables and
//! command-line flags, merged with precedence **flags > environment > file > build
//! defaults**.
//!
//! ```
//! use provtarget::config::{ConfigBuilder, keys};
//!
//! let config = ConfigBuilder::new()
//!     .file_text("server.conf", "# provisioning\nplugin.provtarget.timeout = 30\nplugin.provtarget.typo = 1\n")
//!     .env([("PROVTARGET_TIMEOUT", "45")])
//!     .flag(keys::DIRECTORIES, "/opt/plugins")
//!     .build();
//! assert_eq!(config.get(keys::TIMEOUT), Some("45"));          // env beats the file
//! assert_eq!(config.directories(), vec![std::path::PathBuf::from("/opt/plugins")]);
//! // Keys nothing reads are reported once the loaded plugins' keys are known.
//! let unknown = config.unknown_key_warnings(&[]);
//! assert!(unknown[0].starts_with("unknown configuration key plugin.provtarget.typo (server.conf line 3)"));
//! ```
//!
//! Every `plugin.provtarget.<name>` key can also be set through the environment as
//! `PROVTARGET_<NAME>` (upper case). The whole merged map, including keys of other
//! plugins, is handed to every resolver's `configure`.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

/// The configuration keys the host itself reads.
pub mod keys {
    /// Comma-separated plugin directories (default `/usr/lib/choria/provtarget`).
    pub const DIRECTORIES: &str = "plugin.provtarget.directories";
    /// Ordered, comma-separated resolver names forming the chain; `default` names the
    /// built-in `Choria JWT Resolver`.
    pub const RESOLVERS: &str = "plugin.provtarget.resolvers";
    /// A `sha256sum`-format pin file; when set only pinned libraries load.
    pub const PINS: &str = "plugin.provtarget.pins";
    /// Deadline for one resolver's `targets` (and `configure`) call, e.g. `30`, `30s`,
    /// `2m`, `500ms`.
    pub const TIMEOUT: &str = "plugin.provtarget.timeout";
    /// The provisioning JWT read by the default resolver.
    pub const JWT_FILE: &str = "plugin.provtarget.jwt_file";
    /// Comma-separated provisioning broker URLs for the default resolver.
    pub const BROKER_URLS: &str = "plugin.provtarget.broker_urls";
    /// SRV domain the default resolver looks up `_choria-provisioner._tcp.` in.
    pub const SRV_DOMAIN: &str = "plugin.provtarget.srv_domain";
    /// `ip:port` of the DNS server for SRV lookups (default: the system's).
    pub const DNS_SERVER: &str = "plugin.provtarget.dns_server";
    /// Developer override: `true` skips the plugin owner/mode rule. Never in production.
    pub const INSECURE_SKIP_OWNER_CHECKS: &str = "plugin.provtarget.insecure_skip_owner_checks";
    /// Directory of the verdict cache (`verdicts.json`; default `/var/cache/provtarget`,
    /// see [`DEFAULT_CACHE_DIR`](super::DEFAULT_CACHE_DIR)); `none` or an empty value
    /// keeps no cache.
    pub const CACHE_DIR: &str = "plugin.provtarget.cache_dir";

    /// Where plugin code runs: `none` (in this process), `probe` (each library is
    /// loaded by a child process first; only those that survive load here) or
    /// `process` (the active resolvers live in child processes). See
    /// [`super::Isolation`].
    pub const ISOLATION: &str = "plugin.provtarget.isolation";

    /// How long a child loading a library may take before it is killed and the
    /// library refused (default 10s), e.g. `10`, `10s`, `500ms`.
    pub const PROBE_TIMEOUT: &str = "plugin.provtarget.probe_timeout";

    /// Signed plugins: `off`, `warn` or `enforce` (default: `off` while the
    /// trusted-keys directory holds no `*.pub` key, `warn` once it does). A flag or the
    /// environment may raise it above the configuration file's value, never lower it.
    pub const SIGNATURES: &str = "plugin.provtarget.signatures";

    /// Directory of trusted minisign public keys (`*.pub`; default
    /// `/etc/choria/provtarget/trusted.d`).
    pub const TRUSTED_KEYS: &str = "plugin.provtarget.trusted_keys";

    /// Revocation list: `key <key id>` and `sha256 <hex>` lines that never load.
    pub const REVOKED: &str = "plugin.provtarget.revoked";

    /// Every key above.
    pub const ALL: [&str; 15] = [
        DIRECTORIES,
        RESOLVERS,
        PINS,
        TIMEOUT,
        JWT_FILE,
        BROKER_URLS,
        SRV_DOMAIN,
        DNS_SERVER,
        INSECURE_SKIP_OWNER_CHECKS,
        CACHE_DIR,
        ISOLATION,
        PROBE_TIMEOUT,
        SIGNATURES,
        TRUSTED_KEYS,
        REVOKED,
    ];
}

/// How plugin code is kept from taking the host down (`plugin.provtarget.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Plugins run in this process; a plugin that kills it leaves last words only.
    None,
    /// Each library is loaded by a child process first; only approved ones load here.
    Probe,
    /// The active resolvers live in child processes (the default).
    #[default]
    Process,
}

impl Isolation {
    /// `none`, `probe` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::None => "none",
            Isolation::Probe => "probe",
            Isolation::Process => "process",
        }
    }

    /// Parses `none`, `probe` or `process` (case-insensitive, trimmed).
    pub fn parse(value: &str) -> Result<Isolation, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Isolation::None),
            "probe" => Ok(Isolation::Probe),
            "process" => Ok(Isolation::Process),
            _ => Err("use none, probe or process".into()),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the verdict cache lives unless `plugin.provtarget.cache_dir` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/provtarget";

/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/choria/server.conf";

/// The largest configuration file read (1 MiB): a Choria `server.conf` is a few
/// kilobytes; anything larger is refused whole, before it is read, so a device or a
/// runaway file cannot exhaust memory.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

/// How many warnings of one kind (malformed lines, unknown keys) are shown one by one;
/// the rest are summed up in one line.
pub const MAX_REPEATED_WARNINGS: usize = 10;

/// The most characters of a key, value or line quoted in a warning.
const MAX_QUOTED: usize = 80;

/// `text` escaped for one line and cut to [`MAX_QUOTED`] characters (`...` and the
/// full length when cut): a warning quotes, it does not copy.
fn shorten(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_QUOTED {
        return crate::text::printable(text);
    }
    let head: String = text.chars().take(MAX_QUOTED).collect();
    format!("{}... ({count} characters)", crate::text::printable(&head))
}

const HOST_PREFIX: &str = "plugin.provtarget.";
const ENV_PREFIX: &str = "PROVTARGET_";

/// Where a configuration value came from, in order of precedence (a later variant
/// overrides an earlier one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration file, at this line (1-based).
    File {
        /// The line the value was set on.
        line: usize,
    },
    /// An environment variable (`PROVTARGET_<NAME>`).
    Environment,
    /// A command-line flag.
    Flag,
}

impl Source {
    fn rank(self) -> u8 {
        match self {
            Source::File { .. } => 0,
            Source::Environment => 1,
            Source::Flag => 2,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::File { .. } => "file",
            Source::Environment => "environment",
            Source::Flag => "flag",
        })
    }
}

/// The host's own settings, parsed and validated once by [`ConfigBuilder::build`].
#[derive(Debug, Clone, Default)]
struct Parsed {
    directories: Vec<PathBuf>,
    resolvers: Vec<String>,
    pin_file: Option<PathBuf>,
    timeout: Option<Duration>,
    insecure_skip_owner_checks: bool,
    dns_server: Option<std::net::SocketAddr>,
    isolation: Isolation,
    probe_timeout: Option<Duration>,
    /// `None`: no verdict cache.
    cache_dir: Option<PathBuf>,
    /// Signed plugins: mode, trusted keys, revocation list.
    signatures: provtarget_loader::SignaturePolicy,
}

/// The merged host configuration: every key with its value and where it came from,
/// and the host's own settings parsed once into typed values.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    values: BTreeMap<String, (String, Source)>,
    /// `--plugin-dir` paths, kept as paths (a comma or non-UTF-8 byte in a path must
    /// not be split or mangled).
    directories_flag: Option<Vec<PathBuf>>,
    /// `--resolver` names, kept as a list (a name may hold a comma).
    resolvers_flag: Option<Vec<String>>,
    /// `--pins`, kept as a path.
    pins_flag: Option<PathBuf>,
    /// `plugin.provtarget.signatures` as the configuration file set it: the floor a
    /// flag or the environment cannot go below.
    signatures_in_file: Option<(String, Source)>,
    file: Option<PathBuf>,
    /// How the configuration text is named in messages (its path, as printable text).
    file_label: Option<String>,
    parsed: Parsed,
    warnings: Vec<String>,
}

impl HostConfig {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Option<Source> {
        self.values.get(key).map(|(_, s)| *s)
    }

    /// The configuration file that was read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Problems found while reading (malformed lines, unknown host keys, bad values).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The resolver configuration handed to `configure`.
    pub fn resolver_config(&self) -> provtarget_abi::Config {
        self.values
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// What the loader is to do with this configuration: directories, pin file and
    /// developer override (hashing only when pinning is on).
    pub fn loader_options(&self) -> provtarget_loader::LoaderOptions {
        provtarget_loader::LoaderOptions {
            directories: self.directories(),
            pin_file: self.pin_file(),
            insecure_skip_owner_checks: self.insecure_skip_owner_checks(),
            always_hash: false,
            cache_dir: self.cache_dir(),
            signatures: self.signature_policy(),
        }
    }

    /// Signed plugins: the mode (`None`: automatic), trusted-keys directory and
    /// revocation list, from `plugin.provtarget.signatures`, `.trusted_keys` and
    /// `.revoked`.
    pub fn signature_policy(&self) -> provtarget_loader::SignaturePolicy {
        self.parsed.signatures.clone()
    }

    /// The verdict cache directory (`plugin.provtarget.cache_dir`, default
    /// [`DEFAULT_CACHE_DIR`]); `None` when set to `none` or empty (no cache).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.parsed.cache_dir.clone()
    }

    /// Plugin directories (comma separated), or the built-in default.
    pub fn directories(&self) -> Vec<PathBuf> {
        self.parsed.directories.clone()
    }

    /// The ordered resolver chain as configured (empty: not configured).
    pub fn resolvers(&self) -> &[String] {
        &self.parsed.resolvers
    }

    /// The pin file, if configured.
    pub fn pin_file(&self) -> Option<PathBuf> {
        self.parsed.pin_file.clone()
    }

    /// The per-resolver deadline, if configured and valid (invalid values were
    /// reported in [`HostConfig::warnings`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.parsed.timeout
    }

    /// Whether the developer override for owner/mode checks is on.
    pub fn insecure_skip_owner_checks(&self) -> bool {
        self.parsed.insecure_skip_owner_checks
    }

    /// Where plugin code runs (`plugin.provtarget.isolation`; an invalid value is
    /// reported in [`HostConfig::warnings`] and the default is used).
    pub fn isolation(&self) -> Isolation {
        self.parsed.isolation
    }

    /// How long a child loading a library may take (`plugin.provtarget.probe_timeout`).
    pub fn probe_timeout(&self) -> Option<Duration> {
        self.parsed.probe_timeout
    }

    /// The DNS server for the built-in resolver's SRV lookups, if configured and valid
    /// (an invalid value is reported in [`HostConfig::warnings`] and the system's
    /// resolver is used).
    pub fn dns_server(&self) -> Option<std::net::SocketAddr> {
        self.parsed.dns_server
    }

    /// Where `key`'s value came from, for messages: `flag`, `environment variable
    /// PROVTARGET_TIMEOUT`, or `/etc/choria/server.conf line 12`.
    pub fn origin(&self, key: &str) -> Option<String> {
        Some(match self.values.get(key)?.1 {
            Source::Flag => "flag".to_string(),
            Source::Environment => format!("environment variable {}", env_name(key)),
            Source::File { line } => match &self.file_label {
                Some(f) => format!("{f} line {line}"),
                None => format!("configuration line {line}"),
            },
        })
    }

    /// Warnings about `plugin.provtarget.*` keys that nothing reads, given the keys the
    /// loaded plugins declare (`declared`; a key ending in `*` or holding `<...>`
    /// stands for every key with that prefix). A one-word key the host does not know
    /// gets a "did you mean" hint; a key under a plugin's namespace
    /// (`plugin.provtarget.<plugin>.<key>`) that no loaded plugin declares is reported
    /// as set for a plugin that is not installed.
    pub fn unknown_key_warnings(&self, declared: &[String]) -> Vec<String> {
        let prefixes: Vec<&str> = declared
            .iter()
            .map(|k| match k.find(['<', '*']) {
                Some(i) => &k[..i],
                None => k.as_str(),
            })
            .collect();
        let is_declared = |key: &str| {
            declared.iter().zip(&prefixes).any(|(full, prefix)| {
                if full.len() == prefix.len() {
                    full == key
                } else {
                    key.starts_with(prefix) && key.len() > prefix.len()
                }
            })
        };
        let mut warnings = Vec::new();
        let mut unknown = 0usize;
        for key in self.values.keys().filter(|k| k.starts_with(HOST_PREFIX)) {
            if keys::ALL.contains(&key.as_str()) || is_declared(key) {
                continue;
            }
            unknown += 1;
            if unknown > MAX_REPEATED_WARNINGS {
                continue;
            }
            let origin = self.origin(key).unwrap_or_default();
            let shown = shorten(key);
            let rest = &key[HOST_PREFIX.len()..];
            if let Some((plugin, _)) = rest.split_once('.') {
                warnings.push(format!(
                    "{shown} ({origin}) is set but no loaded plugin reads it; install the {} plugin that does, or remove the key",
                    shorten(plugin)
                ));
                continue;
            }
            // A "did you mean" only for key-sized text: the distance is quadratic.
            let near = |known: &&str| key.len() <= 2 * MAX_QUOTED && edit_distance(known, key) <= 3;
            let candidates = keys::ALL
                .iter()
                .copied()
                .chain(declared.iter().map(String::as_str));
            let hint = candidates
                .filter(near)
                .min_by_key(|known| edit_distance(known, key))
                .map(|known| format!("; did you mean {known}?"))
                .unwrap_or_else(|| format!("; known keys: {}", keys::ALL.join(", ")));
            warnings.push(format!(
                "unknown configuration key {shown} ({origin}){hint}"
            ));
        }
        if unknown > MAX_REPEATED_WARNINGS {
            warnings.push(format!(
                "and {} more {HOST_PREFIX}* keys that nothing reads ({unknown} in all); remove them or install the plugins that read them",
                unknown - MAX_REPEATED_WARNINGS
            ));
        }
        warnings
    }
}

/// `PROVTARGET_<NAME>` for `plugin.provtarget.<name>`.
fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.strip_prefix(HOST_PREFIX)
            .unwrap_or(key)
            .to_ascii_uppercase()
    )
}

/// The plugin directories used when none is configured: the packager's
/// `PROVTARGET_DEFAULT_DIRECTORIES` at build time, else `/usr/lib/choria/provtarget`.
pub fn default_directories() -> Vec<PathBuf> {
    let compiled = option_env!("PROVTARGET_DEFAULT_DIRECTORIES").unwrap_or("");
    let dirs: Vec<PathBuf> = split_list(compiled).map(PathBuf::from).collect();
    if dirs.is_empty() {
        vec![PathBuf::from(provtarget_loader::DEFAULT_DIRECTORY)]
    } else {
        dirs
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Collects configuration layers; [`ConfigBuilder::build`] merges and validates them.
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    config: HostConfig,
}

impl ConfigBuilder {
    /// An empty builder.
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    fn set(&mut self, key: &str, value: &str, source: Source) {
        let key = key.trim().to_string();
        if key == keys::SIGNATURES && matches!(source, Source::File { .. }) {
            self.config.signatures_in_file = Some((value.trim().to_string(), source));
        }
        match self.config.values.get(&key) {
            Some((_, existing)) if existing.rank() > source.rank() => {}
            _ => {
                self.config
                    .values
                    .insert(key, (value.trim().to_string(), source));
            }
        }
    }

    /// Reads a configuration file. A missing file is an error only when `required`
    /// (the operator named it explicitly).
    ///
    /// The file is opened without blocking and judged before it is read (see
    /// [`provtarget_loader::read_bounded`]): a FIFO, socket, device (`/dev/zero`) or
    /// directory, or a file over [`MAX_CONFIG_FILE`] bytes, is an error of one line
    /// naming it and the fix; nothing of it is used, because a configuration read in
    /// part could drop the pin file or the resolver chain it sets. A file owned by
    /// another user (not root, not us), writable by others, or in a directory others
    /// can write to without the sticky bit gets a warning: it decides where code is
    /// loaded from.
    pub fn file(mut self, path: &Path, required: bool) -> Result<ConfigBuilder, String> {
        let shown = crate::text::printable(&path.display().to_string());
        let fix = if required {
            "check the path given to --config".to_string()
        } else {
            format!("fix or remove {shown}, or name another file with --config")
        };
        match provtarget_loader::read_bounded(path, MAX_CONFIG_FILE) {
            Ok(input) => {
                let text = String::from_utf8_lossy(&input.bytes);
                self.config
                    .warnings
                    .extend(provtarget_loader::trust_warnings(
                        path,
                        &input.metadata,
                        "configuration file",
                        "it decides where plugins are loaded from",
                    ));
                self.config.file = Some(path.to_path_buf());
                Ok(self.file_text(&path.display().to_string(), &text))
            }
            Err(provtarget_loader::InputError::NotFound) if !required => Ok(self),
            // `--config /dev/null`: the usual way to say "no configuration file".
            Err(provtarget_loader::InputError::NullDevice) => {
                self.config.file = Some(path.to_path_buf());
                Ok(self.file_text(&path.display().to_string(), ""))
            }
            Err(e @ provtarget_loader::InputError::NotRegular { .. }) => Err(format!(
                "configuration file {shown} {e}; {fix} (a regular file of key = value lines)"
            )),
            Err(e @ provtarget_loader::InputError::TooLarge { .. }) => Err(format!(
                "configuration file {shown} {e}; is it really a key = value configuration? {fix}"
            )),
            Err(e) => Err(format!(
                "cannot read configuration file {shown}: it {e}; {fix}"
            )),
        }
    }

    /// Parses configuration text (`key = value` lines, `#` comments); `name` is used in
    /// warnings. A byte-order mark at the start is ignored. Malformed lines are
    /// reported one by one up to [`MAX_REPEATED_WARNINGS`], then summed up in one line.
    pub fn file_text(mut self, name: &str, text: &str) -> ConfigBuilder {
        let label = crate::text::printable(name);
        self.config.file_label = Some(label.clone());
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut malformed = 0usize;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    self.set(k, v, Source::File { line: n + 1 })
                }
                _ => {
                    malformed += 1;
                    if malformed <= MAX_REPEATED_WARNINGS {
                        self.config.warnings.push(format!(
                            "{label}:{}: ignoring \"{}\": expected `key = value`",
                            n + 1,
                            shorten(line)
                        ));
                    }
                }
            }
        }
        if malformed > MAX_REPEATED_WARNINGS {
            self.config.warnings.push(format!(
                "{label}: and {} more malformed lines ignored ({malformed} in all); every line must be `key = value`, a `#` comment or blank",
                malformed - MAX_REPEATED_WARNINGS
            ));
        }
        self
    }

    /// Applies `PROVTARGET_<NAME>` environment variables to `plugin.provtarget.<name>`.
    /// Other variables are ignored; one that is not valid UTF-8 is reported and
    /// ignored (pass `std::env::vars_os()`: `vars()` panics on such a variable).
    pub fn env<I, K, V>(mut self, vars: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            let k = k.as_ref();
            if !k.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
                continue;
            }
            let (Some(name), Some(value)) = (k.to_str(), v.as_ref().to_str()) else {
                self.config.warnings.push(format!(
                    "environment variable {} is not valid UTF-8; ignored",
                    k.to_string_lossy()
                ));
                continue;
            };
            let name = &name[ENV_PREFIX.len()..];
            if name.is_empty() {
                continue;
            }
            let key = format!("{HOST_PREFIX}{}", name.to_ascii_lowercase());
            self.set(&key, value, Source::Environment);
        }
        self
    }

    /// Applies a command-line flag.
    pub fn flag(mut self, key: &str, value: &str) -> ConfigBuilder {
        self.set(key, value, Source::Flag);
        self
    }

    /// Applies `--plugin-dir` flags: these exact paths, overriding
    /// `plugin.provtarget.directories`.
    pub fn directories_flag(mut self, dirs: Vec<PathBuf>) -> ConfigBuilder {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        self.set(keys::DIRECTORIES, &shown.join(","), Source::Flag);
        self.config.directories_flag = Some(dirs);
        self
    }

    /// Applies `--resolver` flags: these names, in order, overriding
    /// `plugin.provtarget.resolvers` (kept as a list: a name may hold a comma).
    pub fn resolvers_flag(mut self, names: Vec<String>) -> ConfigBuilder {
        self.set(keys::RESOLVERS, &names.join(","), Source::Flag);
        self.config.resolvers_flag = Some(names);
        self
    }

    /// Applies `--pins`: this exact path, overriding `plugin.provtarget.pins`.
    pub fn pins_flag(mut self, path: PathBuf) -> ConfigBuilder {
        self.set(keys::PINS, &path.display().to_string(), Source::Flag);
        self.config.pins_flag = Some(path);
        self
    }

    /// Merges the layers, parses the host's own keys once into typed values, and
    /// records a warning (naming the key, where its value came from, and the fix) for
    /// every value it cannot use. Keys nothing reads are reported by
    /// [`HostConfig::unknown_key_warnings`] once the plugins' keys are known.
    pub fn build(mut self) -> HostConfig {
        if self
            .config
            .source(keys::INSECURE_SKIP_OWNER_CHECKS)
            .is_some_and(|s| matches!(s, Source::File { .. }))
        {
            // The override weakens the very checks that keep planted libraries out;
            // a file is too easy to get written to. Only an explicit flag or the
            // environment of the process may turn it on.
            self.config.values.remove(keys::INSECURE_SKIP_OWNER_CHECKS);
            self.config.warnings.push(format!(
                "{} in the configuration file is ignored: the developer override is honoured only as --insecure-skip-owner-checks or PROVTARGET_INSECURE_SKIP_OWNER_CHECKS",
                keys::INSECURE_SKIP_OWNER_CHECKS
            ));
        }
        let config = &mut self.config;
        let mut warnings = Vec::new();
        let mut invalid = |config: &HostConfig, key: &str, why: &str| {
            let value = config.get(key).unwrap_or("");
            warnings.push(format!(
                "{key} = \"{}\" ({}) ignored: {why}",
                shorten(value),
                config.origin(key).unwrap_or_default()
            ));
        };
        let mut parsed = Parsed {
            directories: match &config.directories_flag {
                Some(dirs) => dirs.clone(),
                None => split_list(config.get(keys::DIRECTORIES).unwrap_or(""))
                    .map(PathBuf::from)
                    .collect(),
            },
            resolvers: match &config.resolvers_flag {
                Some(names) => names
                    .iter()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
                None => split_list(config.get(keys::RESOLVERS).unwrap_or(""))
                    .map(String::from)
                    .collect(),
            },
            pin_file: match &config.pins_flag {
                Some(p) => Some(p.clone()),
                None => config
                    .get(keys::PINS)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
            },
            ..Parsed::default()
        };
        if parsed.directories.is_empty() {
            parsed.directories = default_directories();
        }
        parsed.cache_dir = match config.get(keys::CACHE_DIR).map(str::trim) {
            None => Some(PathBuf::from(DEFAULT_CACHE_DIR)),
            Some(v) if v.is_empty() || v.eq_ignore_ascii_case("none") => None,
            Some(v) if !Path::new(v).is_absolute() => {
                invalid(
                    config,
                    keys::CACHE_DIR,
                    "use an absolute path, or none for no verdict cache; running without a cache",
                );
                None
            }
            Some(v) => Some(PathBuf::from(v)),
        };
        if let Some(v) = config.get(keys::TIMEOUT) {
            match parse_duration(v) {
                Ok(d) => parsed.timeout = Some(d),
                Err(e) => invalid(config, keys::TIMEOUT, &e),
            }
        }
        if let Some(v) = config.get(keys::INSECURE_SKIP_OWNER_CHECKS) {
            match parse_bool(v) {
                Ok(b) => parsed.insecure_skip_owner_checks = b,
                Err(()) => invalid(
                    config,
                    keys::INSECURE_SKIP_OWNER_CHECKS,
                    "use true or false",
                ),
            }
        }
        if let Some(v) = config
            .get(keys::DNS_SERVER)
            .filter(|v| !v.trim().is_empty())
        {
            match parse_dns_server(v) {
                Ok(addr) => parsed.dns_server = Some(addr),
                Err(e) => invalid(config, keys::DNS_SERVER, &e),
            }
        }
        if let Some(v) = config.get(keys::ISOLATION) {
            match Isolation::parse(v) {
                Ok(mode) => parsed.isolation = mode,
                Err(e) => invalid(config, keys::ISOLATION, &e),
            }
        }
        if let Some(v) = config.get(keys::PROBE_TIMEOUT) {
            match parse_duration(v) {
                Ok(d) => parsed.probe_timeout = Some(d),
                Err(e) => invalid(config, keys::PROBE_TIMEOUT, &e),
            }
        }
        parsed.signatures = signature_policy(config, &mut invalid);
        config.parsed = parsed;
        config.warnings.extend(warnings);
        self.config
    }
}

/// `plugin.provtarget.signatures`, `.trusted_keys` and `.revoked`. The mode is
/// raise-only: a flag or environment value below the configuration file's is
/// reported and the file's value used (as `module.sig_enforce` can only be switched
/// on).
fn signature_policy(
    config: &HostConfig,
    invalid: &mut impl FnMut(&HostConfig, &str, &str),
) -> provtarget_loader::SignaturePolicy {
    use provtarget_loader::SignatureMode;
    let mut policy = provtarget_loader::SignaturePolicy::default();
    let fix = "use off, warn or enforce";
    let floor = config
        .signatures_in_file
        .as_ref()
        .and_then(|(v, _)| SignatureMode::parse(v).ok());
    if let Some(v) = config.get(keys::SIGNATURES).filter(|v| !v.is_empty()) {
        match SignatureMode::parse(v) {
            Ok(mode) => policy.mode = Some(mode),
            Err(_) => {
                invalid(
                    config,
                    keys::SIGNATURES,
                    &match floor {
                        Some(f) => format!("{fix}; using the configuration file's {}", f.as_str()),
                        None => format!("{fix}; using the default"),
                    },
                );
                policy.mode = floor;
            }
        }
    }
    if let (Some(mode), Some(floor)) = (policy.mode, floor) {
        if mode < floor {
            invalid(
                config,
                keys::SIGNATURES,
                &format!(
                    "a flag or the environment may raise the signature mode, never lower it \
                     below the configuration file's {}; using {}",
                    floor.as_str(),
                    floor.as_str()
                ),
            );
            policy.mode = Some(floor);
        }
    }
    if let Some(v) = config.get(keys::TRUSTED_KEYS).filter(|v| !v.is_empty()) {
        if Path::new(v).is_absolute() {
            policy.trusted_keys = PathBuf::from(v);
        } else {
            invalid(
                config,
                keys::TRUSTED_KEYS,
                &format!(
                    "use an absolute path; using {}",
                    provtarget_loader::DEFAULT_TRUSTED_KEYS
                ),
            );
        }
    }
    if let Some(v) = config.get(keys::REVOKED).filter(|v| !v.is_empty()) {
        policy.revoked = Some(PathBuf::from(v));
    }
    policy
}

/// `ip:port`, or a bare IP for port 53.
pub fn parse_dns_server(value: &str) -> Result<std::net::SocketAddr, String> {
    let v = value.trim();
    v.parse::<std::net::SocketAddr>()
        .or_else(|_| v.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        .map_err(|_| {
            "expected ip:port such as 127.0.0.1:53 (or a bare IP for port 53); using the system DNS configuration".to_string()
        })
}

/// The shortest deadline accepted: below it a resolver cannot even be started and
/// answer, so a resolution would fail at random.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest deadline accepted (a day); for no deadline, leave the key unset.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Parses `30`, `1.5`, `30s`, `500ms`, `2m` or `1h` into a deadline between
/// [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            let seconds = v * scale;
            if seconds < MIN_TIMEOUT.as_secs_f64() {
                Err(format!(
                    "{text:?} is too short to resolve anything; use at least 10ms (or leave it unset for no deadline)"
                ))
            } else if seconds > MAX_TIMEOUT.as_secs_f64() {
                Err(format!(
                    "{text:?} is longer than the maximum of 24h; use a shorter deadline, or leave it unset for none"
                ))
            } else {
                Ok(Duration::from_secs_f64(seconds))
            }
        }
        _ => Err(format!(
            "{text:?} is not a duration; use seconds (30), or 500ms, 30s, 2m, 1h"
        )),
    }
}

fn parse_bool(v: &str) -> Result<bool, ()> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(()),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flags_env_file() {
        let c = ConfigBuilder::new()
            .file_text(
                "f",
                "plugin.provtarget.srv_domain = file.example\nplugin.provtarget.broker_urls=f:1\nplugin.provtarget.jwt_file = /file.jwt\n",
            )
            .env([
                ("PROVTARGET_SRV_DOMAIN", "env.example"),
                ("PROVTARGET_BROKER_URLS", "e:1"),
                ("UNRELATED", "x"),
            ])
            .flag(keys::SRV_DOMAIN, "flag.example")
            .build();
        assert_eq!(c.get(keys::SRV_DOMAIN), Some("flag.example"));
        assert_eq!(c.source(keys::SRV_DOMAIN), Some(Source::Flag));
        assert_eq!(c.get(keys::BROKER_URLS), Some("e:1"));
        assert_eq!(c.source(keys::BROKER_URLS), Some(Source::Environment));
        assert_eq!(c.get(keys::JWT_FILE), Some("/file.jwt"));
        assert_eq!(c.source(keys::JWT_FILE), Some(Source::File { line: 3 }));
        assert_eq!(c.get("unrelated"), None);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        // Below the file: the packager's compiled-in plugin directories.
        assert_eq!(
            ConfigBuilder::new().build().directories(),
            default_directories()
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_environment_is_reported_not_a_crash() {
        use std::{ffi::OsString, os::unix::ffi::OsStringExt};
        let c = ConfigBuilder::new()
            .env([
                (
                    OsString::from("PROVTARGET_TIMEOUT"),
                    OsString::from_vec(vec![b'5', 0xff]),
                ),
                (
                    OsString::from_vec(b"OTHER_\xff".to_vec()),
                    OsString::from("x"),
                ),
                (
                    OsString::from("PROVTARGET_SRV_DOMAIN"),
                    OsString::from("ok.example"),
                ),
            ])
            .build();
        assert_eq!(c.get(keys::SRV_DOMAIN), Some("ok.example"));
        assert_eq!(c.get(keys::TIMEOUT), None);
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("PROVTARGET_TIMEOUT is not valid UTF-8"));
    }

    #[test]
    fn the_developer_override_is_never_taken_from_the_file() {
        let c = ConfigBuilder::new()
            .file_text("f", "plugin.provtarget.insecure_skip_owner_checks = true\n")
            .build();
        assert!(!c.insecure_skip_owner_checks());
        assert!(c.warnings()[0].contains("honoured only as --insecure-skip-owner-checks"));
        let c = ConfigBuilder::new()
            .env([("PROVTARGET_INSECURE_SKIP_OWNER_CHECKS", "1")])
            .build();
        assert!(c.insecure_skip_owner_checks());
    }

    #[test]
    fn flag_paths_are_kept_whole() {
        let c = ConfigBuilder::new()
            .file_text("f", "plugin.provtarget.directories = /from/file\n")
            .directories_flag(vec![PathBuf::from("/a,b"), PathBuf::from("/c")])
            .pins_flag(PathBuf::from("/p,ins"))
            .build();
        assert_eq!(
            c.directories(),
            vec![PathBuf::from("/a,b"), PathBuf::from("/c")]
        );
        assert_eq!(c.pin_file(), Some(PathBuf::from("/p,ins")));
    }

    #[cfg(unix)]
    #[test]
    fn a_configuration_file_others_can_write_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("provtarget-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.conf");
        std::fs::write(&file, "identity = x\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = ConfigBuilder::new().file(&file, true).unwrap().build();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c = ConfigBuilder::new().file(&file, true).unwrap().build();
        assert!(
            c.warnings()[0].contains("is group- and world-writable (mode 0666)"),
            "{:?}",
            c.warnings()
        );
        assert!(c.warnings()[0].contains("chmod go-w"));
        assert!(c.warnings()[0].ends_with("it decides where plugins are loaded from"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn comments_blank_and_malformed_lines() {
        let c = ConfigBuilder::new()
            .file_text(
                "server.conf",
                "# comment\n\n   # indented comment\nidentity = web1.example.net\nthis line is wrong\n=novalue\nplugin.acme.x = a = b\n",
            )
            .build();
        assert_eq!(c.get("identity"), Some("web1.example.net"));
        assert_eq!(c.get("plugin.acme.x"), Some("a = b"));
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert!(c.warnings()[0].starts_with("server.conf:5: ignoring \"this line is wrong\""));
        assert!(c.warnings()[1].starts_with("server.conf:6:"));
    }

    #[test]
    fn unknown_host_keys_warn_with_a_suggestion_other_plugins_keys_do_not() {
        let c = ConfigBuilder::new()
            .file_text("f", "plugin.provtarget.directory = /x\nplugin.provtarget.zzzzzzzzzzzz = 1\nplugin.acme.anything = 1\nplugin.provtarget.etcd.endpoints = http://e:2379\nplugin.provtarget.http.header.Metadata = true\nplugin.provtarget.fqdn.patern = x\n")
            .build();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let w = c.unknown_key_warnings(&[]);
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w
            .iter()
            .any(|m| m.contains("plugin.provtarget.directory (f line 1)")
                && m.contains("did you mean plugin.provtarget.directories?")));
        assert!(w
            .iter()
            .any(|m| m.contains("plugin.provtarget.zzzzzzzzzzzz") && m.contains("known keys")));
        assert!(w.iter().any(|m| m.starts_with(
            "plugin.provtarget.etcd.endpoints (f line 4) is set but no loaded plugin reads it; install the etcd plugin"
        )));
        // Keys the loaded plugins declare are known, prefix patterns included; a
        // misspelt key under a loaded plugin's namespace is still reported.
        let declared = [
            "plugin.provtarget.etcd.endpoints".to_string(),
            "plugin.provtarget.http.header.<Name>".to_string(),
            "plugin.provtarget.fqdn.pattern".to_string(),
        ];
        let w = c.unknown_key_warnings(&declared);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w
            .iter()
            .any(|m| m.contains("plugin.provtarget.fqdn.patern")));
        assert!(
            !w.iter().any(|m| m.contains("etcd") || m.contains("http")),
            "{w:?}"
        );
        // The origin names an environment variable or a flag too.
        let c = ConfigBuilder::new()
            .env([("PROVTARGET_TIMEUOT", "5")])
            .flag("plugin.provtarget.dns_servr", "x")
            .build();
        let w = c.unknown_key_warnings(&[]);
        assert!(
            w.iter().any(|m| m
                .contains("plugin.provtarget.timeuot (environment variable PROVTARGET_TIMEUOT)")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|m| m.contains(
                "plugin.provtarget.dns_servr (flag); did you mean plugin.provtarget.dns_server?"
            )),
            "{w:?}"
        );
    }

    #[test]
    fn the_signature_mode_is_automatic_and_only_rises_above_the_file() {
        use provtarget_loader::SignatureMode;
        let c = ConfigBuilder::new().build();
        let p = c.signature_policy();
        assert_eq!(p.mode, None);
        assert_eq!(
            p.trusted_keys,
            PathBuf::from("/etc/choria/provtarget/trusted.d")
        );
        assert_eq!(p.revoked, None);
        let file = "plugin.provtarget.signatures = warn\nplugin.provtarget.revoked = /r\n";
        // Raised by the environment or a flag.
        let c = ConfigBuilder::new()
            .file_text("f", file)
            .env([("PROVTARGET_SIGNATURES", "enforce")])
            .build();
        assert_eq!(c.signature_policy().mode, Some(SignatureMode::Enforce));
        assert_eq!(c.signature_policy().revoked, Some(PathBuf::from("/r")));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        // Never lowered below the file.
        let c = ConfigBuilder::new()
            .file_text("f", file)
            .flag(keys::SIGNATURES, "off")
            .build();
        assert_eq!(c.signature_policy().mode, Some(SignatureMode::Warn));
        assert!(
            c.warnings()[0].contains("never lower it below the configuration file's warn"),
            "{:?}",
            c.warnings()
        );
        // A typo in a flag keeps the file's mode; in the file, the default.
        let c = ConfigBuilder::new()
            .file_text("f", file)
            .flag(keys::SIGNATURES, "enforced")
            .build();
        assert_eq!(c.signature_policy().mode, Some(SignatureMode::Warn));
        assert!(c.warnings()[0].contains("use off, warn or enforce"));
        let c = ConfigBuilder::new()
            .file_text(
                "f",
                "plugin.provtarget.signatures = maybe\nplugin.provtarget.trusted_keys = keys\n",
            )
            .build();
        assert_eq!(c.signature_policy().mode, None);
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert!(c.warnings()[1].contains("use an absolute path"));
    }

    #[test]
    fn the_cache_directory_defaults_can_be_moved_or_turned_off() {
        let cache = |v: Option<&str>| {
            let mut b = ConfigBuilder::new();
            if let Some(v) = v {
                b = b.flag(keys::CACHE_DIR, v);
            }
            let c = b.build();
            assert_eq!(c.loader_options().cache_dir, c.cache_dir());
            (c.cache_dir(), c.warnings().to_vec())
        };
        assert_eq!(cache(None).0, Some(PathBuf::from(DEFAULT_CACHE_DIR)));
        assert_eq!(cache(Some(" /srv/c ")).0, Some(PathBuf::from("/srv/c")));
        assert_eq!(cache(Some("none")), (None, vec![]));
        assert_eq!(cache(Some("")), (None, vec![]));
        let (dir, warnings) = cache(Some("rel/dir"));
        assert_eq!(dir, None);
        assert!(
            warnings[0].starts_with(
                "plugin.provtarget.cache_dir = \"rel/dir\" (flag) ignored: use an absolute path"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn lists_durations_and_booleans() {
        let c = ConfigBuilder::new()
            .flag(keys::DIRECTORIES, " /a , ,/b ")
            .flag(
                keys::RESOLVERS,
                "Acme DC hints Provisioning Target, default",
            )
            .flag(keys::TIMEOUT, "1.5s")
            .flag(keys::INSECURE_SKIP_OWNER_CHECKS, "yes")
            .build();
        assert_eq!(
            c.directories(),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(
            c.resolvers(),
            vec!["Acme DC hints Provisioning Target", "default"]
        );
        assert_eq!(c.timeout(), Some(Duration::from_millis(1500)));
        assert!(c.insecure_skip_owner_checks());
        assert_eq!(
            ConfigBuilder::new().build().directories(),
            default_directories()
        );
        assert!(!ConfigBuilder::new().build().insecure_skip_owner_checks());

        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "0", "-1", "abc", "5x", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        // Too short to resolve anything, or absurdly long: refused with the bound.
        assert!(parse_duration("0.5ms")
            .unwrap_err()
            .contains("at least 10ms"));
        assert!(parse_duration("9ms").unwrap_err().contains("at least 10ms"));
        assert_eq!(parse_duration("10ms").unwrap(), MIN_TIMEOUT);
        assert!(parse_duration("25h")
            .unwrap_err()
            .contains("maximum of 24h"));
        assert!(parse_duration("1e12")
            .unwrap_err()
            .contains("maximum of 24h"));
        // A DNS server is validated with the rest of the configuration, naming its source.
        let c = ConfigBuilder::new()
            .file_text(
                "server.conf",
                "plugin.provtarget.dns_server = dns.example:53\n",
            )
            .build();
        assert_eq!(c.dns_server(), None);
        assert!(c.warnings()[0].starts_with(
            "plugin.provtarget.dns_server = \"dns.example:53\" (server.conf line 1) ignored: expected ip:port"
        ), "{:?}", c.warnings());
        let c = ConfigBuilder::new()
            .flag(keys::DNS_SERVER, "127.0.0.1")
            .build();
        assert_eq!(c.dns_server(), Some("127.0.0.1:53".parse().unwrap()));
        let c = ConfigBuilder::new()
            .flag(keys::TIMEOUT, "soon")
            .flag(keys::INSECURE_SKIP_OWNER_CHECKS, "maybe")
            .build();
        assert_eq!(c.timeout(), None);
        assert!(c.warnings()[0].contains("plugin.provtarget.timeout = \"soon\" (flag) ignored"));
        assert!(c.warnings()[1].contains("use true or false"));
    }

    #[test]
    fn missing_files() {
        let missing = Path::new("/nonexistent/provtarget/server.conf");
        assert!(ConfigBuilder::new().file(missing, false).is_ok());
        let err = ConfigBuilder::new().file(missing, true).unwrap_err();
        assert!(
            err.starts_with("cannot read configuration file /nonexistent/provtarget/server.conf: it does not exist; check the path given to --config"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_key() {
        let c = ConfigBuilder::new()
            .file_text("f", "\u{feff}plugin.provtarget.srv_domain = example.net\n")
            .build();
        assert_eq!(c.get(keys::SRV_DOMAIN), Some("example.net"));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn repeated_malformed_lines_are_summarised_and_quoted_short() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("junk line {i}\n"));
        }
        text.push_str(&"x".repeat(10_000));
        text.push('\n');
        let c = ConfigBuilder::new().file_text("big.conf", &text).build();
        let w = c.warnings();
        assert_eq!(w.len(), MAX_REPEATED_WARNINGS + 1, "{w:?}");
        assert!(
            w[0].starts_with("big.conf:1: ignoring \"junk line 0\""),
            "{w:?}"
        );
        assert_eq!(
            w[MAX_REPEATED_WARNINGS],
            "big.conf: and 991 more malformed lines ignored (1001 in all); every line must be `key = value`, a `#` comment or blank"
        );
        // One long line is quoted in part.
        let c = ConfigBuilder::new()
            .file_text("f", &format!("{}\n", "y".repeat(10_000)))
            .build();
        assert!(c.warnings()[0].ends_with("... (10000 characters)\": expected `key = value`"));
        assert!(c.warnings()[0].len() < 200, "{:?}", c.warnings());
    }

    #[test]
    fn repeated_unknown_keys_are_summarised() {
        let text: String = (0..50)
            .map(|i| format!("plugin.provtarget.unknown{i} = 1\n"))
            .collect();
        let c = ConfigBuilder::new().file_text("f", &text).build();
        let w = c.unknown_key_warnings(&[]);
        assert_eq!(w.len(), MAX_REPEATED_WARNINGS + 1, "{w:?}");
        assert!(w[MAX_REPEATED_WARNINGS]
            .starts_with("and 40 more plugin.provtarget.* keys that nothing reads (50 in all)"));
    }

    #[cfg(unix)]
    #[test]
    fn fifos_devices_directories_and_huge_files_are_refused_in_one_line() {
        let tmp = provtarget_testsupport::TempDir::new("conf-in");
        let dir = tmp.path().to_path_buf();
        let fifo = tmp.fifo("fifo.conf");
        let big = dir.join("big.conf");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_FILE as usize + 1]).unwrap();
        let cases: [(&Path, &str); 4] = [
            (&fifo, "is a FIFO (named pipe), not a regular file"),
            (
                Path::new("/dev/zero"),
                "is a character device, not a regular file",
            ),
            (&dir, "is a directory, not a regular file"),
            (
                &big,
                "is 1048577 bytes, more than the limit of 1048576 bytes",
            ),
        ];
        for (path, why) in cases {
            for required in [true, false] {
                let err = ConfigBuilder::new().file(path, required).unwrap_err();
                assert!(
                    err.starts_with(&format!("configuration file {} {why}", path.display())),
                    "{err}"
                );
                assert!(!err.contains('\n'), "{err}");
                let fix = if required {
                    "--config"
                } else {
                    "fix or remove"
                };
                assert!(err.contains(fix), "{err}");
            }
        }
        // /dev/null stays the way to say "no configuration".
        let c = ConfigBuilder::new()
            .file(Path::new("/dev/null"), true)
            .unwrap()
            .build();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    mod properties {
        //! Property tests: the configuration parser as a fuzz target (256 cases each in
        //! the normal suite; `PROPTEST_CASES=100000` for a longer run).
        use super::*;
        use proptest::prelude::*;

        /// Lines built from the pieces a configuration is made of, and hostile ones.
        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z._]{0,30} ?= ?[ -~]{0,30}",
                "plugin\\.provtarget\\.[a-z_.]{0,20} = [ -~]{0,20}",
                "# ?[ -~]{0,30}",
                any::<String>(),
                "[\u{0}-\u{1f}\u{7f}\u{202e}\u{feff}=#]{0,10}",
                Just(String::new()),
            ]
        }

        fn check_one_line(w: &str) -> Result<(), TestCaseError> {
            prop_assert!(!w.chars().any(char::is_control), "{:?}", w);
            prop_assert!(w.len() <= 1000, "{} bytes: {:?}", w.len(), w);
            Ok(())
        }

        proptest! {
            // 256 cases (proptest's default), or PROPTEST_CASES from the environment.
            #![proptest_config(ProptestConfig::default())]

            #[test]
            fn any_text_parses_without_panic_into_bounded_one_line_warnings(
                lines in proptest::collection::vec(line(), 0..60),
                bom in any::<bool>(),
            ) {
                let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
                text.push_str(&lines.join("\n"));
                let c = ConfigBuilder::new().file_text("f.conf", &text).build();
                // Malformed lines: at most the first few and a summary; plus at most
                // one warning per host key validated.
                prop_assert!(c.warnings().len() <= MAX_REPEATED_WARNINGS + 1 + keys::ALL.len());
                for w in c.warnings() {
                    check_one_line(w)?;
                }
                let unknown = c.unknown_key_warnings(&[]);
                prop_assert!(unknown.len() <= MAX_REPEATED_WARNINGS + 1);
                for w in &unknown {
                    check_one_line(w)?;
                }
            }

            #[test]
            fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                let text = String::from_utf8_lossy(&bytes);
                let c = ConfigBuilder::new().file_text("f.conf", &text).build();
                for w in c.warnings().iter().chain(&c.unknown_key_warnings(&[])) {
                    check_one_line(w)?;
                }
            }
        }
    }
}
