//! Errors that retrying cannot change: a misconfiguration, as opposed to a server
//! that is down or a record not yet written.
#![forbid(unsafe_code)]

use std::{error::Error as StdError, fmt};

use crate::Error;

/// An error that no retry can change (a value the operator configured is wrong):
/// [`crate::backoff::Policy::retry`] returns it at once instead of trying again, so
/// the host reports the failure immediately rather than at its deadline.
///
/// Only the message crosses to the host, unchanged: write it so that it names the key
/// to fix. Make one with [`permanent`] (or [`Permanent::new`]); test for one with
/// [`is_permanent`].
///
/// ```
/// use provtarget_abi::{backoff::FIVE_SEC, is_permanent, permanent, testkit::TestHost};
///
/// let host = TestHost::new().instant_sleeps();
/// let mut tries = 0;
/// let err = FIVE_SEC
///     .retry(&host.context(), |_try| -> Result<(), _> {
///         tries += 1;
///         Err(permanent("plugin.acme.port = \"x\" is not valid; fix plugin.acme.port"))
///     })
///     .unwrap_err();
/// assert_eq!(tries, 1); // not retried
/// assert!(is_permanent(&*err));
/// assert_eq!(err.to_string(), "plugin.acme.port = \"x\" is not valid; fix plugin.acme.port");
/// ```
#[derive(Debug)]
pub struct Permanent(Error);

impl Permanent {
    /// Marks `error` as permanent.
    pub fn new(error: impl Into<Error>) -> Permanent {
        Permanent(error.into())
    }

    /// The error inside.
    pub fn into_inner(self) -> Error {
        self.0
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Permanent {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// `error` marked as permanent, ready to return: `return Err(permanent(e))`.
pub fn permanent(error: impl Into<Error>) -> Error {
    Box::new(Permanent::new(error))
}

/// Whether `error`, or an error in its [`source`](StdError::source) chain, is
/// [`Permanent`].
pub fn is_permanent(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<Permanent>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn the_message_is_unchanged_and_the_mark_is_found_through_sources() {
        let e = permanent("bad key");
        assert_eq!(e.to_string(), "bad key");
        assert!(is_permanent(&*e));
        let wrapped: Error = Box::new(Wrapper(e));
        assert!(is_permanent(&*wrapped));
        let plain: Error = "server down".into();
        assert!(!is_permanent(&*plain));
        assert!(!is_permanent(&Wrapper(plain)));
        let inner = Permanent::new("x").into_inner();
        assert!(!is_permanent(&*inner));
    }
}
