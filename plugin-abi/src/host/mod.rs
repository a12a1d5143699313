//! The host's side of the contract: open a plugin library, read whichever released
//! layout it was built against, and call it through one native API.
//!
//! No abi_stable type appears in this module's public API, so a host (and a future
//! move away from abi_stable) deals only with [`PluginLibrary`], [`PluginResolver`],
//! [`PluginInfo`], [`TargetList`] (with its [`Answer`]) and [`HostServices`].
//!
//! This module does the abi_stable part of loading only. Opening a library runs its
//! code, so a host must first decide the file is trustworthy and well-formed (the
//! provtarget loader checks ownership, mode, pins and ELF headers before calling
//! [`PluginLibrary::open`]).
#![forbid(unsafe_code)]

use std::{fmt, time::Duration};

use abi_stable::{
    library::{LibHeader, LibraryError},
    std_types::{RString, RVec, Tuple2},
};

use crate::{text::one_line, ConfigKey, LogLevel, PluginType};

mod answer;
mod layouts;

pub use answer::Answer;

/// What the host offers a plugin during a call: cancellation, an interruptible sleep
/// and logging. The host implements it once per call, typically carrying the plugin's
/// name into its log records.
pub trait HostServices: Send + Sync {
    /// Whether the current call has been cancelled.
    fn is_cancelled(&self) -> bool;
    /// Sleeps up to `duration`; returns `true` if cancelled before or during the sleep.
    fn sleep(&self, duration: Duration) -> bool;
    /// Receives one log line from the plugin.
    fn log(&self, level: LogLevel, message: &str);
}

/// A plugin's self-description, read from the library without running the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Display name.
    pub name: String,
    /// Plugin version as declared (the host validates it as semver).
    pub version: String,
    /// The declared plugin type.
    pub plugin_type: PluginType,
    /// The raw type id as declared (ids outside 0–7 read as [`PluginType::Unknown`]).
    pub plugin_type_id: u32,
    /// Vendor.
    pub vendor: String,
    /// One-line description.
    pub description: String,
    /// Interface version the plugin was built against, e.g. `1.0.0`.
    pub interface_version: String,
    /// `rustc --version` of the compiler that built the plugin.
    pub rustc_version: String,
    /// Target triple the plugin was built for.
    pub target: String,
    /// abi_stable version the plugin links.
    pub abi_stable_version: String,
    /// provtarget-abi (SDK) version the plugin was built with.
    pub sdk_version: String,
}

/// The stage at which [`PluginLibrary::open`] refused a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenErrorKind {
    /// The dynamic linker refused the file (not a library, wrong architecture,
    /// missing dependency, ...).
    NotLoadable,
    /// The library loaded but exports no provtarget root module.
    NotAPlugin,
    /// The library was built with an incompatible abi_stable.
    AbiStableMismatch,
    /// The library was built against another major interface version.
    InterfaceMismatch,
    /// The library's types do not match any layout this host reads.
    LayoutMismatch,
    /// The library's root-module constructor failed or panicked.
    RootModule,
}

/// Why a library could not be opened as a plugin.
#[derive(Debug, Clone)]
pub struct OpenError {
    /// The stage that refused it.
    pub kind: OpenErrorKind,
    /// One line saying what is wrong and what to do.
    pub message: String,
    /// Full detail (abi_stable's layout report can run to a thousand lines); for debug
    /// logs only.
    pub detail: String,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpenError {}

/// The interface versions this host can read, newest first: one per released layout
/// (the list in `plugin-abi/src/host/layouts.rs`).
pub fn supported_interfaces() -> impl ExactSizeIterator<Item = &'static str> {
    layouts::SUPPORTED.iter().map(|l| l.version)
}

/// An opened, layout-checked plugin library. Libraries are never unloaded.
pub struct PluginLibrary {
    module: Box<dyn layouts::Module>,
}

impl PluginLibrary {
    pub(crate) fn from_header(header: &'static LibHeader) -> Result<PluginLibrary, OpenError> {
        let declared = header.version_strings().version.as_str().to_string();
        // The layout is chosen once, by the declared version, never by trial: a plugin
        // declaring 1.1 must match the 1.1 layout (it must not slip in through the 1.0
        // one), and a 1.0 plugin is checked once, against 1.0.
        let layout = layouts::for_declared(&declared)?;
        (layout.open)(header)
            .map(|module| PluginLibrary { module })
            .map_err(|e| library_error(e, &declared))
    }

    /// The interface version whose layout this library was read with.
    pub fn interface_version(&self) -> &'static str {
        self.module.version()
    }

    /// The plugin's self-description.
    pub fn info(&self) -> PluginInfo {
        self.module.info()
    }

    /// The configuration keys the plugin declares (none before interface 1.1).
    pub fn config_keys(&self) -> Vec<ConfigKey> {
        self.module.config_keys()
    }

    /// Runs the plugin's constructor. The error is the plugin's one-line message
    /// (including panics, which the SDK turns into errors).
    pub fn new_resolver(&self) -> Result<PluginResolver, String> {
        Ok(PluginResolver {
            inner: self.module.new_resolver()?,
        })
    }
}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("interface_version", &self.interface_version())
            .finish_non_exhaustive()
    }
}

/// A resolver object created by a plugin, callable from any thread.
pub struct PluginResolver {
    inner: Box<dyn layouts::Resolver>,
}

impl PluginResolver {
    /// The resolver's display name.
    pub fn name(&self) -> String {
        self.inner.name()
    }

    /// Calls the plugin's `configure` with the host configuration; returns the
    /// provisioning settings it hands back.
    pub fn configure(
        &mut self,
        host: &dyn HostServices,
        config: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| Tuple2(k.as_str().into(), v.as_str().into()))
            .collect();
        self.inner
            .configure(host, pairs)
            .map(|v| v.into_iter().map(|t| (t.0.into(), t.1.into())).collect())
    }

    /// Calls the plugin's `targets` (`answer` from interface 1.2 on): `host:port`
    /// strings, unvalidated, handed over without copying (see [`TargetList`]), with
    /// the rest of the answer as far as the plugin's layout gives it
    /// ([`TargetList::answer`]).
    pub fn targets(&self, host: &dyn HostServices) -> Result<TargetList, String> {
        self.inner
            .targets(host)
            .map(|(list, answer)| TargetList(list, answer))
    }
}

/// The targets a plugin returned, left where the plugin allocated them: read as
/// `&str` without a copy; dropping the list frees them through the plugin's own
/// allocator.
///
/// (Turning each string into a host `String` would copy it: the plugin's allocator is
/// not the host's. For 100 targets that copy was most of the cost of a call across
/// the ABI; see `BENCHMARKS.md`.)
///
/// Its memory and its destructor belong to the plugin library, so a `TargetList` is
/// valid only because plugin libraries are never unloaded: it may outlive its
/// [`PluginResolver`], and may be sent to another thread (a plugin's allocator must
/// accept frees from any thread, as every Rust global allocator does).
pub struct TargetList(RVec<RString>, Answer);

// Hosts move the list from the thread that called the plugin to the one that waits.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<TargetList>();
};

impl TargetList {
    /// How many targets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the plugin returned none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `i`-th target, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(RString::as_str)
    }

    /// The targets in the plugin's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(RString::as_str)
    }

    /// Where the answer came from, as the plugin said it (interface 1.2 and later;
    /// `None` when it said nothing or was built against an older interface). Raw
    /// plugin text: bound and escape it before showing it. The same as
    /// `answer().provenance`.
    pub fn provenance(&self) -> Option<&str> {
        self.1.provenance.as_deref()
    }

    /// Everything the plugin said besides its targets, as far as its layout gives it
    /// (fields of newer interfaces are `None` for older plugins). Raw plugin text:
    /// bound and escape it before showing it ([`Answer::map_texts`]).
    pub fn answer(&self) -> &Answer {
        &self.1
    }
}

impl<'a> IntoIterator for &'a TargetList {
    type Item = &'a str;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, RString>, fn(&'a RString) -> &'a str>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(RString::as_str)
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for TargetList {
    fn eq(&self, other: &[S; N]) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for TargetList {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl fmt::Debug for TargetList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Debug for PluginResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginResolver")
            .field("name", &self.name())
            .finish()
    }
}

fn library_error(e: LibraryError, declared: &str) -> OpenError {
    let detail = e.to_string();
    match e {
        LibraryError::AbiInstability(_) => OpenError {
            kind: OpenErrorKind::LayoutMismatch,
            message: format!(
                "layout mismatch for interface {declared}: {}; rebuild the plugin against \
                 provtarget-abi {}",
                layout_error_summary(&detail),
                crate::INTERFACE_VERSION
            ),
            detail,
        },
        LibraryError::RootModule { .. } => OpenError {
            kind: OpenErrorKind::RootModule,
            message: format!("root module failed to initialise: {}", one_line(&detail)),
            detail,
        },
        _ => OpenError {
            kind: OpenErrorKind::InterfaceMismatch,
            message: format!(
                "interface version {declared} refused: {}",
                first_line(&detail)
            ),
            detail,
        },
    }
}

/// Reduces abi_stable's layout report (hundreds of lines) to its distinct `Error:`
/// lines.
fn layout_error_summary(report: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    for line in report.lines() {
        if let Some(pos) = line.find("Error:") {
            let text = one_line(line[pos + "Error:".len()..].trim());
            if !text.is_empty() && !seen.contains(&text) {
                seen.push(text);
            }
        }
    }
    if seen.is_empty() {
        return first_line(report);
    }
    let mut summary = seen.join("; ");
    if summary.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| summary.is_char_boundary(i))
            .unwrap_or(0);
        summary.truncate(cut);
        summary.push('…');
    }
    summary
}

pub(crate) fn dl_message(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => one_line(&err.to_string()),
        other => first_line(&other.to_string()),
    }
}

pub(crate) fn first_line(s: &str) -> String {
    one_line(s.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_summary_keeps_distinct_error_lines() {
        let report = "lots\n  Error:too many fields\n  more\n    Error: too many fields\n Error:mismatched type name\n";
        assert_eq!(
            layout_error_summary(report),
            "too many fields; mismatched type name"
        );
        assert_eq!(
            layout_error_summary("\n\nfirst real line\nsecond"),
            "first real line"
        );
    }
}
