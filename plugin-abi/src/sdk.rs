//! The plugin author's side: the [`Resolver`] trait and what it is handed.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{
    cancel::{Cancellation, Cancelled},
    ffi::current::{FfiHost, FfiHostRef},
    PluginType,
};

/// The error type resolvers return: anything that implements [`std::error::Error`],
/// so `?` works on I/O, parse and JSON errors alike. Only its message crosses the
/// boundary.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Provisioning settings a resolver hands back from [`Resolver::configure`], as
/// `(key, value)` pairs. The host shows them in `buildinfo`, masking every value whose
/// key mentions a token, password or secret.
pub type Settings = Vec<(String, String)>;

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
/// environment and command-line overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// The value of `key`, if set.
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

    /// Every key and value, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
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
}

/// The host object behind a [`Context`], whatever its lifetime parameters.
trait HostCalls {
    fn is_cancelled(&self) -> bool;
    fn sleep_ms(&self, millis: u64) -> bool;
    fn log(&self, level: u8, message: &str);
}

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
    pub(crate) fn new(host: &'a FfiHostRef<'_>) -> Self {
        Context { host }
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
}
