//! SRV lookups for the default resolver: hickory's tokio resolver driven by a small
//! current-thread runtime of our own, behind a short answer cache.
//!
//! `targets` runs on a plain worker thread, so the lookup builds (once) a
//! current-thread tokio runtime and blocks on it. Each lookup is raced against the
//! call's cancellation, so cancelling interrupts a query at once, and is bounded by
//! [`QUERY_TIMEOUT`] so a silent server costs one short wait per try.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::{runtime::TokioRuntimeProvider, NetError},
    proto::rr::{RData, RecordType},
    TokioResolver,
};

use provtarget_abi::targets;

use crate::resolver::CancelToken;

/// How long one SRV query may take before the try counts as failed.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a lookup returned no answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The call was cancelled.
    Cancelled,
    /// The lookup failed; the message says why.
    Failed(String),
}

/// One usable SRV record: where to connect and how to rank it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvTarget {
    priority: u16,
    weight: u16,
    /// `host:port`, the host without its trailing dot.
    hostport: String,
}

/// The RFC 2782 order, as Go's `net.LookupSRV` (and so Choria) gives it (the SDK's
/// [`provtarget_abi::targets::rfc2782_order`], shared with the DNS SRV plugin): priority
/// ascending, weighted random within a priority. `below(n)` is a uniform random number
/// in `0..n`.
pub(crate) fn rfc2782_order(
    mut records: Vec<SrvTarget>,
    below: &mut dyn FnMut(u32) -> u32,
) -> Vec<String> {
    targets::rfc2782_order(&mut records, |r| (r.priority, r.weight), below);
    records.into_iter().map(|r| r.hostport).collect()
}

/// Successful answers by record name, kept for `max_age`. Failures are never cached,
/// so every retry asks the server again. The records are kept unordered by weight:
/// each lookup, cached or not, draws its own order.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    max_age: Duration,
    entries: HashMap<String, (Instant, Vec<SrvTarget>)>,
}

impl AnswerCache {
    pub(crate) fn new(max_age: Duration) -> AnswerCache {
        AnswerCache {
            max_age,
            entries: HashMap::new(),
        }
    }

    /// The answer for `name` stored less than `max_age` before `now`.
    pub(crate) fn get(&self, name: &str, now: Instant) -> Option<Vec<SrvTarget>> {
        let (stored, answer) = self.entries.get(name)?;
        (now.saturating_duration_since(*stored) < self.max_age).then(|| answer.clone())
    }

    /// Stores `answer` for `name` as of `now`, dropping expired entries.
    pub(crate) fn put(&mut self, name: &str, answer: Vec<SrvTarget>, now: Instant) {
        let max_age = self.max_age;
        self.entries
            .retain(|_, (stored, _)| now.saturating_duration_since(*stored) < max_age);
        self.entries.insert(name.to_string(), (now, answer));
    }
}

/// A DNS client for SRV records: which server to ask, the runtime and resolver (built
/// on first use, so a resolver configured with broker URLs never builds one), and the
/// answer cache.
pub(crate) struct SrvClient {
    server: Option<SocketAddr>,
    cache: Mutex<AnswerCache>,
    driver: Mutex<Option<Driver>>,
}

impl std::fmt::Debug for SrvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrvClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The runtime and the resolver bound to it.
struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
    resolver: TokioResolver,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which tokio forbids (panics)
        // inside another runtime's async context; the host may drop resolvers there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SrvClient {
    /// A client asking `server` (`None`: the system's resolver configuration) and
    /// caching answers for `cache_age`.
    pub(crate) fn new(server: Option<SocketAddr>, cache_age: Duration) -> SrvClient {
        SrvClient {
            server,
            cache: Mutex::new(AnswerCache::new(cache_age)),
            driver: Mutex::new(None),
        }
    }

    /// The DNS server queried, if one was configured.
    pub(crate) fn server(&self) -> Option<SocketAddr> {
        self.server
    }

    /// Looks up the SRV records of `name` and returns their targets as `host:port`
    /// (trailing dot trimmed, `.` targets skipped) in a fresh [`rfc2782_order`].
    /// `cached` tells whether the answer came from the cache.
    pub(crate) fn lookup(
        &self,
        name: &str,
        cancel: &CancelToken,
    ) -> Result<(Vec<String>, bool), LookupError> {
        let (records, cached) = self.records(name, cancel)?;
        let ordered = rfc2782_order(records, &mut |n| rand::random_range(0..n));
        Ok((ordered, cached))
    }

    /// The usable SRV records of `name`, from the cache or the server.
    fn records(
        &self,
        name: &str,
        cancel: &CancelToken,
    ) -> Result<(Vec<SrvTarget>, bool), LookupError> {
        if cancel.is_cancelled() {
            return Err(LookupError::Cancelled);
        }
        if let Some(answer) = lock(&self.cache).get(name, Instant::now()) {
            return Ok((answer, true));
        }

        // hickory's own log lines (debug and trace) then carry the resolver's name,
        // like every line a resolver logs. The span's level only decides when it
        // exists: at `error` it is there whenever any of hickory's lines can be.
        let span = tracing::error_span!("dns", plugin = super::NAME);
        let _entered = span.enter();
        let mut driver = lock(&self.driver);
        // Another call may have stored an answer while this one waited for the lock.
        if let Some(answer) = lock(&self.cache).get(name, Instant::now()) {
            return Ok((answer, true));
        }
        if driver.is_none() {
            *driver = Some(self.build_driver().map_err(LookupError::Failed)?);
        }
        let driver = driver.as_ref().expect("built above");
        let answer = block_on_outside_async(|| span.in_scope(|| driver.query(name, cancel)))?;
        if answer.is_empty() {
            return Err(LookupError::Failed(format!(
                "no usable SRV records for {name}"
            )));
        }
        lock(&self.cache).put(name, answer.clone(), Instant::now());
        Ok((answer, false))
    }

    fn build_driver(&self) -> Result<Driver, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a DNS runtime: {e}"))?;
        let _entered = runtime.enter();
        let provider = TokioRuntimeProvider::default();
        let mut builder = match self.server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?,
        };
        let options = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        // One query per try: the retry policy lives in the caller's backoff loop.
        options.attempts = 0;
        // Our own cache (successes only, fixed age) is the only one: hickory's would
        // also remember failures and hide retries from the server.
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build a DNS resolver: {e}"))?;
        Ok(Driver {
            runtime: Some(runtime),
            resolver,
        })
    }
}

impl Driver {
    fn query(&self, name: &str, cancel: &CancelToken) -> Result<Vec<SrvTarget>, LookupError> {
        let runtime = self.runtime.as_ref().expect("present until drop");
        // A fully qualified name: search domains never apply.
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let lookup = runtime.block_on(async {
            tokio::select! {
                result = tokio::time::timeout(QUERY_TIMEOUT, self.resolver.srv_lookup(fqdn.as_str())) => Some(result),
                _ = cancel.cancelled() => None,
            }
        });
        let lookup = match lookup {
            None => return Err(LookupError::Cancelled),
            Some(Err(_elapsed)) => {
                return Err(LookupError::Failed(format!(
                    "no answer within {}s",
                    QUERY_TIMEOUT.as_secs()
                )))
            }
            Some(Ok(Err(e))) => return Err(LookupError::Failed(describe(&e, name))),
            Some(Ok(Ok(lookup))) => lookup,
        };

        Ok(lookup
            .answers()
            .iter()
            .filter(|r| r.record_type() == RecordType::SRV)
            .filter_map(|r| match &r.data {
                RData::SRV(srv) if !srv.target.is_root() => {
                    let host = srv.target.to_utf8();
                    let host = host.trim_end_matches('.');
                    Some(SrvTarget {
                        priority: srv.priority,
                        weight: srv.weight,
                        hostport: format!("{host}:{}", srv.port),
                    })
                }
                _ => None,
            })
            .collect())
    }
}

/// A short description of a failed lookup.
fn describe(e: &NetError, name: &str) -> String {
    if e.is_nx_domain() {
        format!("{name} does not exist (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("no SRV records for {name}")
    } else {
        e.to_string()
    }
}

/// Runs `f`, which blocks on our own runtime, on a scoped thread when the caller is
/// itself inside a tokio runtime (tokio refuses nested `block_on`).
fn block_on_outside_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, hostport: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            hostport: hostport.into(),
        }
    }

    #[test]
    fn records_are_ranked_by_priority_then_drawn_by_weight() {
        // The RFC 2782 algorithm itself is tested in provtarget_abi::targets; this
        // checks that priority and weight reach it and the answer is `host:port`.
        let records = vec![
            srv(1, 0, "zero:1"),
            srv(1, 5, "weighted:1"),
            srv(0, 0, "first:1"),
        ];
        let mut draws = Vec::new();
        let order = rfc2782_order(records, &mut |n| {
            draws.push(n);
            0
        });
        assert_eq!(order, ["first:1", "weighted:1", "zero:1"]);
        assert_eq!(draws, [5], "one draw over the weights of priority 1");
    }

    #[test]
    fn cache_serves_until_max_age_then_forgets() {
        let mut cache = AnswerCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(cache.get("a", t0), None);
        cache.put("a", vec![srv(0, 0, "h:1")], t0);
        assert_eq!(cache.get("a", t0), Some(vec![srv(0, 0, "h:1")]));
        assert_eq!(
            cache.get("a", t0 + Duration::from_millis(4999)),
            Some(vec![srv(0, 0, "h:1")])
        );
        assert_eq!(cache.get("a", t0 + Duration::from_secs(5)), None);
        assert_eq!(cache.get("b", t0), None, "keyed by name");
        // Storing another name later drops the expired entry.
        cache.put("b", vec![], t0 + Duration::from_secs(6));
        assert!(!cache.entries.contains_key("a"));
    }

    #[test]
    fn works_and_drops_inside_an_async_context() {
        // The host may call or drop a resolver from async code; neither may panic.
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let client = SrvClient::new(Some("127.0.0.1:9".parse().unwrap()), Duration::from_secs(5));
        let driver = client.build_driver().unwrap();
        outer.block_on(async {
            let inner =
                block_on_outside_async(|| driver.runtime.as_ref().unwrap().block_on(async { 42 }));
            assert_eq!(inner, 42);
            drop(driver);
        });
    }

    #[test]
    fn a_cancelled_token_skips_the_lookup() {
        let client = SrvClient::new(Some("127.0.0.1:9".parse().unwrap()), Duration::from_secs(5));
        let token = CancelToken::new();
        token.cancel();
        assert_eq!(
            client.lookup("_x._tcp.example.", &token),
            Err(LookupError::Cancelled)
        );
        assert!(lock(&client.driver).is_none(), "nothing was built");
    }
}
