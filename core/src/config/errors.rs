//! The configuration's typed warnings and errors: each carries what a program needs
//! (the key, where its value came from, which kind of problem) and shows, through
//! `Display`, the one line the operator reads (the same text the host always printed).

use std::fmt;

/// Which kind of problem a [`ConfigWarning`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarningKind {
    /// A value of a host key that cannot be used; the host uses its default instead.
    InvalidValue,
    /// A key the configuration file may not set (the developer override).
    NotAllowedInFile,
    /// A line of the configuration file, or an environment variable, that is not
    /// `key = value` (or not UTF-8), or the sum of many such lines.
    Malformed,
    /// The configuration file may be written by someone else than root or us.
    UntrustedFile,
    /// A key nothing reads (with a "did you mean" when one is near), or the sum of
    /// many such keys.
    UnknownKey,
}

/// A warning about the configuration: the key it is about and where that key's value
/// came from (`flag`, `environment variable PROVTARGET_TIMEOUT`,
/// `/etc/choria/server.conf line 12`), when it is about one key, and its kind.
/// `Display` (and `Deref<Target = str>`) give the one line shown to the operator.
///
/// ```
/// use provtarget::config::{keys, ConfigBuilder, ConfigWarningKind};
///
/// let config = ConfigBuilder::new().flag(keys::ISOLATION, "sandbox").build();
/// let w = &config.warnings()[0];
/// assert_eq!(w.kind, ConfigWarningKind::InvalidValue);
/// assert_eq!(w.key.as_deref(), Some("plugin.provtarget.isolation"));
/// assert_eq!(w.source.as_deref(), Some("flag"));
/// assert_eq!(
///     w.to_string(),
///     "plugin.provtarget.isolation = \"sandbox\" (flag) ignored: use none, probe or process"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key the warning is about, if it is about one.
    pub key: Option<String>,
    /// Where that key's value came from, if known.
    pub source: Option<String>,
    /// Which kind of problem.
    pub kind: ConfigWarningKind,
    text: String,
}

impl ConfigWarning {
    /// A warning about no one key.
    pub(crate) fn new(kind: ConfigWarningKind, text: String) -> ConfigWarning {
        ConfigWarning {
            key: None,
            source: None,
            kind,
            text,
        }
    }

    /// A warning about `key`, whose value came from `source`.
    pub(crate) fn about(
        kind: ConfigWarningKind,
        key: &str,
        source: Option<String>,
        text: String,
    ) -> ConfigWarning {
        ConfigWarning {
            key: Some(key.to_string()),
            source,
            kind,
            text,
        }
    }

    /// The one line shown to the operator.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

crate::text::one_line_text!(ConfigWarning, text);

impl From<ConfigWarning> for String {
    fn from(w: ConfigWarning) -> String {
        w.text
    }
}

/// Why a value of one of the host's keys cannot be used ([`crate::config::parse_duration`],
/// [`crate::config::parse_dns_server`], [`crate::config::Isolation::parse`],
/// [`crate::config::BrokerCheckMode::parse`]). `Display` gives the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueError {
    /// Not one of the words the key takes; the text says which (`use none, probe or
    /// process`).
    NotOneOf(&'static str),
    /// Not a duration (the text as given).
    NotADuration(String),
    /// A duration below [`crate::config::MIN_TIMEOUT`].
    TooShort(String),
    /// A duration above [`crate::config::MAX_TIMEOUT`].
    TooLong(String),
    /// Not `ip:port` or a bare IP address.
    NotADnsServer,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::NotOneOf(fix) => f.write_str(fix),
            ValueError::NotADuration(text) => write!(
                f,
                "{text:?} is not a duration; use seconds (30), or 500ms, 30s, 2m, 1h"
            ),
            ValueError::TooShort(text) => write!(
                f,
                "{text:?} is too short to resolve anything; use at least 10ms (or leave it unset for no deadline)"
            ),
            ValueError::TooLong(text) => write!(
                f,
                "{text:?} is longer than the maximum of 24h; use a shorter deadline, or leave it unset for none"
            ),
            ValueError::NotADnsServer => f.write_str(
                "expected ip:port such as 127.0.0.1:53 (or a bare IP for port 53); using the system DNS configuration",
            ),
        }
    }
}

impl std::error::Error for ValueError {}

/// Why the host configuration cannot be made at all (a `--config` file that cannot be
/// read, a malformed `--set`, a relative `--plugin-dir`, ...): the one line naming the
/// thing and the fix, as `Display` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file is not a regular file, too large, or unreadable.
    File(String),
    /// A command-line flag that cannot be used.
    Flag(String),
}

impl ConfigError {
    /// The one line.
    pub fn as_str(&self) -> &str {
        match self {
            ConfigError::File(text) | ConfigError::Flag(text) => text,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_errors_keep_their_texts() {
        assert_eq!(
            ValueError::TooShort("9ms".into()).to_string(),
            "\"9ms\" is too short to resolve anything; use at least 10ms (or leave it unset for no deadline)"
        );
        assert_eq!(
            ValueError::NotOneOf("use none, probe or process").to_string(),
            "use none, probe or process"
        );
        assert!(ValueError::NotADnsServer
            .to_string()
            .starts_with("expected ip:port"));
    }

    #[test]
    fn a_warning_reads_as_its_line_and_keeps_its_fields() {
        let w = ConfigWarning::about(
            ConfigWarningKind::UnknownKey,
            "plugin.provtarget.timeot",
            Some("flag".into()),
            "unknown configuration key plugin.provtarget.timeot (flag); did you mean plugin.provtarget.timeout?".into(),
        );
        assert_eq!(w.key.as_deref(), Some("plugin.provtarget.timeot"));
        assert_eq!(w.source.as_deref(), Some("flag"));
        assert!(w.contains("did you mean"));
        assert_eq!(String::from(w.clone()), w.to_string());
        assert_eq!(ConfigError::Flag("--set x".into()).to_string(), "--set x");
    }
}
