//! The native resolver interface every resolver implements, built-in or plugin, and
//! the per-call context the host hands it.

use std::{
    fmt,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use provtarget_abi::{
    host::{Answer, HostServices, TargetList},
    Cancellation, Cancelled, Config, LogLevel,
};

/// Provisioning settings a resolver reports after `configure`: `(key, value)` pairs,
/// shown by `buildinfo` with secrets masked. (Plugins build them with the SDK's
/// `provtarget_abi::Settings`; they cross the boundary as these pairs.)
pub type Settings = Vec<(String, String)>;

/// The `(key, value)` pairs of a plugin's configuration, as a resolver is given them
/// (in process or over the child protocol).
pub(crate) fn config_pairs(config: &Config) -> Settings {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A provisioning target resolver as the host sees it.
///
/// Implemented by the built-in `Choria JWT Resolver` and, through an adapter, by every
/// loaded plugin. `configure` is called once at start-up before the resolver is
/// shared; `targets` may then be called from any thread.
pub trait TargetResolver: Send + Sync {
    /// Display name, e.g. `Choria JWT Resolver`.
    fn name(&self) -> String;

    /// Version shown next to the name in `buildinfo`.
    fn version(&self) -> String;

    /// Reads the host configuration; returns the provisioning settings to report.
    /// Errors are one line, naming what is wrong and how to fix it.
    fn configure(
        &mut self,
        ctx: &ResolveContext,
        config: &Config,
    ) -> Result<Settings, ResolverError>;

    /// Returns provisioning brokers as `host:port` or `scheme://host:port` strings
    /// (validated by the host afterwards). Should retry until it has targets or
    /// `ctx` is cancelled. A native resolver returns its `Vec<String>` with `.into()`.
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, ResolverError>;
}

/// Why a resolver's `configure` or `targets` failed: the resolver's own one-line
/// message (a plugin's text crosses the stable ABI as text), shown unchanged by
/// [`Display`](fmt::Display). A resolver builds one from a `String` or `&str` with
/// `.into()` (and `?` converts a `Result<_, String>`).
///
/// ```
/// use provtarget::resolver::ResolverError;
/// let e = ResolverError::from("no SRV record for _choria._tcp.example.net");
/// assert_eq!(e.to_string(), "no SRV record for _choria._tcp.example.net");
/// assert_eq!(e.message(), "no SRV record for _choria._tcp.example.net");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverError {
    message: String,
}

impl ResolverError {
    /// The resolver's message, as it gave it (raw: show it through
    /// [`crate::text::shown`]).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, owned.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for ResolverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ResolverError {}

impl From<String> for ResolverError {
    fn from(message: String) -> ResolverError {
        ResolverError { message }
    }
}

impl From<&str> for ResolverError {
    fn from(message: &str) -> ResolverError {
        ResolverError {
            message: message.to_string(),
        }
    }
}

/// The unvalidated `host:port` strings a resolver returned: the native resolver's own
/// `String`s, or a plugin's list left in the plugin's memory ([`TargetList`]), so
/// neither is copied on the way to [`parse_servers`](crate::servers::parse_servers).
///
/// ```
/// use provtarget::resolver::RawTargets;
///
/// let list = RawTargets::from(vec!["broker1:4222".to_string()]);
/// assert_eq!(list, ["broker1:4222"]);
/// assert_eq!(list.iter().collect::<Vec<_>>(), ["broker1:4222"]);
/// assert!(RawTargets::default().is_empty());
/// ```
pub struct RawTargets(Raw, Answer);

enum Raw {
    /// From a resolver compiled into the host.
    Native(Vec<String>),
    /// From a plugin, still in its memory.
    Plugin(TargetList),
}

impl Default for RawTargets {
    /// No targets (allocates nothing).
    fn default() -> RawTargets {
        RawTargets(Raw::Native(Vec::new()), Answer::default())
    }
}

impl RawTargets {
    /// How many targets.
    pub fn len(&self) -> usize {
        match &self.0 {
            Raw::Native(list) => list.len(),
            Raw::Plugin(list) => list.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th target, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        match &self.0 {
            Raw::Native(list) => list.get(i).map(String::as_str),
            Raw::Plugin(list) => list.get(i),
        }
    }

    /// The targets in the resolver's order.
    pub fn iter(&self) -> RawTargetsIter<'_> {
        RawTargetsIter {
            list: self,
            next: 0,
        }
    }

    /// Copies the targets into host `String`s.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// Where the answer came from, as the resolver said it (raw text; interface 1.2
    /// plugins and native resolvers that set it): see [`provenance_shown`].
    pub fn provenance(&self) -> Option<&str> {
        self.1.provenance.as_deref()
    }

    /// Everything the resolver said besides its targets (raw text: see
    /// [`answer_shown`]).
    pub fn answer(&self) -> &Answer {
        &self.1
    }

    /// The same targets, saying where they came from.
    pub fn with_provenance(mut self, provenance: Option<String>) -> RawTargets {
        self.1.provenance = provenance.filter(|p| !p.is_empty());
        self
    }

    /// The same targets with the rest of an answer (as the child protocol carries it).
    pub fn with_answer(mut self, answer: Answer) -> RawTargets {
        self.1 = answer;
        self
    }
}

/// The most of a provenance text the host keeps, in bytes.
pub const MAX_PROVENANCE: usize = 512;

/// A resolver's provenance text as the host shows and records it: one line, control
/// characters escaped, credentials in URLs masked, cut to [`MAX_PROVENANCE`] bytes
/// (on a character boundary, ending in `…` when cut).
///
/// ```
/// use provtarget::resolver::provenance_shown;
/// assert_eq!(provenance_shown("SRV _x._tcp from 10.0.0.53:53\n\x1b[2J"),
///            "SRV _x._tcp from 10.0.0.53:53\\n\\u{1b}[2J");
/// assert!(provenance_shown(&"x".repeat(5000)).len() <= 512);
/// ```
pub fn provenance_shown(raw: &str) -> String {
    let mut text = crate::text::shown(raw.trim());
    if text.len() > MAX_PROVENANCE {
        let limit = MAX_PROVENANCE - '…'.len_utf8();
        let cut = (0..=limit)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// An answer record as the host shows, logs and sends it: every text field through
/// [`provenance_shown`] (one line, escaped, masked, bounded).
pub fn answer_shown(answer: &Answer) -> Answer {
    answer.clone().map_texts(provenance_shown)
}

/// Iterator over [`RawTargets`], yielding `&str`.
#[derive(Debug, Clone)]
pub struct RawTargetsIter<'a> {
    list: &'a RawTargets,
    next: usize,
}

impl<'a> Iterator for RawTargetsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let item = self.list.get(self.next)?;
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for RawTargetsIter<'_> {}

impl<'a> IntoIterator for &'a RawTargets {
    type Item = &'a str;
    type IntoIter = RawTargetsIter<'a>;

    fn into_iter(self) -> RawTargetsIter<'a> {
        self.iter()
    }
}

impl From<Vec<String>> for RawTargets {
    fn from(list: Vec<String>) -> RawTargets {
        RawTargets(Raw::Native(list), Answer::default())
    }
}

impl From<TargetList> for RawTargets {
    fn from(list: TargetList) -> RawTargets {
        let answer = list.answer().clone();
        RawTargets(Raw::Plugin(list), answer)
    }
}

impl FromIterator<String> for RawTargets {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> RawTargets {
        RawTargets(Raw::Native(iter.into_iter().collect()), Answer::default())
    }
}

impl std::fmt::Debug for RawTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for RawTargets {
    fn eq(&self, other: &RawTargets) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for RawTargets {
    fn eq(&self, other: &[S; N]) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for RawTargets {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

/// The host's one cancellation token: a flag that wakes every waiter as soon as it
/// is set, whether it waits on a thread ([`CancelToken::sleep`]) or in async code
/// ([`CancelToken::cancelled`]); nothing polls. Cloning shares the flag;
/// [`CancelToken::child`] makes a token that its parent's cancel also cancels (a
/// resolver call's token is a child of the resolution's).
#[derive(Clone, Default, Debug)]
pub struct CancelToken {
    node: Arc<Node>,
}

#[derive(Default, Debug)]
struct Node {
    flag: Mutex<bool>,
    wake: Condvar,
    notify: tokio::sync::Notify,
    children: Mutex<Vec<std::sync::Weak<Node>>>,
}

impl Node {
    fn cancel(&self) {
        {
            let mut flag = self.flag.lock().unwrap_or_else(|e| e.into_inner());
            if *flag {
                return;
            }
            *flag = true;
        }
        self.wake.notify_all();
        self.notify.notify_waiters();
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for child in children.iter().filter_map(std::sync::Weak::upgrade) {
            child.cancel();
        }
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// A new token that is cancelled when this one is (at once if it already is),
    /// and can also be cancelled on its own without touching this one.
    pub fn child(&self) -> CancelToken {
        let child = CancelToken::new();
        {
            let mut children = self.node.children.lock().unwrap_or_else(|e| e.into_inner());
            // Forget children that are gone, so a long-lived parent does not grow.
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.node));
        }
        if self.is_cancelled() {
            child.cancel();
        }
        child
    }

    /// Cancels, waking every sleeper, this token's and its children's.
    pub fn cancel(&self) {
        self.node.cancel();
    }

    /// Completes once the token is cancelled (for async callers).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.node.notify.notified();
            tokio::pin!(notified);
            // Register interest before checking the flag, so a cancel between the
            // check and the await is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Whether [`CancelToken::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        *self.node.flag.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps up to `duration`; returns `true` if cancelled before or during it.
    pub fn sleep(&self, duration: Duration) -> bool {
        let (flag, wake) = (&self.node.flag, &self.node.wake);
        let deadline = Instant::now().checked_add(duration);
        let mut cancelled = flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*cancelled {
            let now = Instant::now();
            let remaining = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => return false,
                None => Duration::from_secs(3600),
            };
            cancelled = wake
                .wait_timeout(cancelled, remaining)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// What a resolver is handed on each call: the call's cancellation and a logger that
/// tags every line with the resolver's name (the `plugin` field of the host's
/// `tracing` events).
#[derive(Clone, Debug)]
pub struct ResolveContext {
    cancel: CancelToken,
    plugin: Arc<str>,
}

impl ResolveContext {
    /// A context for resolver `plugin` that `cancel` cancels.
    pub fn new(plugin: &str, cancel: CancelToken) -> ResolveContext {
        ResolveContext {
            cancel,
            plugin: plugin.into(),
        }
    }

    /// The resolver name log lines are tagged with.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The cancellation token of this call.
    pub fn token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Emits `message` through `tracing` at `level`, with `plugin = <name>`. Control
    /// characters are escaped: plugin text must not be able to forge log lines or
    /// drive a terminal.
    pub fn log(&self, level: LogLevel, message: &str) {
        let plugin = &*self.plugin;
        let message = crate::text::printable(message);
        match level {
            LogLevel::Error => tracing::error!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
        }
    }
}

impl Cancellation for ResolveContext {
    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        if self.cancel.sleep(duration) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

impl HostServices for ResolveContext {
    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    fn sleep(&self, duration: Duration) -> bool {
        self.cancel.sleep(duration)
    }
    fn log(&self, level: LogLevel, message: &str) {
        ResolveContext::log(self, level, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolver_error_shows_the_resolvers_text_unchanged() {
        let e = ResolverError::from(format!("consul at {} is down", "10.0.0.1:8500"));
        assert_eq!(e.to_string(), "consul at 10.0.0.1:8500 is down");
        assert_eq!(e.message(), "consul at 10.0.0.1:8500 is down");
        let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
        assert_eq!(boxed.to_string(), e.into_message());
        // `?` turns a resolver's own `String` error into one.
        fn fails() -> Result<(), ResolverError> {
            Err("no JWT".to_string())?
        }
        assert_eq!(fails().unwrap_err(), ResolverError::from("no JWT"));
    }

    #[test]
    fn cancel_wakes_a_sleeper_early() {
        let token = CancelToken::new();
        let t2 = token.clone();
        let sleeper = std::thread::spawn(move || t2.sleep(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
        assert!(sleeper.join().unwrap(), "sleep must report cancellation");
        assert!(token.is_cancelled());
        assert!(
            token.sleep(Duration::from_secs(3600)),
            "already cancelled: returns at once"
        );
    }

    #[test]
    fn a_parent_cancels_its_children_but_not_the_reverse() {
        let parent = CancelToken::new();
        let child = parent.child();
        let grandchild = child.child();
        let sibling = parent.child();
        sibling.cancel();
        assert!(!parent.is_cancelled() && !child.is_cancelled());
        let sleeper = {
            let g = grandchild.clone();
            std::thread::spawn(move || g.sleep(Duration::from_secs(3600)))
        };
        parent.cancel();
        assert!(sleeper.join().unwrap(), "the grandchild's sleeper woke");
        assert!(child.is_cancelled() && grandchild.is_cancelled());
        // A child of a cancelled token starts cancelled.
        assert!(parent.child().is_cancelled());
        // Async waiters on a child wake too.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p2 = CancelToken::new();
        let c2 = p2.child();
        rt.block_on(async {
            let waiter = tokio::spawn(async move { c2.cancelled().await });
            p2.cancel();
            waiter.await.unwrap();
        });
    }

    #[test]
    fn uncancelled_sleep_runs_out() {
        assert!(!CancelToken::new().sleep(Duration::from_millis(5)));
    }
}
