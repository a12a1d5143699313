//! Cancellation: what a resolver checks between tries and sleeps on between them.
#![forbid(unsafe_code)]

use std::{error::Error, fmt, time::Duration};

/// The error a cancelled sleep or retry loop returns. It means "the host no longer
/// wants an answer": return promptly, without logging it as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("context canceled")
    }
}

impl Error for Cancelled {}

/// Something that can be cancelled and can sleep in a way cancellation interrupts.
///
/// A plugin's [`crate::Context`] implements it (the host decides when to cancel); a
/// host implements it on its own cancellation token, so both sides share the
/// [`crate::backoff`] helpers.
pub trait Cancellation {
    /// Whether the caller has been cancelled.
    fn is_cancelled(&self) -> bool;

    /// Sleeps for `duration`, returning [`Cancelled`] as soon as cancellation happens
    /// (before or during the sleep).
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled>;

    /// Told once about every failed try of a [`crate::backoff::Policy::retry`] loop:
    /// which try, its error, and how long the loop now sleeps. Does nothing by default;
    /// a plugin's [`crate::Context`] logs it as a warning through the host.
    fn retrying(&self, try_: usize, error: &dyn fmt::Display, pause: Duration) {
        let _ = (try_, error, pause);
    }
}

impl<C: Cancellation + ?Sized> Cancellation for &C {
    fn is_cancelled(&self) -> bool {
        (**self).is_cancelled()
    }
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        (**self).sleep(duration)
    }
    fn retrying(&self, try_: usize, error: &dyn fmt::Display, pause: Duration) {
        (**self).retrying(try_, error, pause)
    }
}
