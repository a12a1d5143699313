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
//! Every key the host or a loaded plugin declares can also be set through the
//! environment, as [`env_var`] names it: `PROVTARGET_` and the key upper-cased with
//! `.` and `-` turned to `_`, without the `plugin.provtarget.` of host and
//! shipped-plugin keys (`PROVTARGET_TIMEOUT`, `PROVTARGET_FQDN_IDENTITY`,
//! `PROVTARGET_PLUGIN_ACME_RACK_FILE`). Host keys take effect at once; the others are
//! resolved against the plugins' declared keys once they are loaded
//! ([`HostConfig::apply_declared_env`]). The whole merged map, including keys of
//! other plugins, is handed to every resolver's `configure`.

mod errors;

pub use errors::{ConfigError, ConfigWarning, ConfigWarningKind, ValueError};

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

    /// Whether the brokers of an answer are checked to be NATS servers: `off`
    /// (default), `warn` or `require`. See [`crate::broker_check`].
    pub const BROKER_CHECK: &str = "plugin.provtarget.broker_check";
    /// The whole broker check's deadline (default 2s), e.g. `2`, `2s`, `500ms`.
    pub const BROKER_CHECK_TIMEOUT: &str = "plugin.provtarget.broker_check_timeout";
    /// A PEM CA bundle the broker check verifies TLS brokers against (default: no
    /// certificate verification, as Choria's provisioning TLS is anonymous).
    pub const BROKER_CHECK_CA: &str = "plugin.provtarget.broker_check_ca";

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
    pub const ALL: [&str; 18] = [
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
        BROKER_CHECK,
        BROKER_CHECK_TIMEOUT,
        BROKER_CHECK_CA,
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
    pub fn parse(value: &str) -> Result<Isolation, ValueError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Isolation::None),
            "probe" => Ok(Isolation::Probe),
            "process" => Ok(Isolation::Process),
            _ => Err(ValueError::NotOneOf("use none, probe or process")),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `plugin.provtarget.broker_check_timeout` when unset.
pub const DEFAULT_BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What to do with the brokers of an answer (`plugin.provtarget.broker_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerCheckMode {
    /// No check (the default).
    #[default]
    Off,
    /// Check; keep every broker, log each failure once.
    Warn,
    /// Check; answer only the brokers that passed, fail the resolver when none did.
    Require,
}

impl BrokerCheckMode {
    /// `off`, `warn` or `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerCheckMode::Off => "off",
            BrokerCheckMode::Warn => "warn",
            BrokerCheckMode::Require => "require",
        }
    }

    /// Parses `off`, `warn` or `require` (case-insensitive, trimmed; empty is `off`).
    pub fn parse(value: &str) -> Result<BrokerCheckMode, ValueError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "" => Ok(BrokerCheckMode::Off),
            "warn" => Ok(BrokerCheckMode::Warn),
            "require" => Ok(BrokerCheckMode::Require),
            _ => Err(ValueError::NotOneOf(
                "use off, warn or require; the broker check stays off",
            )),
        }
    }
}

/// The broker check's settings, parsed once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerCheckSettings {
    /// `plugin.provtarget.broker_check`.
    pub mode: BrokerCheckMode,
    /// `plugin.provtarget.broker_check_timeout`: the whole check's deadline.
    pub timeout: Duration,
    /// `plugin.provtarget.broker_check_ca`: verify TLS brokers against this bundle.
    pub ca: Option<PathBuf>,
}

impl Default for BrokerCheckSettings {
    fn default() -> BrokerCheckSettings {
        BrokerCheckSettings {
            mode: BrokerCheckMode::Off,
            timeout: DEFAULT_BROKER_CHECK_TIMEOUT,
            ca: None,
        }
    }
}

/// How long a probing child may take when `plugin.provtarget.probe_timeout` is unset.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The JWT path used when neither the configuration nor the packager names one.
pub const DEFAULT_JWT_FILE: &str = "/etc/choria/provisioning.jwt";

/// Defaults a packager compiles in, the lowest layer of the precedence (see the
/// [`crate::default_resolver`] module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDefaults {
    /// Where the provisioning JWT is looked for.
    pub jwt_file: String,
    /// Comma-separated broker URLs, if any.
    pub broker_urls: Option<String>,
    /// SRV domain, if any.
    pub srv_domain: Option<String>,
}

impl BuildDefaults {
    /// The defaults of this build, from environment variables at compile time:
    /// `PROVTARGET_DEFAULT_JWT_FILE` (else [`DEFAULT_JWT_FILE`]),
    /// `PROVTARGET_DEFAULT_BROKER_URLS` and `PROVTARGET_DEFAULT_SRV_DOMAIN` (empty
    /// means unset).
    ///
    /// ```sh
    /// PROVTARGET_DEFAULT_SRV_DOMAIN=example.net cargo build --release -p provtarget
    /// ```
    pub fn compiled() -> BuildDefaults {
        let set = |v: Option<&'static str>| v.map(str::trim).filter(|v| !v.is_empty());
        BuildDefaults {
            jwt_file: set(option_env!("PROVTARGET_DEFAULT_JWT_FILE"))
                .unwrap_or(DEFAULT_JWT_FILE)
                .to_string(),
            broker_urls: set(option_env!("PROVTARGET_DEFAULT_BROKER_URLS")).map(String::from),
            srv_domain: set(option_env!("PROVTARGET_DEFAULT_SRV_DOMAIN")).map(String::from),
        }
    }
}

impl Default for BuildDefaults {
    /// The standard JWT path and nothing else.
    fn default() -> BuildDefaults {
        BuildDefaults {
            jwt_file: DEFAULT_JWT_FILE.to_string(),
            broker_urls: None,
            srv_domain: None,
        }
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
    broker_check: BrokerCheckSettings,
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
    warnings: Vec<ConfigWarning>,
    /// Every `PROVTARGET_*` variable read (name, value), for
    /// [`HostConfig::apply_declared_env`].
    env_seen: Vec<(String, String)>,
    /// The environment variable each key set from the environment came from.
    env_vars: BTreeMap<String, String>,
    /// The warnings about values given as flags, which the command line treats as
    /// errors ([`HostConfig::flag_errors`]).
    flag_errors: Vec<String>,
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
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The values given as flags (`--set`, `--timeout`, ...) that cannot be used:
    /// typed at a command line, they are errors (exit 2), while the same value in the
    /// file or the environment is a warning and the default is used. One line each,
    /// also among [`HostConfig::warnings`].
    pub fn flag_errors(&self) -> &[String] {
        &self.flag_errors
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

    /// The broker check's settings (`plugin.provtarget.broker_check`,
    /// `broker_check_timeout`, `broker_check_ca`; invalid values are reported in
    /// [`HostConfig::warnings`] and the defaults used).
    pub fn broker_check(&self) -> &BrokerCheckSettings {
        &self.parsed.broker_check
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
            Source::Environment => format!(
                "environment variable {}",
                self.env_vars
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| env_var(key))
            ),
            Source::File { line } => match &self.file_label {
                Some(f) => format!("{f} line {line}"),
                None => format!("configuration line {line}"),
            },
        })
    }

    /// Resolves the `PROVTARGET_*` environment variables against the keys the host
    /// and the loaded plugins declare (`declared`, as for
    /// [`HostConfig::unknown_key_warnings`]): each variable sets the key whose
    /// [`env_var`] it is (`PROVTARGET_FQDN_IDENTITY` sets
    /// `plugin.provtarget.fqdn.identity`; under a pattern key such as
    /// `plugin.provtarget.http.header.<Name>`, `PROVTARGET_HTTP_HEADER_METADATA`
    /// sets `plugin.provtarget.http.header.metadata`). A variable that names two
    /// keys sets neither and is reported naming both (a host key, already in effect,
    /// keeps it). A variable that names no declared key stays
    /// `plugin.provtarget.<name>`, reported by
    /// [`HostConfig::unknown_key_warnings`]. Returns the warnings.
    pub fn apply_declared_env(&mut self, declared: &[String]) -> Vec<ConfigWarning> {
        let mut by_var: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let exact = keys::ALL.iter().map(|k| k.to_string()).chain(
            declared
                .iter()
                .filter(|k| pattern_prefix(k).is_none())
                .cloned(),
        );
        for key in exact {
            let entry = by_var.entry(env_var(&key)).or_default();
            if !entry.contains(&key) {
                entry.push(key);
            }
        }
        let patterns: Vec<(String, &str)> = declared
            .iter()
            .filter_map(|k| pattern_prefix(k))
            .map(|prefix| (env_var(prefix), prefix))
            .collect();
        let mut warnings = Vec::new();
        for (var, value) in std::mem::take(&mut self.env_seen) {
            let mut found: Vec<String> = by_var.get(&var).cloned().unwrap_or_default();
            for (prefix_var, prefix) in &patterns {
                if let Some(rest) = var.strip_prefix(prefix_var.as_str()) {
                    let key = format!("{prefix}{}", rest.to_ascii_lowercase());
                    if !rest.is_empty() && !found.contains(&key) {
                        found.push(key);
                    }
                }
            }
            let fallback = format!(
                "{HOST_PREFIX}{}",
                var[ENV_PREFIX.len()..].to_ascii_lowercase()
            );
            let host_key = found.iter().find(|k| keys::ALL.contains(&k.as_str()));
            match (found.as_slice(), host_key) {
                ([], _) => {}
                ([only], _) if *only == fallback => {}
                ([only], _) => {
                    self.unset_env(&fallback, &var);
                    self.set_env(only, &value, &var);
                }
                (_, Some(host)) => {
                    let others: Vec<&str> = found
                        .iter()
                        .filter(|k| *k != host)
                        .map(String::as_str)
                        .collect();
                    warnings.push(ConfigWarning::about(
                        ConfigWarningKind::Malformed,
                        host,
                        Some(format!("environment variable {var}")),
                        format!(
                            "environment variable {var} is ambiguous: it names both {host} and {}; it is used for {host}: set the other with --set or in the configuration file",
                            others.join(" and ")
                        ),
                    ));
                }
                (_, None) => {
                    self.unset_env(&fallback, &var);
                    warnings.push(ConfigWarning::new(
                        ConfigWarningKind::Malformed,
                        format!(
                            "environment variable {var} is ambiguous: it names both {}; it is ignored: set the key you mean with --set or in the configuration file",
                            found.join(" and ")
                        ),
                    ));
                }
            }
        }
        warnings
    }

    /// Removes `key` when it was set from the environment variable `var`.
    fn unset_env(&mut self, key: &str, var: &str) {
        if self.env_vars.get(key).is_some_and(|v| v == var)
            && self.source(key) == Some(Source::Environment)
        {
            self.values.remove(key);
            self.env_vars.remove(key);
        }
    }

    /// Sets `key` from the environment variable `var`, below flags, above the file.
    fn set_env(&mut self, key: &str, value: &str, var: &str) {
        if self
            .source(key)
            .is_some_and(|s| s.rank() > Source::Environment.rank())
        {
            return;
        }
        self.values
            .insert(key.to_string(), (value.to_string(), Source::Environment));
        self.env_vars.insert(key.to_string(), var.to_string());
    }

    /// Warnings about `plugin.provtarget.*` keys that nothing reads, given the keys the
    /// loaded plugins declare (`declared`; a key ending in `*` or holding `<...>`
    /// stands for every key with that prefix). A one-word key the host does not know
    /// gets a "did you mean" hint; a key under a plugin's namespace
    /// (`plugin.provtarget.<plugin>.<key>`) that no loaded plugin declares is reported
    /// as set for a plugin that is not installed.
    pub fn unknown_key_warnings(&self, declared: &[String]) -> Vec<ConfigWarning> {
        let is_declared = |key: &str| {
            declared.iter().any(|full| match pattern_prefix(full) {
                Some(prefix) => key.starts_with(prefix) && key.len() > prefix.len(),
                None => full == key,
            })
        };
        // Keys under a namespace a loaded plugin declares (`plugin.acme.rack.` for
        // `plugin.acme.rack.file`) are checked too, whatever their prefix.
        let namespaces: Vec<&str> = declared.iter().filter_map(|k| namespace(k)).collect();
        let checked = |key: &str| {
            key.starts_with(HOST_PREFIX) || namespaces.iter().any(|ns| key.starts_with(ns))
        };
        // The keys a misspelt one is compared with: the host's, and every key the
        // loaded plugins declare (a pattern by its prefix).
        let known: Vec<&str> = keys::ALL
            .iter()
            .copied()
            .chain(declared.iter().map(|k| pattern_prefix(k).unwrap_or(k)))
            .collect();
        let mut warnings = Vec::new();
        let mut unknown = 0usize;
        for key in self.values.keys().filter(|k| checked(k)) {
            if keys::ALL.contains(&key.as_str()) || is_declared(key) {
                continue;
            }
            unknown += 1;
            if unknown <= MAX_REPEATED_WARNINGS {
                warnings.push(self.unknown_key_warning(key, &known));
            }
        }
        if unknown > MAX_REPEATED_WARNINGS {
            warnings.push(ConfigWarning::new(
                ConfigWarningKind::UnknownKey,
                format!(
                    "and {} more {HOST_PREFIX}* keys that nothing reads ({unknown} in all); remove them or install the plugins that read them",
                    unknown - MAX_REPEATED_WARNINGS
                ),
            ));
        }
        warnings
    }

    /// The warning for one key nothing reads: "did you mean" the nearest of `known`
    /// when one is near, else what its namespace holds.
    fn unknown_key_warning(&self, key: &str, known: &[&str]) -> ConfigWarning {
        let origin = self.origin(key).unwrap_or_default();
        let shown = shorten(key);
        // A "did you mean" only for key-sized text: the distance is quadratic.
        let near = (key.len() <= 2 * MAX_QUOTED)
            .then(|| {
                known
                    .iter()
                    .map(|k| (edit_distance(k, key), *k))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, k)| k)
            })
            .flatten();
        let text = match near {
            Some(near) => {
                let var = if self.source(key) == Some(Source::Environment) {
                    format!(" (environment variable {})", env_var(near))
                } else {
                    String::new()
                };
                format!("unknown configuration key {shown} ({origin}); did you mean {near}{var}?")
            }
            None => unread_key_text(key, &shown, &origin, known),
        };
        ConfigWarning::about(ConfigWarningKind::UnknownKey, key, Some(origin), text)
    }
}

/// The text for `key` (shown as `shown`, set in `origin`), which nothing reads and
/// which is near no known key: names the plugin to install, the host's keys, or the
/// keys the loaded plugins read under its namespace.
fn unread_key_text(key: &str, shown: &str, origin: &str, known: &[&str]) -> String {
    let rest = key.strip_prefix(HOST_PREFIX).unwrap_or(key);
    let plugin_ns = key
        .starts_with(HOST_PREFIX)
        .then(|| rest.split_once('.').map(|(plugin, _)| plugin))
        .flatten();
    // The keys declared under the key's own namespace, if a plugin has any.
    let own = match plugin_ns {
        Some(p) => format!("{HOST_PREFIX}{p}."),
        None => key[..key.rfind('.').map_or(0, |i| i + 1)].to_string(),
    };
    let ns_keys: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| k.starts_with(&own))
        .collect();
    match plugin_ns {
        Some(plugin) if ns_keys.is_empty() => format!(
            "{shown} ({origin}) is set but no loaded plugin reads it; install the {} plugin that does, or remove the key",
            shorten(plugin)
        ),
        None if key.starts_with(HOST_PREFIX) => format!(
            "unknown configuration key {shown} ({origin}); known keys: {}",
            keys::ALL.join(", ")
        ),
        _ if ns_keys.is_empty() => format!(
            "unknown configuration key {shown} ({origin}): no loaded plugin reads it; check its spelling in `provtarget buildinfo`, or remove it"
        ),
        _ => format!(
            "unknown configuration key {shown} ({origin}); the loaded plugins read {}",
            ns_keys.join(", ")
        ),
    }
}

/// The environment variable that sets `key`: `PROVTARGET_` and the key upper-cased
/// with every `.` and `-` turned to `_`, the `plugin.provtarget.` of host and
/// shipped-plugin keys left out. So `plugin.provtarget.timeout` is
/// `PROVTARGET_TIMEOUT`, `plugin.provtarget.fqdn.identity` is
/// `PROVTARGET_FQDN_IDENTITY` and a vendor's `plugin.acme.rack.file` is
/// `PROVTARGET_PLUGIN_ACME_RACK_FILE`: names any POSIX shell can export.
///
/// ```
/// use provtarget::config::env_var;
/// assert_eq!(env_var("plugin.provtarget.fqdn.identity"), "PROVTARGET_FQDN_IDENTITY");
/// assert_eq!(env_var("plugin.acme.rack-file"), "PROVTARGET_PLUGIN_ACME_RACK_FILE");
/// ```
pub fn env_var(key: &str) -> String {
    let rest = key.strip_prefix(HOST_PREFIX).unwrap_or(key);
    let name: String = rest
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{ENV_PREFIX}{name}")
}

/// The part of a declared key before its placeholder (`<Name>`) or `*`, when it has
/// one: `plugin.provtarget.http.header.<Name>` stands for every key under
/// `plugin.provtarget.http.header.`.
fn pattern_prefix(declared: &str) -> Option<&str> {
    declared.find(['<', '*']).map(|i| &declared[..i])
}

/// The namespace of a declared key: the key up to and including its last `.`
/// (`plugin.acme.rack.` for `plugin.acme.rack.file`), when it is specific enough to
/// claim (more than `plugin.`).
fn namespace(declared: &str) -> Option<&str> {
    let key = pattern_prefix(declared).unwrap_or(declared);
    let end = key.rfind('.')? + 1;
    let ns = &key[..end];
    (ns.matches('.').count() >= 2 && ns != HOST_PREFIX).then_some(ns)
}

/// One configuration key as `buildinfo` shows it: the value in effect and where it
/// came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingSource {
    /// The key.
    pub key: String,
    /// The value in effect, raw (`None`: unset, no default).
    pub value: Option<String>,
    /// `flag`, `environment`, `file` or `default`.
    pub source: &'static str,
    /// Where exactly: `flag`, `environment variable PROVTARGET_TIMEOUT`,
    /// `/etc/choria/server.conf line 12` or `default`.
    pub origin: String,
}

/// The value the host uses for one of its own keys when it is not set (`None`: the
/// key has no value then, e.g. no pin file).
pub fn host_default(key: &str) -> Option<String> {
    let build = BuildDefaults::compiled();
    match key {
        keys::DIRECTORIES => Some(
            default_directories()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        keys::JWT_FILE => Some(build.jwt_file),
        keys::BROKER_URLS => build.broker_urls,
        keys::SRV_DOMAIN => build.srv_domain,
        keys::INSECURE_SKIP_OWNER_CHECKS => Some("false".into()),
        keys::CACHE_DIR => Some(DEFAULT_CACHE_DIR.into()),
        keys::ISOLATION => Some(Isolation::default().as_str().into()),
        keys::PROBE_TIMEOUT => Some(format!("{}s", DEFAULT_PROBE_TIMEOUT.as_secs())),
        keys::BROKER_CHECK => Some("off".into()),
        keys::SIGNATURES => Some("off until a key is trusted, then warn".into()),
        keys::TRUSTED_KEYS => Some(provtarget_loader::DEFAULT_TRUSTED_KEYS.into()),
        keys::BROKER_CHECK_TIMEOUT => Some("2s".into()),
        _ => None,
    }
}

impl HostConfig {
    /// Every setting with its value and source, for `buildinfo`: the host's own keys,
    /// then the keys the loaded plugins declare (`declared`: key and default; a
    /// pattern key only when set), then every other key that is set, in key order.
    pub fn sources(&self, declared: &[(String, String)]) -> Vec<SettingSource> {
        let mut out: Vec<SettingSource> = Vec::new();
        let mut push = |key: &str, default: Option<String>| {
            if out.iter().any(|s| s.key == key) {
                return;
            }
            out.push(match self.values.get(key) {
                Some((value, source)) => SettingSource {
                    key: key.to_string(),
                    value: Some(value.clone()),
                    source: match source {
                        Source::Flag => "flag",
                        Source::Environment => "environment",
                        Source::File { .. } => "file",
                    },
                    origin: self.origin(key).unwrap_or_default(),
                },
                None => SettingSource {
                    key: key.to_string(),
                    value: default,
                    source: "default",
                    origin: "default".to_string(),
                },
            });
        };
        for key in keys::ALL {
            push(key, host_default(key));
        }
        for (key, default) in declared {
            if pattern_prefix(key).is_none() {
                push(key, Some(default.clone()).filter(|d| !d.is_empty()));
            }
        }
        for key in self.values.keys() {
            push(key, None);
        }
        out
    }
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
    pub fn file(mut self, path: &Path, required: bool) -> Result<ConfigBuilder, ConfigError> {
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
                    .extend(
                        provtarget_loader::trust_warnings(
                            path,
                            &input.metadata,
                            "configuration file",
                            "it decides where plugins are loaded from",
                        )
                        .into_iter()
                        .map(|w| ConfigWarning::new(ConfigWarningKind::UntrustedFile, w)),
                    );
                self.config.file = Some(path.to_path_buf());
                Ok(self.file_text(&path.display().to_string(), &text))
            }
            Err(provtarget_loader::InputError::NotFound) if !required => Ok(self),
            // `--config /dev/null`: the usual way to say "no configuration file".
            Err(provtarget_loader::InputError::NullDevice) => {
                self.config.file = Some(path.to_path_buf());
                Ok(self.file_text(&path.display().to_string(), ""))
            }
            Err(e @ provtarget_loader::InputError::NotRegular { .. }) => Err(ConfigError::File(
                format!(
                    "configuration file {shown} {e}; {fix} (a regular file of key = value lines)"
                ),
            )),
            Err(e @ provtarget_loader::InputError::TooLarge { .. }) => Err(ConfigError::File(
                format!(
                    "configuration file {shown} {e}; is it really a key = value configuration? {fix}"
                ),
            )),
            Err(e) => Err(ConfigError::File(format!(
                "cannot read configuration file {shown}: it {e}; {fix}"
            ))),
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
                        self.config.warnings.push(ConfigWarning::new(
                            ConfigWarningKind::Malformed,
                            format!(
                                "{label}:{}: ignoring \"{}\": expected `key = value`",
                                n + 1,
                                // Masked: a line with `:` for `=` may hold a password.
                                shorten(&crate::text::masked_input(line))
                            ),
                        ));
                    }
                }
            }
        }
        if malformed > MAX_REPEATED_WARNINGS {
            self.config.warnings.push(ConfigWarning::new(
                ConfigWarningKind::Malformed,
                format!(
                    "{label}: and {} more malformed lines ignored ({malformed} in all); every line must be `key = value`, a `#` comment or blank",
                    malformed - MAX_REPEATED_WARNINGS
                ),
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
                self.config.warnings.push(ConfigWarning::new(
                    ConfigWarningKind::Malformed,
                    format!(
                        "environment variable {} is not valid UTF-8; ignored",
                        k.to_string_lossy()
                    ),
                ));
                continue;
            };
            let suffix = &name[ENV_PREFIX.len()..];
            if suffix.is_empty() {
                continue;
            }
            // Host keys take effect now (they decide what is loaded); the others are
            // set under `plugin.provtarget.<name>` for now and resolved against the
            // keys the loaded plugins declare by `apply_declared_env`.
            let key = format!("{HOST_PREFIX}{}", suffix.to_ascii_lowercase());
            self.set(&key, value, Source::Environment);
            self.config.env_vars.insert(key, name.to_string());
            self.config
                .env_seen
                .push((name.to_string(), value.trim().to_string()));
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
        self.drop_file_override();
        let mut invalid = Invalid::default();
        let config = &self.config;
        let mut parsed = where_from(config);
        let mut report = |c: &HostConfig, key: &str, why: &str| invalid.report(c, key, why);
        parse_host_values(config, &mut parsed, &mut report);
        parse_isolation_and_checks(config, &mut parsed, &mut report);
        parsed.signatures = signature_policy(config, &mut report);
        self.config.parsed = parsed;
        self.config.warnings.extend(invalid.warnings);
        self.config.flag_errors = invalid.flag_errors;
        self.config
    }

    /// Drops `plugin.provtarget.insecure_skip_owner_checks` when the configuration file
    /// set it, with a warning: only a flag or the environment may turn it on.
    fn drop_file_override(&mut self) {
        if self
            .config
            .source(keys::INSECURE_SKIP_OWNER_CHECKS)
            .is_some_and(|s| matches!(s, Source::File { .. }))
        {
            // The override weakens the very checks that keep planted libraries out;
            // a file is too easy to get written to. Only an explicit flag or the
            // environment of the process may turn it on.
            self.config.values.remove(keys::INSECURE_SKIP_OWNER_CHECKS);
            self.config.warnings.push(ConfigWarning::about(
                ConfigWarningKind::NotAllowedInFile,
                keys::INSECURE_SKIP_OWNER_CHECKS,
                Some("configuration file".into()),
                format!(
                    "{} in the configuration file is ignored: the developer override is honoured only as --insecure-skip-owner-checks or PROVTARGET_INSECURE_SKIP_OWNER_CHECKS",
                    keys::INSECURE_SKIP_OWNER_CHECKS
                ),
            ));
        }
    }
}

/// The warnings (and, for values given as flags, the command-line errors) about values
/// [`ConfigBuilder::build`] cannot use.
#[derive(Default)]
struct Invalid {
    warnings: Vec<ConfigWarning>,
    flag_errors: Vec<String>,
}

impl Invalid {
    /// `key`'s value in `config` is ignored because of `why`: a warning naming the
    /// value (masked) and where it came from, and an error when it came from a flag.
    fn report(&mut self, config: &HostConfig, key: &str, why: &str) {
        let value = config.get(key).unwrap_or("");
        let value = if crate::text::is_secret_key(key) && !value.is_empty() {
            crate::text::MASK.to_string()
        } else {
            crate::text::masked_input(value)
        };
        let line = format!(
            "{key} = \"{}\" ({}) ignored: {why}",
            shorten(&value),
            config.origin(key).unwrap_or_default()
        );
        if config.source(key) == Some(Source::Flag) {
            self.flag_errors
                .push(format!("--set {key}=\"{}\": {why}", shorten(&value)));
        }
        self.warnings.push(ConfigWarning::about(
            ConfigWarningKind::InvalidValue,
            key,
            config.origin(key),
            line,
        ));
    }
}

/// Where plugins come from and which run: directories, resolvers, pin file (a flag
/// over the merged value), the default directories when none is set.
fn where_from(config: &HostConfig) -> Parsed {
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
    parsed
}

/// The cache directory, the deadline, the owner-check override and the DNS server.
fn parse_host_values(
    config: &HostConfig,
    parsed: &mut Parsed,
    invalid: &mut impl FnMut(&HostConfig, &str, &str),
) {
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
            Err(e) => invalid(
                config,
                keys::TIMEOUT,
                &format!("{e}; running with no deadline"),
            ),
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
            Err(e) => invalid(config, keys::DNS_SERVER, &e.to_string()),
        }
    }
}

/// The isolation mode, the probe deadline and the broker check's settings.
fn parse_isolation_and_checks(
    config: &HostConfig,
    parsed: &mut Parsed,
    invalid: &mut impl FnMut(&HostConfig, &str, &str),
) {
    if let Some(v) = config.get(keys::ISOLATION) {
        match Isolation::parse(v) {
            Ok(mode) => parsed.isolation = mode,
            Err(e) => invalid(config, keys::ISOLATION, &e.to_string()),
        }
    }
    if let Some(v) = config.get(keys::PROBE_TIMEOUT) {
        match parse_duration(v) {
            Ok(d) => parsed.probe_timeout = Some(d),
            Err(e) => invalid(config, keys::PROBE_TIMEOUT, &e.to_string()),
        }
    }
    if let Some(v) = config.get(keys::BROKER_CHECK) {
        match BrokerCheckMode::parse(v) {
            Ok(mode) => parsed.broker_check.mode = mode,
            Err(e) => invalid(config, keys::BROKER_CHECK, &e.to_string()),
        }
    }
    if let Some(v) = config.get(keys::BROKER_CHECK_TIMEOUT) {
        match parse_duration(v) {
            Ok(d) => parsed.broker_check.timeout = d,
            Err(e) => invalid(
                config,
                keys::BROKER_CHECK_TIMEOUT,
                &format!("{e}; using the default 2s"),
            ),
        }
    }
    parsed.broker_check.ca = config
        .get(keys::BROKER_CHECK_CA)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
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
pub fn parse_dns_server(value: &str) -> Result<std::net::SocketAddr, ValueError> {
    let v = value.trim();
    v.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            v.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| ValueError::NotADnsServer)
}

/// The shortest deadline accepted: below it a resolver cannot even be started and
/// answer, so a resolution would fail at random.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest deadline accepted (a day); for no deadline, leave the key unset.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Parses `30`, `1.5`, `30s`, `500ms`, `2m` or `1h` into a deadline between
/// [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`].
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
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
                Err(ValueError::TooShort(text.to_string()))
            } else if seconds > MAX_TIMEOUT.as_secs_f64() {
                Err(ValueError::TooLong(text.to_string()))
            } else {
                Ok(Duration::from_secs_f64(seconds))
            }
        }
        _ => Err(ValueError::NotADuration(text.to_string())),
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

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn environment_variables_resolve_against_the_declared_keys() {
        let declared = strings(&[
            "plugin.provtarget.fqdn.identity",
            "plugin.provtarget.fqdn.template",
            "plugin.acme.rack.file",
            "plugin.provtarget.http.header.<Name>",
        ]);
        let mut c = ConfigBuilder::new()
            .file_text(
                "f",
                "plugin.provtarget.fqdn.template = file\nplugin.acme.rack.file = /file.json\n",
            )
            .env([
                ("PROVTARGET_FQDN_IDENTITY", "web1.lon1.example.net"),
                ("PROVTARGET_FQDN_TEMPLATE", "env"),
                ("PROVTARGET_PLUGIN_ACME_RACK_FILE", "/env.json"),
                ("PROVTARGET_HTTP_HEADER_METADATA", "true"),
                ("PROVTARGET_TIMEOUT", "5"),
            ])
            .flag("plugin.acme.rack.file", "/flag.json")
            .build();
        // Host keys take effect at once; the others wait for the declared keys.
        assert_eq!(c.timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            c.get("plugin.provtarget.fqdn_identity"),
            Some("web1.lon1.example.net")
        );
        let w = c.apply_declared_env(&declared);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.get("plugin.provtarget.fqdn.identity"),
            Some("web1.lon1.example.net")
        );
        assert_eq!(c.get("plugin.provtarget.fqdn_identity"), None);
        assert_eq!(
            c.origin("plugin.provtarget.fqdn.identity").as_deref(),
            Some("environment variable PROVTARGET_FQDN_IDENTITY")
        );
        // Environment beats the file, a flag beats the environment.
        assert_eq!(c.get("plugin.provtarget.fqdn.template"), Some("env"));
        assert_eq!(c.get("plugin.acme.rack.file"), Some("/flag.json"));
        assert_eq!(
            c.get("plugin.provtarget.http.header.metadata"),
            Some("true")
        );
        assert!(
            c.unknown_key_warnings(&declared).is_empty(),
            "{:?}",
            c.unknown_key_warnings(&declared)
        );
        assert_eq!(
            c.resolver_config().get("plugin.provtarget.fqdn.identity"),
            Some("web1.lon1.example.net")
        );

        // A variable naming two declared keys sets neither and names both.
        let declared = strings(&["plugin.provtarget.a.b_c", "plugin.provtarget.a_b.c"]);
        let mut c = ConfigBuilder::new()
            .env([("PROVTARGET_A_B_C", "1")])
            .build();
        let w = c.apply_declared_env(&declared);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("environment variable PROVTARGET_A_B_C is ambiguous: it names both plugin.provtarget.a.b_c and plugin.provtarget.a_b.c"),
            "{w:?}"
        );
        assert_eq!(c.get("plugin.provtarget.a.b_c"), None);
        assert_eq!(c.get("plugin.provtarget.a_b.c"), None);
        assert_eq!(c.get("plugin.provtarget.a_b_c"), None);

        // One naming a host key and a plugin's key stays the host's, and says so.
        let declared = strings(&["plugin.provtarget.dns.server"]);
        let mut c = ConfigBuilder::new()
            .env([("PROVTARGET_DNS_SERVER", "127.0.0.1")])
            .build();
        let w = c.apply_declared_env(&declared);
        assert!(
            w[0].contains("names both plugin.provtarget.dns_server and plugin.provtarget.dns.server; it is used for plugin.provtarget.dns_server"),
            "{w:?}"
        );
        assert_eq!(c.dns_server(), Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(c.get("plugin.provtarget.dns.server"), None);
    }

    #[test]
    fn misspelt_keys_get_the_closest_known_key_of_the_host_or_a_loaded_plugin() {
        let declared = strings(&[
            "plugin.provtarget.fqdn.template",
            "plugin.acme.rack.file",
            "plugin.acme.rack.row",
        ]);
        let mut c = ConfigBuilder::new()
            .file_text(
                "f",
                "plugin.provtarget.fqdn.templte = x\nplugin.acme.rack.fiel = y\nplugin.acme.rack.zzzzzzzzzz = z\nplugin.choria.other = untouched\n",
            )
            .env([("PROVTARGET_FQDN_TEMPLTE", "e")])
            .build();
        assert!(c.apply_declared_env(&declared).is_empty());
        let w: Vec<String> = c
            .unknown_key_warnings(&declared)
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.contains(&"unknown configuration key plugin.provtarget.fqdn.templte (f line 1); did you mean plugin.provtarget.fqdn.template?".to_string()), "{w:?}");
        assert!(w.contains(&"unknown configuration key plugin.acme.rack.fiel (f line 2); did you mean plugin.acme.rack.file?".to_string()), "{w:?}");
        assert!(w.contains(&"unknown configuration key plugin.acme.rack.zzzzzzzzzz (f line 3); the loaded plugins read plugin.acme.rack.file, plugin.acme.rack.row".to_string()), "{w:?}");
        // From the environment: the variable to use instead.
        assert!(w.contains(&"unknown configuration key plugin.provtarget.fqdn_templte (environment variable PROVTARGET_FQDN_TEMPLTE); did you mean plugin.provtarget.fqdn.template (environment variable PROVTARGET_FQDN_TEMPLATE)?".to_string()), "{w:?}");
        assert!(!w.iter().any(|m| m.contains("plugin.choria")), "{w:?}");
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
            .to_string()
            .contains("at least 10ms"));
        assert!(parse_duration("9ms")
            .unwrap_err()
            .to_string()
            .contains("at least 10ms"));
        assert_eq!(parse_duration("10ms").unwrap(), MIN_TIMEOUT);
        assert!(parse_duration("25h")
            .unwrap_err()
            .to_string()
            .contains("maximum of 24h"));
        assert!(parse_duration("1e12")
            .unwrap_err()
            .to_string()
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
        let err = ConfigBuilder::new()
            .file(missing, true)
            .unwrap_err()
            .to_string();
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
    fn malformed_lines_naming_a_secret_are_masked() {
        let c = ConfigBuilder::new()
            .file_text(
                "server.conf",
                "plugin.provtarget.etcd.password: S3CRET\n\
                 plugin.provtarget.http.header.Authorization: Bearer S3CRET\n\
                 plugin.provtarget.etcd.password S3CRET\n",
            )
            .build();
        assert_eq!(c.warnings().len(), 3, "{:?}", c.warnings());
        for w in c.warnings() {
            assert!(!w.contains("S3CRET"), "{w}");
            assert!(w.contains("*****"), "{w}");
        }
        assert!(c.warnings()[0].contains("plugin.provtarget.etcd.password: *****"));
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
            w[MAX_REPEATED_WARNINGS].as_str(),
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
                let err = ConfigBuilder::new()
                    .file(path, required)
                    .unwrap_err()
                    .to_string();
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
