//! How a child process ended, as a typed value from the moment it is known: the
//! restart policy, the crash and refusal messages and the log level read it, never
//! its text.
#![forbid(unsafe_code)]

use std::{fmt, os::unix::process::ExitStatusExt, process::ExitStatus, time::Duration};

use provtarget_loader::process::last_words;

use super::protocol::ProtocolError;

/// How a child (probing or resolver) ended, or why the host ended it. Its `Display`
/// is the words the messages use after "the resolver process" or a library's name:
/// `exited with status 3`, `killed by signal 11 (SIGSEGV)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(Signal),
    /// It broke the protocol, and was killed.
    ProtocolBreach(Breach),
    /// It did not answer within this time, and was killed.
    Timeout(Duration),
    /// A status that is neither an exit nor a signal (not given by `wait` on Linux):
    /// the status's own words.
    Other(String),
}

/// A signal that ended a child: its number and, for the common ones, its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// The signal number (11).
    pub number: i32,
    /// Its conventional name (`SIGSEGV`), when known.
    pub name: Option<&'static str>,
}

/// How a child broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// A line longer than the bound (in bytes); `what` names the line.
    TooLong {
        /// `a line`, `a handshake`.
        what: &'static str,
        /// The bound it went over.
        max: usize,
    },
    /// A line that is not the message expected there.
    Malformed(ProtocolError),
    /// A reply of the wrong kind for the request (a `configure` answer to `targets`).
    WrongAnswer {
        /// The request's kind.
        asked: &'static str,
        /// The reply's kind.
        got: &'static str,
    },
}

impl Signal {
    /// The signal numbered `number`.
    pub fn new(number: i32) -> Signal {
        Signal {
            number,
            name: last_words::signal_name(number),
        }
    }

    /// Whether it is a stop signal (SIGINT, SIGTERM or SIGHUP): what Ctrl-C, GNU
    /// `timeout` and systemd's default group kill send to a whole process group.
    pub fn is_stop(&self) -> bool {
        matches!(self.name, Some("SIGINT" | "SIGTERM" | "SIGHUP"))
    }
}

impl ChildExit {
    /// Whether a stop signal ended it ([`Signal::is_stop`]): an interruption,
    /// reported as one, never as a crash.
    pub fn is_stop(&self) -> bool {
        matches!(self, ChildExit::Signal(s) if s.is_stop())
    }

    /// Whether it crashed: ended by a signal that is not a stop signal.
    pub fn is_crash(&self) -> bool {
        matches!(self, ChildExit::Signal(s) if !s.is_stop())
    }
}

impl From<ExitStatus> for ChildExit {
    fn from(status: ExitStatus) -> ChildExit {
        match (status.signal(), status.code()) {
            (Some(signal), _) => ChildExit::Signal(Signal::new(signal)),
            (None, Some(code)) => ChildExit::Code(code),
            _ => ChildExit::Other(status.to_string()),
        }
    }
}

impl fmt::Display for Signal {
    /// `signal 11 (SIGSEGV)`, or `signal 70` without a known name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "signal {} ({name})", self.number),
            None => write!(f, "signal {}", self.number),
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::TooLong { what, max } => write!(f, "sent {what} over {} MiB", max >> 20),
            Breach::Malformed(e) => write!(f, "sent {e}"),
            Breach::WrongAnswer { asked, got } => {
                write!(f, "answered a {asked} request with a {got} reply")
            }
        }
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildExit::Code(code) => write!(f, "exited with status {code}"),
            ChildExit::Signal(signal) => write!(f, "killed by {signal}"),
            ChildExit::ProtocolBreach(breach) => {
                write!(f, "{breach}, breaking the protocol; it was killed")
            }
            ChildExit::Timeout(wait) => {
                write!(f, "did not answer within {}s (killed)", wait.as_secs_f64())
            }
            ChildExit::Other(status) => write!(f, "ended ({status})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_status_becomes_its_typed_end_with_todays_words() {
        let segv = ChildExit::from(ExitStatus::from_raw(11));
        assert_eq!(segv, ChildExit::Signal(Signal::new(11)));
        assert!(segv.is_crash() && !segv.is_stop());
        assert_eq!(segv.to_string(), "killed by signal 11 (SIGSEGV)");
        let term = ChildExit::from(ExitStatus::from_raw(15));
        assert!(term.is_stop() && !term.is_crash());
        assert_eq!(term.to_string(), "killed by signal 15 (SIGTERM)");
        let three = ChildExit::from(ExitStatus::from_raw(3 << 8));
        assert_eq!(three, ChildExit::Code(3));
        assert!(!three.is_crash() && !three.is_stop());
        assert_eq!(three.to_string(), "exited with status 3");
        assert_eq!(
            ChildExit::ProtocolBreach(Breach::TooLong {
                what: "a line",
                max: 16 << 20
            })
            .to_string(),
            "sent a line over 16 MiB, breaking the protocol; it was killed"
        );
        assert_eq!(
            ChildExit::Timeout(Duration::from_secs(10)).to_string(),
            "did not answer within 10s (killed)"
        );
    }
}
