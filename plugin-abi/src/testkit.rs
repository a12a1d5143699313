//! The vendor test kit: unit-test a resolver's `configure` and `targets` with
//! `cargo test` alone, no host and no shared library.
//!
//! [`TestHost`] stands in for the host: it hands out a [`Context`] whose log lines it
//! captures, whose cancellation a test (or another thread, through a [`CancelHandle`])
//! triggers, and whose sleeps can be made instant so backoff loops run in microseconds.
//! [`config`] builds a [`Config`] from pairs the way the host does (the resolver's
//! declared defaults applied), and [`configure`] builds and configures a resolver in
//! one call.
//!
//! ```
//! use provtarget_abi::{testkit, Config, ConfigKey, Context, Error, LogLevel, Resolver, Settings};
//!
//! struct Static(Vec<String>);
//!
//! impl Resolver for Static {
//!     const NAME: &'static str = "Acme static brokers";
//!     const VERSION: &'static str = "1.0.0";
//!     fn new() -> Result<Self, Error> {
//!         Ok(Static(vec![]))
//!     }
//!     fn config_keys() -> Vec<ConfigKey> {
//!         vec![ConfigKey::new("plugin.acme.brokers", "prov.example.net:4222", "brokers")]
//!     }
//!     fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
//!         self.0 = config.list("plugin.acme.brokers");
//!         ctx.info(format!("{} broker(s)", self.0.len()));
//!         Ok(Settings::new().with("plugin.acme.brokers", self.0.join(",")))
//!     }
//!     fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
//!         Ok(self.0.clone())
//!     }
//! }
//!
//! let host = testkit::TestHost::new();
//! // The declared default applies, as in the host.
//! let (resolver, settings) = testkit::configure::<Static>(&host, &[]).unwrap();
//! assert_eq!(settings.get("plugin.acme.brokers"), Some("prov.example.net:4222"));
//! assert_eq!(host.lines(LogLevel::Info), ["1 broker(s)"]);
//! assert_eq!(resolver.targets(&host.context()).unwrap(), ["prov.example.net:4222"]);
//! ```
#![forbid(unsafe_code)]

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use crate::{sdk::HostCalls, Config, ConfigKey, Context, Error, LogLevel, Resolver, Settings};

/// One log line a resolver sent through its [`Context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.level, self.message)
    }
}

/// A stand-in for the host: cancellation, sleeps and captured logs.
///
/// Each log line is also printed to stderr (`cargo test -- --nocapture` shows it).
#[derive(Clone, Default)]
pub struct TestHost {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    cancelled: AtomicBool,
    /// Guards nothing but the condition variable's wait.
    wake: Mutex<()>,
    woken: Condvar,
    logs: Mutex<Vec<LogLine>>,
    sleeps: Mutex<Vec<Duration>>,
    instant_sleeps: AtomicBool,
    /// Cancel once this many sleeps were asked for (0: never).
    cancel_after_sleeps: AtomicUsize,
}

impl State {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let _guard = lock(&self.wake);
        self.woken.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for TestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHost")
            .field("cancelled", &self.is_cancelled())
            .field("logs", &self.logs().len())
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// A host that has not cancelled, sleeps for real and has logged nothing.
    pub fn new() -> TestHost {
        TestHost::default()
    }

    /// Makes every [`Context::sleep`] return at once (still recorded in
    /// [`TestHost::sleeps`]): backoff loops run without waiting.
    pub fn instant_sleeps(self) -> TestHost {
        self.state.instant_sleeps.store(true, Ordering::SeqCst);
        self
    }

    /// Cancels when the resolver asks for its `n`th sleep (that sleep returns
    /// [`crate::Cancelled`]): a retry loop then ends after `n` failed tries.
    pub fn cancel_after_sleeps(self, n: usize) -> TestHost {
        self.state.cancel_after_sleeps.store(n, Ordering::SeqCst);
        self
    }

    /// The [`Context`] to pass to `configure` and `targets`.
    pub fn context(&self) -> Context<'_> {
        Context::from_calls(&*self.state)
    }

    /// A handle that cancels this host from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(Arc::clone(&self.state))
    }

    /// Cancels now: `is_cancelled` turns true and sleeps in progress end.
    pub fn cancel(&self) {
        self.state.cancel();
    }

    /// Cancels `after` from now, from a thread of its own (as a host's deadline does).
    pub fn cancel_after(&self, after: Duration) {
        let handle = self.cancel_handle();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            handle.cancel();
        });
    }

    /// Whether this host has cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Every log line so far, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.state.logs).clone()
    }

    /// The text of every log line at `level`, in order.
    pub fn lines(&self, level: LogLevel) -> Vec<String> {
        lock(&self.state.logs)
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.message.clone())
            .collect()
    }

    /// Forgets the log lines captured so far.
    pub fn clear_logs(&self) {
        lock(&self.state.logs).clear();
    }

    /// Every sleep the resolver asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        lock(&self.state.sleeps).clone()
    }
}

impl HostCalls for State {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn sleep_ms(&self, millis: u64) -> bool {
        let duration = Duration::from_millis(millis);
        let count = {
            let mut sleeps = lock(&self.sleeps);
            sleeps.push(duration);
            sleeps.len()
        };
        let limit = self.cancel_after_sleeps.load(Ordering::SeqCst);
        if limit > 0 && count >= limit {
            self.cancel();
        }
        if self.is_cancelled() || self.instant_sleeps.load(Ordering::SeqCst) {
            return self.is_cancelled();
        }
        let deadline = Instant::now() + duration;
        let mut guard = lock(&self.wake);
        while !self.is_cancelled() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = self
                .woken
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.is_cancelled()
    }

    fn log(&self, level: u8, message: &str) {
        let line = LogLine {
            level: LogLevel::from_u8(level),
            message: message.to_string(),
        };
        eprintln!("[testkit] {line}");
        lock(&self.logs).push(line);
    }
}

/// Cancels a [`TestHost`] from any thread.
#[derive(Clone)]
pub struct CancelHandle(Arc<State>);

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelHandle").finish()
    }
}

impl CancelHandle {
    /// Cancels the host: `is_cancelled` turns true and sleeps in progress end.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// The [`Config`] the host would hand resolver `R`: `pairs` as set, with the defaults
/// `R` declares in [`Resolver::config_keys`].
pub fn config<R: Resolver>(pairs: &[(&str, &str)]) -> Config {
    config_with_keys(pairs, &R::config_keys())
}

/// A [`Config`] from `pairs`, with `keys`' defaults.
pub fn config_with_keys(pairs: &[(&str, &str)], keys: &[ConfigKey]) -> Config {
    Config::from_iter(pairs.iter().copied()).with_keys(keys)
}

/// Builds resolver `R` (as the host does on load) and configures it with `pairs`
/// through `host`'s context: the resolver and the settings `buildinfo` would show, or
/// the error the host would report.
pub fn configure<R: Resolver>(
    host: &TestHost,
    pairs: &[(&str, &str)],
) -> Result<(R, Settings), Error> {
    let mut resolver = R::new()?;
    let settings = resolver.configure(&host.context(), &config::<R>(pairs))?;
    Ok((resolver, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backoff::FIVE_SEC, Cancelled};

    #[test]
    fn sleeps_end_when_cancelled_from_another_thread() {
        let host = TestHost::new();
        let started = Instant::now();
        host.cancel_after(Duration::from_millis(50));
        let got = host.context().sleep(Duration::from_secs(30));
        assert_eq!(got, Err(Cancelled));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(host.context().is_cancelled());
        assert_eq!(host.sleeps(), [Duration::from_secs(30)]);
    }

    #[test]
    fn a_real_sleep_sleeps_and_an_instant_one_does_not() {
        let host = TestHost::new();
        let started = Instant::now();
        assert_eq!(host.context().sleep(Duration::from_millis(30)), Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(30));
        let host = TestHost::new().instant_sleeps();
        let started = Instant::now();
        assert_eq!(host.context().sleep(Duration::from_secs(60)), Ok(()));
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn retries_are_logged_and_cancel_after_sleeps_stops_them() {
        let host = TestHost::new().cancel_after_sleeps(3);
        let err = FIVE_SEC
            .retry(&host.context(), |t| -> Result<(), Error> {
                Err(format!("down {t}").into())
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "context canceled after 3 tries; last error: down 3"
        );
        let warned = host.lines(LogLevel::Warn);
        assert_eq!(warned.len(), 3, "{warned:?}");
        assert!(warned[0].starts_with("try 1 failed: down 1; trying again in "));
        assert_eq!(host.sleeps().len(), 3);
        host.clear_logs();
        assert!(host.logs().is_empty());
    }
}
