//! The host's identity, by Choria's current rule (go-choria `config.normalize` and
//! `config.DNSFQDN`):
//!
//! 1. the host name (`os.Hostname()`: `/proc/sys/kernel/hostname`, else
//!    `gethostname(2)`) when it has more than one dot;
//! 2. else its DNS name: the host name's first IPv4 address (`getaddrinfo`), looked up
//!    in reverse (`getnameinfo` with `NI_NAMEREQD`), trailing dot trimmed, unless that
//!    is `localhost` or empty;
//! 3. (Choria next asks Puppet's facter for its `fqdn` fact; provtarget does not run
//!    facter: set the identity instead;)
//! 4. else the host name as it is.
//!
//! Both lookups use the system resolver (nsswitch: `/etc/hosts`, then DNS), as Go's
//! cgo resolver does. They block and cannot be interrupted, so they run on a thread of
//! their own; the caller waits for at most a bound and never past cancellation, and a
//! lookup that outlives its bound is waited for again by the next try instead of
//! starting a second one: at most one lookup thread exists at a time.

use std::{
    fmt,
    net::IpAddr,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Mutex, TryLockError,
    },
    time::{Duration, Instant},
};

use provtarget_abi::{Cancellation, Cancelled};

/// How often a waiting caller checks for cancellation: well inside the host's
/// 100 ms expectation.
const POLL: Duration = Duration::from_millis(20);

/// Where an identity came from; shown in messages so an operator can tell which rule
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Set in the configuration, under this key.
    Configured(&'static str),
    /// The host name, which has more than one dot.
    Hostname,
    /// The DNS name of this host name.
    Dns(String),
    /// The host name, because its DNS name was not usable (why).
    ShortHostname(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Configured(key) => write!(f, "set by {key}"),
            Source::Hostname => f.write_str("the host name"),
            Source::Dns(hostname) => write!(f, "the DNS name of host name {hostname:?}"),
            Source::ShortHostname(why) => {
                write!(f, "the host name; no DNS name was used: {why}")
            }
        }
    }
}

/// The identity and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) source: Source,
}

/// A DNS name, or why there is none.
pub(crate) type DnsAnswer = Result<String, String>;

/// Choria's rule, given the host name and a way to ask DNS for its name (asked only
/// when the host name has at most one dot).
pub(crate) fn choose<F>(hostname: &str, dns: F) -> Result<Identity, Cancelled>
where
    F: FnOnce(&str) -> Result<DnsAnswer, Cancelled>,
{
    let hostname = hostname.trim();
    if hostname.matches('.').count() > 1 {
        return Ok(Identity {
            name: hostname.to_string(),
            source: Source::Hostname,
        });
    }
    let why = if hostname.is_empty() {
        "the host name is empty".to_string()
    } else {
        match dns(hostname)? {
            Ok(name) => {
                let name = name.trim().trim_end_matches('.');
                if name.is_empty() {
                    "DNS gave an empty name".to_string()
                } else if name == "localhost" {
                    "DNS gave localhost".to_string()
                } else {
                    return Ok(Identity {
                        name: name.to_string(),
                        source: Source::Dns(hostname.to_string()),
                    });
                }
            }
            Err(why) => why,
        }
    };
    Ok(Identity {
        name: hostname.to_string(),
        source: Source::ShortHostname(why),
    })
}

/// The host name as Go's `os.Hostname` reads it on Linux.
pub(crate) fn hostname() -> Result<String, String> {
    // A few bytes in procfs; the kernel caps a host name at 64.
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        _ => dns_lookup::get_hostname()
            .map(|n| n.trim().to_string())
            .map_err(|e| format!("cannot read the host name: {e}")),
    }
}

/// go-choria's `DNSFQDN`: the host name's first IPv4 address, named in reverse.
pub(crate) fn system_dns_name(hostname: &str) -> DnsAnswer {
    let addrs = dns_lookup::lookup_host(hostname)
        .map_err(|e| format!("cannot resolve host name {hostname:?}: {e}"))?;
    let mut addrs = addrs;
    let v4 = addrs
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| format!("host name {hostname:?} has no IPv4 address"))?;
    dns_lookup::lookup_addr(&v4)
        .map(|name| name.trim_end_matches('.').to_string())
        .map_err(|e| format!("no name for {v4}, the address of {hostname:?}: {e}"))
}

/// Runs DNS lookups on a thread of their own, at most one at a time.
pub(crate) struct DnsLookup {
    lookup: fn(&str) -> DnsAnswer,
    pending: Mutex<Option<Pending>>,
}

/// A lookup still running (or finished and not yet read).
struct Pending {
    hostname: String,
    answer: Receiver<DnsAnswer>,
}

impl DnsLookup {
    /// Lookups through the system resolver.
    pub(crate) fn system() -> DnsLookup {
        DnsLookup::with(system_dns_name)
    }

    /// Lookups through `lookup` (tests give a slow or fake one).
    pub(crate) fn with(lookup: fn(&str) -> DnsAnswer) -> DnsLookup {
        DnsLookup {
            lookup,
            pending: Mutex::new(None),
        }
    }

    /// The DNS name of `hostname`, waiting at most `bound` (zero: no lookup at all)
    /// and returning [`Cancelled`] within [`POLL`] of cancellation.
    pub(crate) fn name_of<C: Cancellation + ?Sized>(
        &self,
        cancel: &C,
        hostname: &str,
        bound: Duration,
    ) -> Result<DnsAnswer, Cancelled> {
        if bound.is_zero() {
            return Ok(Err("the DNS step is off (lookup_timeout is 0)".into()));
        }
        let mut slot = match self.pending.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Ok(Err("another call is already waiting for DNS".into()))
            }
        };
        let mut pending = match slot.take() {
            Some(p) => p,
            None => match self.start(hostname) {
                Ok(p) => p,
                Err(why) => return Ok(Err(why)),
            },
        };
        let deadline = Instant::now() + bound;
        loop {
            if cancel.is_cancelled() {
                *slot = Some(pending);
                return Err(Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                *slot = Some(pending);
                return Ok(Err(format!(
                    "the lookup of {hostname:?} took longer than {} ms",
                    bound.as_millis()
                )));
            }
            match pending.answer.recv_timeout((deadline - now).min(POLL)) {
                Ok(answer) if pending.hostname == hostname => return Ok(answer),
                // The answer of an earlier try, for a host name since changed.
                Ok(_) => match self.start(hostname) {
                    Ok(p) => pending = p,
                    Err(why) => return Ok(Err(why)),
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(Err("the DNS lookup ended without an answer".into()))
                }
            }
        }
    }

    fn start(&self, hostname: &str) -> Result<Pending, String> {
        let (tx, answer) = mpsc::sync_channel(1);
        let lookup = self.lookup;
        let name = hostname.to_string();
        std::thread::Builder::new()
            .name("provtarget-fqdn-dns".into())
            .spawn(move || {
                let _ = tx.send(lookup(&name));
            })
            .map_err(|e| format!("cannot start the DNS lookup: {e}"))?;
        Ok(Pending {
            hostname: hostname.to_string(),
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Never cancelled.
    struct Never;
    impl Cancellation for Never {
        fn is_cancelled(&self) -> bool {
            false
        }
        fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
            std::thread::sleep(d);
            Ok(())
        }
    }

    /// Cancelled once `after` has passed since it was made.
    struct CancelAfter(Instant, Duration);
    impl Cancellation for CancelAfter {
        fn is_cancelled(&self) -> bool {
            self.0.elapsed() >= self.1
        }
        fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
            std::thread::sleep(d);
            if self.is_cancelled() {
                Err(Cancelled)
            } else {
                Ok(())
            }
        }
    }

    fn dns(answer: DnsAnswer) -> impl FnOnce(&str) -> Result<DnsAnswer, Cancelled> {
        move |_| Ok(answer)
    }

    fn no_dns(_: &str) -> Result<DnsAnswer, Cancelled> {
        panic!("DNS must not be asked for a host name with more than one dot")
    }

    #[test]
    fn a_host_name_with_more_than_one_dot_is_the_identity() {
        let id = choose("web1.lon1.example.net\n", no_dns).unwrap();
        assert_eq!(id.name, "web1.lon1.example.net");
        assert_eq!(id.source, Source::Hostname);
    }

    #[test]
    fn a_short_host_name_asks_dns_and_takes_its_name() {
        let id = choose("web1.lon1", dns(Ok("web1.lon1.example.net.".into()))).unwrap();
        assert_eq!(id.name, "web1.lon1.example.net");
        assert_eq!(id.source, Source::Dns("web1.lon1".into()));
        let id = choose("web1", dns(Ok("web1.example.net".into()))).unwrap();
        assert_eq!(id.name, "web1.example.net");
    }

    #[test]
    fn localhost_empty_or_failed_dns_keeps_the_host_name() {
        for (answer, why) in [
            (Ok("localhost".to_string()), "DNS gave localhost"),
            (Ok("localhost.".to_string()), "DNS gave localhost"),
            (Ok(" ".to_string()), "DNS gave an empty name"),
            (Err("no such host".to_string()), "no such host"),
        ] {
            let id = choose("web1", dns(answer)).unwrap();
            assert_eq!(id.name, "web1");
            assert_eq!(id.source, Source::ShortHostname(why.into()));
            assert!(id.source.to_string().starts_with("the host name; "));
        }
        let id = choose("", no_dns).unwrap();
        assert_eq!(id.name, "");
        assert_eq!(
            id.source,
            Source::ShortHostname("the host name is empty".into())
        );
        assert_eq!(
            choose("web1", |_| Err(Cancelled)).unwrap_err(),
            Cancelled,
            "cancellation during the lookup ends the rule"
        );
    }

    #[test]
    fn the_system_resolver_names_localhost_localhost() {
        // /etc/hosts maps 127.0.0.1 to localhost on every Linux machine this runs on:
        // the real getaddrinfo + getnameinfo path, and the rule then refuses the name.
        assert_eq!(system_dns_name("localhost"), Ok("localhost".into()));
        let id = choose("localhost", |h| Ok(system_dns_name(h))).unwrap();
        assert_eq!(
            id.source,
            Source::ShortHostname("DNS gave localhost".into())
        );
        let err = system_dns_name("no-such-host.invalid").unwrap_err();
        assert!(
            err.contains("cannot resolve host name \"no-such-host.invalid\""),
            "{err}"
        );
    }

    #[test]
    fn the_host_name_is_read() {
        let name = hostname().unwrap();
        assert!(!name.is_empty() && !name.contains('\n'), "{name:?}");
    }

    #[test]
    fn lookups_answer_through_their_thread() {
        let lookup = DnsLookup::with(|h| Ok(format!("{h}.example.net")));
        let answer = lookup
            .name_of(&Never, "web1", Duration::from_secs(30))
            .unwrap();
        assert_eq!(answer, Ok("web1.example.net".into()));
        let off = lookup.name_of(&Never, "web1", Duration::ZERO).unwrap();
        assert!(off.unwrap_err().contains("is 0"));
    }

    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);
    fn slow(h: &str) -> DnsAnswer {
        SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        Ok(format!("{h}.slow.example.net"))
    }

    #[test]
    fn cancellation_ends_the_wait_for_a_hung_lookup_and_one_thread_serves_all_tries() {
        let lookup = DnsLookup::with(slow);
        // Cancelled 50 ms in, while the lookup still has over a second to go.
        let started = Instant::now();
        let cancel = CancelAfter(started, Duration::from_millis(50));
        let r = lookup.name_of(&cancel, "web1", Duration::from_secs(30));
        assert_eq!(r, Err(Cancelled));
        // Liveness only: the call did not wait for the lookup to finish.
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );

        // The bound: the next try gives up on DNS, without a second thread.
        let r = lookup
            .name_of(&Never, "web1", Duration::from_millis(50))
            .unwrap();
        assert!(r.unwrap_err().contains("took longer than 50 ms"));
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);

        // And a later try picks up the answer of that same thread.
        let r = lookup
            .name_of(&Never, "web1", Duration::from_secs(30))
            .unwrap();
        assert_eq!(r, Ok("web1.slow.example.net".into()));
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);
    }
}
