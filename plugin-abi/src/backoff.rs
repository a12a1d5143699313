//! Choria's backoff policies: the same tables, clamping and jitter as
//! `github.com/choria-io/go-choria/backoff`.
//!
//! Tries count from 1, so the first sleep of a retry loop uses the table's *second*
//! entry; an index past the end uses the last entry. Every duration gets jitter
//! `m/2 + uniform[0, m)` milliseconds, and 0 stays 0.
//!
//! ```
//! use provtarget_abi::backoff::{self, FIVE_SEC};
//! use std::time::Duration;
//!
//! assert_eq!(FIVE_SEC.base(1), Duration::from_millis(750));
//! assert_eq!(FIVE_SEC.base(1_000), Duration::from_millis(5_000)); // clamped
//! let d = FIVE_SEC.duration(1); // jittered: 375 ms ..= 1124 ms
//! assert!(d >= Duration::from_millis(375) && d < Duration::from_millis(1125));
//! assert!(std::ptr::eq(backoff::DEFAULT.table(), FIVE_SEC.table()));
//! ```
#![forbid(unsafe_code)]

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    cancel::{Cancellation, Cancelled},
    text::one_line,
};

/// A backoff table in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    millis: &'static [u64],
}

const FIVE_SEC_START_GRACE_MS: [u64; 20] = [
    0, 25, 50, 75, 100, 125, 150, 200, 250, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000,
    4500, 5000,
];
const FIVE_SEC_MS: [u64; 11] = [
    500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
];
const TWENTY_SEC_MS: [u64; 44] = [
    500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, //
    5500, 5750, 6000, 6500, 7000, 7500, 8000, 8500, 9000, 9500, 10000, //
    10500, 10750, 11000, 11500, 12000, 12500, 13000, 13500, 14000, 14500, 15000, //
    15500, 15750, 16000, 16500, 17000, 17500, 18000, 18500, 19000, 19500, 20000,
];

/// Starts at 0 ms, grows to 5 s (20 steps).
pub const FIVE_SEC_START_GRACE: Policy = Policy {
    millis: &FIVE_SEC_START_GRACE_MS,
};
/// 500 ms growing to 5 s (11 steps).
pub const FIVE_SEC: Policy = Policy {
    millis: &FIVE_SEC_MS,
};
/// 500 ms growing to 20 s (44 steps).
pub const TWENTY_SEC: Policy = Policy {
    millis: &TWENTY_SEC_MS,
};
/// Choria's default policy: [`FIVE_SEC`].
pub const DEFAULT: Policy = FIVE_SEC;

impl Policy {
    /// The table, in milliseconds.
    pub fn table(&self) -> &'static [u64] {
        self.millis
    }

    /// The un-jittered duration for try `n` (clamped to the last entry).
    pub fn base(&self, n: usize) -> Duration {
        let last = self.millis.len().saturating_sub(1);
        Duration::from_millis(self.millis.get(n.min(last)).copied().unwrap_or(0))
    }

    /// The jittered duration for try `n`: `m/2 + uniform[0, m)` ms where `m` is
    /// [`Policy::base`]`(n)`; 0 stays 0.
    pub fn duration(&self, n: usize) -> Duration {
        let m = self.base(n).as_millis() as u64;
        if m == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(m / 2 + random_below(m))
    }

    /// Sleeps for [`Policy::duration`]`(try_)`, returning early with [`Cancelled`]
    /// when `cancel` is cancelled.
    pub fn sleep<C: Cancellation + ?Sized>(
        &self,
        cancel: &C,
        try_: usize,
    ) -> Result<(), Cancelled> {
        cancel.sleep(self.duration(try_))
    }

    /// Calls `attempt(try)` with tries 1, 2, 3, … until it succeeds, sleeping
    /// [`Policy::duration`]`(try)` after each failure. There is no retry limit: it
    /// returns only with a value, or with [`GaveUp`] once `cancel` is cancelled
    /// (checked before every try and during every sleep), as Choria's `backoff.For`
    /// does.
    ///
    /// An error marked [`crate::Permanent`] (see [`crate::permanent`]) ends the loop at
    /// once and is returned as it is: retrying cannot fix a misconfiguration.
    ///
    /// `attempt` returns [`crate::Error`], so `?` works on any error inside it. Each
    /// failed try is reported once to [`Cancellation::retrying`] (a plugin's
    /// [`crate::Context`] logs it as a warning through the host), and the last error
    /// travels in [`GaveUp`], so a deadline shows why the resolver had no answer.
    ///
    /// ```
    /// use provtarget_abi::backoff::{GaveUp, FIVE_SEC_START_GRACE};
    /// use provtarget_abi::{Cancellation, Cancelled};
    /// use std::{cell::Cell, time::Duration};
    ///
    /// /// Cancels once it has slept twice.
    /// struct TwoSleeps(Cell<u32>);
    /// impl Cancellation for TwoSleeps {
    ///     fn is_cancelled(&self) -> bool { self.0.get() >= 2 }
    ///     fn sleep(&self, _: Duration) -> Result<(), Cancelled> {
    ///         self.0.set(self.0.get() + 1);
    ///         if self.is_cancelled() { Err(Cancelled) } else { Ok(()) }
    ///     }
    /// }
    ///
    /// let err = FIVE_SEC_START_GRACE
    ///     .retry(&TwoSleeps(Cell::new(0)), |_try| -> Result<u16, _> {
    ///         Ok("not a port".parse::<u16>()?)
    ///     })
    ///     .unwrap_err();
    /// let gave_up = err.downcast_ref::<GaveUp>().unwrap();
    /// assert_eq!(gave_up.tries, 2);
    /// assert_eq!(err.to_string(), "context canceled after 2 tries; last error: invalid digit found in string");
    /// ```
    pub fn retry<C, T, F>(&self, cancel: &C, mut attempt: F) -> Result<T, crate::Error>
    where
        C: Cancellation + ?Sized,
        F: FnMut(usize) -> Result<T, crate::Error>,
    {
        let mut try_ = 0usize;
        let mut last_error: Option<String> = None;
        let gave_up =
            |tries, last_error| -> crate::Error { Box::new(GaveUp { tries, last_error }) };
        loop {
            if cancel.is_cancelled() {
                return Err(gave_up(try_, last_error));
            }
            try_ = try_.saturating_add(1);
            match attempt(try_) {
                Ok(value) => return Ok(value),
                // A cancelled sleep or call inside the attempt: stop, keeping the
                // previous real failure as the last error.
                Err(e) if e.is::<Cancelled>() || e.is::<GaveUp>() => {
                    return Err(gave_up(try_ - 1, last_error));
                }
                // A misconfiguration: no retry can change it; the caller (and the
                // host) sees it at once, its message unchanged.
                Err(e) if crate::is_permanent(&*e) => return Err(e),
                Err(e) => {
                    let pause = self.duration(try_);
                    cancel.retrying(try_, &e, pause);
                    last_error = Some(one_line(&e.to_string()));
                    if cancel.sleep(pause).is_err() {
                        return Err(gave_up(try_, last_error));
                    }
                }
            }
        }
    }
}

/// Why [`Policy::retry`] returned without a value: the caller cancelled it (deadline,
/// shutdown). It carries how many tries failed and the last one's error, so the host
/// can say *why* the resolver had no answer when its deadline passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// How many tries ran and failed.
    pub tries: usize,
    /// The last try's error, on one line; `None` when no try failed.
    pub last_error: Option<String>,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.last_error {
            Some(e) => write!(
                f,
                "{Cancelled} after {} {}; last error: {e}",
                self.tries,
                if self.tries == 1 { "try" } else { "tries" }
            ),
            None => write!(f, "{Cancelled}"),
        }
    }
}

impl std::error::Error for GaveUp {}

/// A uniform number in `[0, bound)`; `bound` must be non-zero. Jitter only spreads
/// retries of many servers apart, so a small splitmix64 generator seeded from the clock
/// serves (and keeps this crate free of dependencies).
fn random_below(bound: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    // Seeded once per process from the clock and the process id, so a fleet of servers
    // started together does not retry in lockstep.
    let seed = *SEED.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x1234_5678);
        now ^ (u64::from(std::process::id()) << 32)
    });
    let step = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = seed.wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Multiply-shift maps z onto [0, bound) without modulo bias worth caring about here.
    ((z as u128 * bound as u128) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[test]
    fn tables_match_choria_entry_for_entry() {
        assert_eq!(
            FIVE_SEC_START_GRACE.table(),
            &[
                0, 25, 50, 75, 100, 125, 150, 200, 250, 500, 750, 1000, 1500, 2000, 2500, 3000,
                3500, 4000, 4500, 5000
            ]
        );
        assert_eq!(
            FIVE_SEC.table(),
            &[500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000]
        );
        assert_eq!(DEFAULT.table(), FIVE_SEC.table());
        // TwentySec is four blocks of 11: start, +250, +250, then +500 steps.
        let mut expected = Vec::new();
        for block in 0..4u64 {
            let start = if block == 0 { 500 } else { block * 5000 + 500 };
            expected.extend([start, start + 250, start + 500]);
            let mut v = start + 500;
            while v < (block + 1) * 5000 {
                v += 500;
                expected.push(v);
            }
        }
        assert_eq!(expected.len(), 44);
        assert_eq!(TWENTY_SEC.table(), expected.as_slice());
        assert_eq!(TWENTY_SEC.table()[..11], FIVE_SEC.table()[..]);
        assert_eq!(*TWENTY_SEC.table().last().unwrap(), 20_000);
    }

    #[test]
    fn jitter_seed_differs_between_processes() {
        // Run this test binary again as a child: the two processes must draw different
        // jitter sequences (a fixed seed would make a fleet retry in lockstep).
        if std::env::var_os("PROVTARGET_JITTER_CHILD").is_some() {
            let draws: Vec<String> = (0..16)
                .map(|_| FIVE_SEC.duration(10).as_millis().to_string())
                .collect();
            println!("DRAWS={}", draws.join(","));
            return;
        }
        let run = || {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "backoff::tests::jitter_seed_differs_between_processes",
                    "--nocapture",
                ])
                .env("PROVTARGET_JITTER_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find(|l| l.starts_with("DRAWS="))
                .map(String::from)
                .expect("child printed draws")
        };
        assert_ne!(run(), run());
    }

    #[test]
    fn index_clamps_to_last_entry() {
        assert_eq!(FIVE_SEC.base(0), Duration::from_millis(500));
        assert_eq!(FIVE_SEC.base(10), Duration::from_millis(5000));
        assert_eq!(FIVE_SEC.base(11), Duration::from_millis(5000));
        assert_eq!(FIVE_SEC.base(usize::MAX), Duration::from_millis(5000));
        assert_eq!(TWENTY_SEC.base(43), Duration::from_millis(20_000));
        assert_eq!(TWENTY_SEC.base(500), Duration::from_millis(20_000));
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        for policy in [FIVE_SEC_START_GRACE, FIVE_SEC, TWENTY_SEC] {
            for n in 0..policy.table().len() + 2 {
                let m = policy.base(n).as_millis() as u64;
                let (mut lo, mut hi) = (u64::MAX, 0);
                for _ in 0..400 {
                    let d = policy.duration(n).as_millis() as u64;
                    if m == 0 {
                        assert_eq!(d, 0, "zero stays zero");
                        continue;
                    }
                    assert!(
                        d >= m / 2 && d < m / 2 + m,
                        "{d} outside [{}, {})",
                        m / 2,
                        m / 2 + m
                    );
                    lo = lo.min(d);
                    hi = hi.max(d);
                }
                if m >= 500 {
                    // The jitter really spreads: 400 draws cover most of the range.
                    assert!(hi - lo > m / 2, "jitter for {m} ms too narrow: {lo}..{hi}");
                }
            }
        }
    }

    struct Recorder {
        cancel_after_sleeps: usize,
        sleeps: RefCell<Vec<Duration>>,
        cancelled: Cell<bool>,
        retried: RefCell<Vec<(usize, String, Duration)>>,
    }

    impl Cancellation for Recorder {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
        fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
            self.sleeps.borrow_mut().push(d);
            if self.sleeps.borrow().len() >= self.cancel_after_sleeps {
                self.cancelled.set(true);
                return Err(Cancelled);
            }
            Ok(())
        }
        fn retrying(&self, try_: usize, error: &dyn fmt::Display, pause: Duration) {
            self.retried
                .borrow_mut()
                .push((try_, error.to_string(), pause));
        }
    }

    #[test]
    fn retry_counts_tries_from_one_and_sleeps_between() {
        let rec = Recorder {
            cancel_after_sleeps: usize::MAX,
            sleeps: RefCell::new(vec![]),
            cancelled: Cell::new(false),
            retried: RefCell::new(vec![]),
        };
        let mut seen = vec![];
        let got = FIVE_SEC_START_GRACE.retry(&rec, |t| {
            seen.push(t);
            if t == 4 {
                Ok("done")
            } else {
                Err(format!("not yet {t}").into())
            }
        });
        assert_eq!(got.unwrap(), "done");
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let sleeps = rec.sleeps.borrow();
        assert_eq!(sleeps.len(), 3);
        // First sleep uses the second entry (25 ms → 12..37 ms).
        assert!(sleeps[0] >= Duration::from_millis(12) && sleeps[0] < Duration::from_millis(37));
        // Each failed try was reported once, with its error and the pause that follows.
        let retried = rec.retried.borrow();
        assert_eq!(
            retried
                .iter()
                .map(|(t, e, _)| (*t, e.as_str()))
                .collect::<Vec<_>>(),
            [(1, "not yet 1"), (2, "not yet 2"), (3, "not yet 3")]
        );
        assert_eq!(
            retried.iter().map(|r| r.2).collect::<Vec<_>>(),
            sleeps.as_slice()
        );
    }

    #[test]
    fn retry_stops_when_cancelled_and_keeps_the_last_error() {
        let rec = Recorder {
            cancel_after_sleeps: 2,
            sleeps: RefCell::new(vec![]),
            cancelled: Cell::new(false),
            retried: RefCell::new(vec![]),
        };
        let mut tries = 0;
        let got: Result<(), _> = FIVE_SEC.retry(&rec, |t| {
            tries += 1;
            // `?` works on any error type inside the attempt.
            let _port: u16 = if t == 1 {
                "x".parse()?
            } else {
                "70000".parse()?
            };
            Ok(())
        });
        let err = got.unwrap_err();
        assert_eq!(
            err.downcast_ref::<GaveUp>(),
            Some(&GaveUp {
                tries: 2,
                last_error: Some("number too large to fit in target type".into())
            })
        );
        assert_eq!(
            err.to_string(),
            "context canceled after 2 tries; last error: number too large to fit in target type"
        );
        assert_eq!(tries, 2);

        // Already cancelled: no try at all, and no error to report but the cancellation.
        let mut called = false;
        let err = FIVE_SEC
            .retry(&rec, |_| {
                called = true;
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "context canceled");
        assert!(!called);
    }

    #[test]
    fn a_permanent_error_ends_the_retry_at_once_unchanged() {
        // Cancelled after 5 sleeps, so a loop that retried it would still end (and fail).
        let rec = Recorder {
            cancel_after_sleeps: 5,
            sleeps: RefCell::new(vec![]),
            cancelled: Cell::new(false),
            retried: RefCell::new(vec![]),
        };
        let mut tries = 0;
        let err = FIVE_SEC
            .retry(&rec, |t| -> Result<(), crate::Error> {
                tries += 1;
                if t == 1 {
                    return Err("server down".into());
                }
                Err(crate::permanent("plugin.acme.key = \"\" is not valid"))
            })
            .unwrap_err();
        assert_eq!(
            tries, 2,
            "the transient error is retried, the permanent one not"
        );
        assert_eq!(err.to_string(), "plugin.acme.key = \"\" is not valid");
        assert!(crate::is_permanent(&*err));
        assert!(err.downcast_ref::<GaveUp>().is_none());
        assert_eq!(rec.sleeps.borrow().len(), 1);
        assert_eq!(rec.retried.borrow().len(), 1);
    }

    #[test]
    fn a_cancelled_sleep_inside_the_attempt_ends_the_retry_without_counting_as_a_failure() {
        let rec = Recorder {
            cancel_after_sleeps: 2,
            sleeps: RefCell::new(vec![]),
            cancelled: Cell::new(false),
            retried: RefCell::new(vec![]),
        };
        let err = FIVE_SEC
            .retry(&rec, |t| -> Result<(), crate::Error> {
                if t == 1 {
                    return Err("backend down".into());
                }
                rec.sleep(Duration::from_millis(1))?;
                Err("unreachable".into())
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "context canceled after 1 try; last error: backend down"
        );
        assert_eq!(rec.retried.borrow().len(), 1);
    }
}
