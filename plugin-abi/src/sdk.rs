//! The plugin author's side: the [`Resolver`] trait and what it is handed.
#![forbid(unsafe_code)]

use std::{collections::BTreeMap, fmt, time::Duration};

#[cfg(not(doc))]
use crate::ffi::current::{FfiHost, FfiHostRef};
use crate::{
    cancel::{Cancellation, Cancelled},
    PluginType,
};

/// The error type resolvers return: anything that implements [`std::error::Error`],
/// so `?` works on I/O, parse and JSON errors alike. Only its message crosses the
/// boundary.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Provisioning settings a resolver hands back from [`Resolver::configure`]: what it
/// will use, as `(key, value)` pairs that `provtarget buildinfo` shows.
///
/// ```
/// use provtarget_abi::Settings;
///
/// let settings = Settings::new()
///     .with("plugin.acme.url", "http://169.254.169.254/latest")
///     .with("plugin.acme.port", 4222)
///     .secret("plugin.acme.token", "s3cr3t");
/// let shown: Vec<(&str, &str)> = settings.iter().collect();
/// assert_eq!(shown[1], ("plugin.acme.port", "4222"));
/// assert_eq!(shown[2], ("plugin.acme.token", "*****"));
/// ```
///
/// The host also masks every value whose key mentions a token, password or secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(String, String)>,
}

impl Settings {
    /// No settings.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// Adds `key = value`.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Settings {
        self.entries.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds `key` with its value masked (`*****`, or empty when the value is empty):
    /// the value never leaves the plugin.
    pub fn secret(mut self, key: &str, value: &str) -> Settings {
        let shown = if value.is_empty() { "" } else { MASK };
        self.entries.push((key.to_string(), shown.to_string()));
        self
    }

    /// The value shown for `key` (the first one added), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)`, in the order added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many settings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Settings {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl From<Vec<(String, String)>> for Settings {
    fn from(entries: Vec<(String, String)>) -> Self {
        Settings { entries }
    }
}

impl IntoIterator for Settings {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// How masked values are shown.
const MASK: &str = "*****";

/// A provisioning target resolver, written as ordinary Rust.
///
/// Implement it, then call [`crate::export_plugin!`] once with the type. Every method
/// call from the host is wrapped in `catch_unwind`: a panic becomes an error that names
/// the plugin and the panic message, and the host carries on.
///
/// Resolvers should keep trying until they have targets or the host cancels them (see
/// [`crate::backoff`]); an unprovisioned server that gives up stays unprovisioned.
pub trait Resolver: Sized + Send + Sync + 'static {
    /// Display name, shown by `provtarget buildinfo`; unique among installed plugins.
    const NAME: &'static str;
    /// Plugin version, semver (`env!("CARGO_PKG_VERSION")` is the usual choice).
    const VERSION: &'static str;
    /// Who ships the plugin.
    const VENDOR: &'static str = "";
    /// One line saying what it does.
    const DESCRIPTION: &'static str = "";
    /// Choria plugin type. Leave it: the host refuses anything but
    /// [`PluginType::ProvisionTargetResolver`].
    const PLUGIN_TYPE: PluginType = PluginType::ProvisionTargetResolver;

    /// Builds the resolver when the host loads the library. Keep it cheap and free of
    /// I/O: read files and talk to services in [`Resolver::configure`] and
    /// [`Resolver::targets`], where the host can log and cancel.
    fn new() -> Result<Self, Error>;

    /// The configuration keys this resolver reads, shown by `provtarget plugins check`.
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Called once at start-up, provisioning or not, with the host's whole
    /// configuration. An error here is reported; the host goes on without this resolver.
    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        let _ = (ctx, config);
        Ok(Settings::new())
    }

    /// Returns the provisioning brokers as `host:port` (or `scheme://host:port`)
    /// strings. Called on a worker thread; return promptly once
    /// [`Context::is_cancelled`] is true.
    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error>;
}

/// A configuration key a resolver reads; see [`Resolver::config_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// The key, e.g. `plugin.acme.dc_hint.file`.
    pub key: String,
    /// The value used when the key is not set (empty when there is none).
    pub default: String,
    /// What the key does.
    pub description: String,
}

impl ConfigKey {
    /// A key with its default and description.
    pub fn new(key: &str, default: &str, description: &str) -> ConfigKey {
        ConfigKey {
            key: key.into(),
            default: default.into(),
            description: description.into(),
        }
    }
}

/// The host's configuration: every `key = value` of its configuration file, after
/// environment and command-line overrides, plus the defaults the resolver declared in
/// [`Resolver::config_keys`].
///
/// The typed getters read a key's value, or its declared default when the key is
/// unset or blank, and fail with a [`ConfigError`] that names the key, the value and
/// the form expected, ready to return from [`Resolver::configure`] with `?`:
///
/// ```
/// use provtarget_abi::{Config, ConfigKey};
/// use std::time::Duration;
///
/// let config = Config::from_iter([
///     ("plugin.acme.port", "80a"),
///     ("plugin.acme.servers", "10.0.0.1:53, 10.0.0.2:53,"),
/// ])
/// .with_keys(&[
///     ConfigKey::new("plugin.acme.timeout", "2s", "per request"),
///     ConfigKey::new("plugin.acme.port", "4222", "broker port"),
/// ]);
/// assert_eq!(config.duration("plugin.acme.timeout").unwrap(), Duration::from_secs(2));
/// assert_eq!(config.list("plugin.acme.servers"), ["10.0.0.1:53", "10.0.0.2:53"]);
/// assert_eq!(
///     config.port("plugin.acme.port").unwrap_err().to_string(),
///     r#"plugin.acme.port = "80a" is not valid: expected a port number from 1 to 65535"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
}

impl Config {
    /// Declares `keys`' defaults: the typed getters fall back to them.
    pub fn with_keys(mut self, keys: &[ConfigKey]) -> Config {
        for k in keys {
            self.defaults.insert(k.key.clone(), k.default.clone());
        }
        self
    }

    /// The value of `key` as set, if set (no default applied).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value of `key`, or `default` when it is unset or blank.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        match self.get(key).map(str::trim) {
            Some(v) if !v.is_empty() => v,
            _ => default,
        }
    }

    /// Every key and value as set, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether `key` is set to a non-blank value.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.trim().is_empty())
    }

    /// The value of `key` (trimmed), or its declared default, or `""`.
    pub fn string(&self, key: &str) -> &str {
        let declared = self.defaults.get(key).map(String::as_str).unwrap_or("");
        self.get_or(key, declared)
    }

    /// The value of `key` (or its default) as a comma-separated list: items trimmed,
    /// empty items dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.string(key)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The value of `key` (or its default) parsed as `T`; the error says the form
    /// `expected`, e.g. `"a whole number of seconds"`.
    pub fn parse<T>(&self, key: &str, expected: &str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
    {
        let value = self.string(key);
        value
            .parse()
            .map_err(|_| ConfigError::new(key, value, expected))
    }

    /// The value of `key` (or its default) as a boolean: `true`/`false`, `yes`/`no`,
    /// `on`/`off`, `1`/`0`, in any case. Unset with no default is `false`.
    pub fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.string(key).to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "t" | "y" => Ok(true),
            "false" | "no" | "off" | "0" | "f" | "n" | "" => Ok(false),
            _ => Err(ConfigError::new(
                key,
                self.string(key),
                "true or false (also yes/no, on/off, 1/0)",
            )),
        }
    }

    /// The value of `key` (or its default) as a TCP/UDP port, 1 to 65535.
    pub fn port(&self, key: &str) -> Result<u16, ConfigError> {
        match self.string(key).parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(ConfigError::new(
                key,
                self.string(key),
                "a port number from 1 to 65535",
            )),
        }
    }

    /// The value of `key` (or its default) as a duration: a number with an optional
    /// unit, `ms`, `s` (the default), `m` or `h`: `500ms`, `2s`, `30`, `1m`. Zero is
    /// allowed; callers that need more check it.
    pub fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let value = self.string(key);
        parse_duration(value).ok_or_else(|| {
            ConfigError::new(
                key,
                value,
                "a duration such as 500ms, 2s, 30 (seconds), 1m or 1h, at most 24h",
            )
        })
    }
}

/// `500ms`, `2s`, `30`, `1.5m`, `1h`; at most a day.
fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let seconds = number * scale;
    (seconds.is_finite() && (0.0..=86_400.0).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

/// A configuration value a resolver cannot use: names the key, the value and the form
/// expected, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `plugin.acme.port`.
    pub key: String,
    /// The value found (set or default).
    pub value: String,
    /// What a valid value looks like.
    pub expected: String,
}

impl ConfigError {
    /// `key = value` is not valid: `expected` says what is.
    pub fn new(key: &str, value: &str, expected: &str) -> ConfigError {
        ConfigError {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {:?} is not valid: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            defaults: BTreeMap::new(),
        }
    }
}

/// Severity of a log line sent to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LogLevel {
    /// Something failed.
    Error = 1,
    /// Something is wrong but the resolver carries on.
    Warn = 2,
    /// Normal progress.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Very detailed tracing.
    Trace = 5,
}

impl LogLevel {
    /// The level for a wire value; unknown values are treated as `Info`.
    #[doc(hidden)]
    pub fn from_u8(v: u8) -> LogLevel {
        match v {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => LogLevel::Info,
        }
    }
}

/// What the host hands a resolver on every call: cancellation, an interruptible sleep,
/// and logging into the host's log (a plugin's own `tracing` or `log` calls would go to
/// the plugin's private copy of those crates and never be seen).
pub struct Context<'a> {
    host: &'a (dyn HostCalls + Sync + 'a),
    /// Set by [`Context::provenance`] during `targets`.
    provenance: std::sync::Mutex<Option<String>>,
}

/// The host object behind a [`Context`], whatever its lifetime parameters: the real
/// host through the ABI, or [`crate::testkit::TestHost`] in a plugin's unit tests.
pub(crate) trait HostCalls {
    fn is_cancelled(&self) -> bool;
    fn sleep_ms(&self, millis: u64) -> bool;
    fn log(&self, level: u8, message: &str);
}

#[cfg(not(doc))]
impl HostCalls for FfiHostRef<'_> {
    fn is_cancelled(&self) -> bool {
        FfiHost::is_cancelled(self)
    }
    fn sleep_ms(&self, millis: u64) -> bool {
        FfiHost::sleep_ms(self, millis)
    }
    fn log(&self, level: u8, message: &str) {
        FfiHost::log(self, level, message.into())
    }
}

impl<'a> Context<'a> {
    #[cfg(not(doc))]
    pub(crate) fn new(host: &'a FfiHostRef<'_>) -> Self {
        Context::from_calls(host)
    }

    /// A context over any host implementation (the test kit's).
    pub(crate) fn from_calls(host: &'a (dyn HostCalls + Sync + 'a)) -> Self {
        Context {
            host,
            provenance: std::sync::Mutex::new(None),
        }
    }

    /// Says where this call's answer came from, in one short line, e.g.
    /// `ctx.provenance(format_args!("etcd key {key} revision {rev} via {url}"))`. Call
    /// it in `targets`, before returning the targets; the last call wins. The host
    /// shows it with the answer (`provtarget targets`, its JSON and its log), cut to
    /// 512 bytes and escaped. Hosts older than interface 1.2 do not ask for it.
    pub fn provenance(&self, text: impl fmt::Display) {
        let text = text.to_string();
        *self.provenance.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }

    /// What [`Context::provenance`] last recorded on this context, if anything (for a
    /// plugin's own tests, with [`crate::testkit::TestHost::context`]).
    pub fn provenance_given(&self) -> Option<String> {
        self.provenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the host has cancelled this call (timeout, shutdown, Ctrl-C).
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }

    /// Sleeps for `duration`; returns [`Cancelled`] as soon as the host cancels.
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if self.host.sleep_ms(millis) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sends a log line at `level` to the host.
    pub fn log(&self, level: LogLevel, message: impl fmt::Display) {
        let text = message.to_string();
        self.host.log(level as u8, &text);
    }

    /// Logs at error level.
    pub fn error(&self, message: impl fmt::Display) {
        self.log(LogLevel::Error, message)
    }
    /// Logs at warning level.
    pub fn warn(&self, message: impl fmt::Display) {
        self.log(LogLevel::Warn, message)
    }
    /// Logs at info level.
    pub fn info(&self, message: impl fmt::Display) {
        self.log(LogLevel::Info, message)
    }
    /// Logs at debug level.
    pub fn debug(&self, message: impl fmt::Display) {
        self.log(LogLevel::Debug, message)
    }
    /// Logs at trace level.
    pub fn trace(&self, message: impl fmt::Display) {
        self.log(LogLevel::Trace, message)
    }
}

// A plugin may hand its context to scoped worker threads (e.g. to query several
// services at once and check cancellation from each).
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<Context<'static>>;
};

impl Cancellation for Context<'_> {
    fn is_cancelled(&self) -> bool {
        Context::is_cancelled(self)
    }
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        Context::sleep(self, duration)
    }
    fn retrying(&self, try_: usize, error: &dyn fmt::Display, pause: Duration) {
        self.warn(format_args!(
            "try {try_} failed: {error}; trying again in {} ms",
            pause.as_millis()
        ));
    }
}
