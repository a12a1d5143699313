//! DNS queries: hickory's resolver, one server at a time, driven by a current-thread
//! tokio runtime the plugin builds for itself, each query bounded by the configured
//! timeout and raced against the host's cancellation.

use std::{
    fmt,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{runtime::TokioRuntimeProvider, NetError},
    proto::rr::{RData, RecordType},
    TokioResolver,
};
use provtarget_abi::Cancellation;

use crate::order::SrvTarget;

/// The most SRV records accepted in one answer: more is refused as garbage.
pub(crate) const MAX_RECORDS: usize = 64;

/// How often a running query checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The host cancelled the call.
    Cancelled,
    /// The query failed; the text says why (without the server, which the caller adds).
    Failed(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Cancelled => f.write_str("context canceled"),
            QueryError::Failed(why) => f.write_str(why),
        }
    }
}

/// One SRV record as the server sent it, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSrv {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    /// The target as text, trailing dot included (`.` for "no service").
    pub(crate) target: String,
}

/// The usable records of an answer, and why the others were refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) usable: Vec<SrvTarget>,
    pub(crate) refused: Vec<String>,
    /// Records whose target is `.`: RFC 2782's "the service is decidedly not available".
    pub(crate) not_offered: usize,
}

/// Checks an answer: at most [`MAX_RECORDS`] records, each with a valid host name
/// (trailing dot removed) and a non-zero port. Bad records are refused one by one,
/// with the reason; too many records refuse the whole answer.
pub(crate) fn check_answer(records: Vec<RawSrv>) -> Result<Checked, String> {
    if records.len() > MAX_RECORDS {
        return Err(format!(
            "the answer holds {} SRV records; at most {MAX_RECORDS} are accepted",
            records.len()
        ));
    }
    let mut checked = Checked::default();
    for r in records {
        if r.target == "." {
            checked.not_offered += 1;
            continue;
        }
        let host = r.target.strip_suffix('.').unwrap_or(&r.target);
        if let Err(why) = check_host_name(host) {
            checked.refused.push(format!(
                "record {} {} {} {:?}: {why}",
                r.priority, r.weight, r.port, r.target
            ));
        } else if r.port == 0 {
            checked.refused.push(format!(
                "record {} {} {} {:?}: port 0",
                r.priority, r.weight, r.port, r.target
            ));
        } else {
            checked.usable.push(SrvTarget {
                priority: r.priority,
                weight: r.weight,
                host: host.to_ascii_lowercase(),
                port: r.port,
            });
        }
    }
    Ok(checked)
}

/// A host name: dot-separated labels of letters, digits and `-` (not first or last),
/// 1 to 63 characters each, at most 253 in all.
pub(crate) fn check_host_name(host: &str) -> Result<(), String> {
    check_dns_name(host, false)
}

/// A DNS name (no trailing dot); with `underscores`, labels may also hold `_` (SRV
/// owner names such as `_choria-provisioner._tcp.example.net`).
pub(crate) fn check_dns_name(name: &str, underscores: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 253 {
        return Err(format!("{} characters, more than 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || (underscores && b == b'_');
        if !label.bytes().all(ok_char) {
            let allowed = if underscores {
                "letters, digits, '-' and '_'"
            } else {
                "letters, digits and '-'"
            };
            return Err(format!(
                "label {label:?} holds characters other than {allowed}"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// A DNS client: the runtime (built on first use) and the per-query timeout.
pub(crate) struct Dns {
    timeout: Duration,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which tokio forbids inside
        // another runtime's async context; the host may drop resolvers there.
        let runtime = self.runtime.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Dns {
    /// A client whose every query gives up after `timeout`.
    pub(crate) fn new(timeout: Duration) -> Dns {
        Dns {
            timeout,
            runtime: Mutex::new(None),
        }
    }

    /// The SRV records of `name` (fully qualified, with or without the trailing dot)
    /// from `server`.
    #[cfg(test)]
    pub(crate) fn srv(
        &self,
        server: SocketAddr,
        name: &str,
        cancel: &dyn Cancellation,
    ) -> Result<Vec<RawSrv>, QueryError> {
        let fqdn = fully_qualified(name);
        let lookup = self.run(server, cancel, |resolver| async move {
            resolver.srv_lookup(fqdn.as_str()).await
        })?;
        let lookup = lookup.map_err(|e| QueryError::Failed(describe(&e, name, "SRV")))?;
        Ok(srv_records(&lookup))
    }

    /// The SRV records of `name` from the first of `servers` that gives an answer
    /// `accept` takes, asking them in order with a head start: `servers[0]` is asked
    /// first; when it has not answered within `hedge` (or as soon as it fails), the next
    /// is asked too, and so on, each query still running until it answers or times out.
    /// The first accepted answer wins and the queries still running are dropped. So a
    /// dead or silent first server costs about `hedge` per call, not the whole timeout.
    ///
    /// The outcome lists the servers that failed (with why) and those that had not
    /// answered when another one won.
    pub(crate) fn srv_first<T>(
        &self,
        servers: &[SocketAddr],
        name: &str,
        hedge: Duration,
        cancel: &dyn Cancellation,
        accept: &mut dyn FnMut(SocketAddr, Vec<RawSrv>) -> Result<T, String>,
    ) -> Failover<T> {
        let fqdn = fully_qualified(name);
        let owned = name.to_string();
        let query = move |resolver: TokioResolver| -> Query<Vec<RawSrv>> {
            let fqdn = fqdn.clone();
            let name = owned.clone();
            Box::pin(async move {
                match resolver.srv_lookup(fqdn.as_str()).await {
                    Ok(lookup) => Ok(srv_records(&lookup)),
                    Err(e) => Err(describe(&e, &name, "SRV")),
                }
            })
        };
        self.first(servers, hedge, cancel, &query, accept)
    }

    /// Whether `name` has an address (A or AAAA), from the first of `servers` that
    /// answers (yes or no), with the same head-start failover as [`Dns::srv_first`]: a
    /// dead or silent first server costs about `hedge`, not the whole timeout.
    pub(crate) fn address_first(
        &self,
        servers: &[SocketAddr],
        name: &str,
        hedge: Duration,
        cancel: &dyn Cancellation,
    ) -> Failover<bool> {
        let fqdn = fully_qualified(name);
        let owned = name.to_string();
        let query = move |resolver: TokioResolver| -> Query<bool> {
            let fqdn = fqdn.clone();
            let name = owned.clone();
            Box::pin(async move {
                match resolver.lookup_ip(fqdn.as_str()).await {
                    Ok(ips) => Ok(ips.iter().next().is_some()),
                    Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(false),
                    Err(e) => Err(describe(&e, &name, "address")),
                }
            })
        };
        self.first(servers, hedge, cancel, &query, &mut |_, known| Ok(known))
    }

    /// The failover both lookups share: `query` asked of `servers` in order with a
    /// head start of `hedge`, the first answer `accept` takes winning.
    fn first<R: Send + 'static, T>(
        &self,
        servers: &[SocketAddr],
        hedge: Duration,
        cancel: &dyn Cancellation,
        query: &dyn Fn(TokioResolver) -> Query<R>,
        accept: &mut dyn FnMut(SocketAddr, R) -> Result<T, String>,
    ) -> Failover<T> {
        let mut outcome = Failover {
            answer: Err(QueryError::Failed("no DNS server to ask".into())),
            failed: Vec::new(),
            silent: Vec::new(),
        };
        if servers.is_empty() {
            return outcome;
        }
        if cancel.is_cancelled() {
            outcome.answer = Err(QueryError::Cancelled);
            return outcome;
        }
        let mut slot = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => *slot = Some(rt),
                Err(e) => {
                    outcome.answer = Err(QueryError::Failed(format!(
                        "cannot start a DNS runtime: {e}"
                    )));
                    return outcome;
                }
            }
        }
        let runtime = slot.as_ref().expect("built above");
        let timeout = self.timeout;
        let started = Instant::now();
        runtime.block_on(async {
            let mut running = tokio::task::JoinSet::new();
            let mut asked: Vec<bool> = vec![false; servers.len()];
            let mut next = 0usize;
            let mut next_at = tokio::time::Instant::now();
            loop {
                // Ask the next server: at the start, when the head start ran out, or
                // when every running query has failed.
                if next < servers.len()
                    && (running.is_empty() || tokio::time::Instant::now() >= next_at)
                {
                    let server = servers[next];
                    let index = next;
                    asked[index] = true;
                    next += 1;
                    next_at = tokio::time::Instant::now() + hedge;
                    match build_resolver(server, timeout) {
                        Ok(resolver) => {
                            let lookup = query(resolver);
                            running.spawn(async move {
                                let result = tokio::time::timeout(
                                    timeout + Duration::from_millis(100),
                                    lookup,
                                )
                                .await;
                                (index, result)
                            });
                        }
                        Err(e) => outcome.failed.push((server, e.to_string())),
                    }
                    continue;
                }
                if running.is_empty() {
                    // Every server asked and failed.
                    outcome.answer = Err(QueryError::Failed(String::new()));
                    return;
                }
                let more = next < servers.len();
                tokio::select! {
                    joined = running.join_next() => {
                        let Some(Ok((index, result))) = joined else { continue };
                        let server = servers[index];
                        asked[index] = false;
                        let records = match result {
                            Err(_elapsed) => Err(format!(
                                "no answer within {} ms",
                                started.elapsed().as_millis()
                            )),
                            Ok(result) => result,
                        };
                        match records.and_then(|raw| accept(server, raw)) {
                            Ok(value) => {
                                outcome.silent = servers
                                    .iter()
                                    .zip(&asked)
                                    .filter(|(_, still)| **still)
                                    .map(|(s, _)| *s)
                                    .collect();
                                outcome.answer = Ok((server, value));
                                running.abort_all();
                                return;
                            }
                            Err(why) => {
                                outcome.failed.push((server, why));
                                // Fail over at once rather than at the head start's end.
                                next_at = tokio::time::Instant::now();
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(next_at), if more => {}
                    _ = cancelled(cancel) => {
                        outcome.answer = Err(QueryError::Cancelled);
                        running.abort_all();
                        return;
                    }
                }
            }
        });
        outcome
    }

    /// Runs `query` against a resolver that asks only `server`, bounded by the timeout
    /// and ended by cancellation (checked every [`CANCEL_POLL`]).
    #[cfg(test)]
    fn run<T, F, Fut>(
        &self,
        server: SocketAddr,
        cancel: &dyn Cancellation,
        query: F,
    ) -> Result<T, QueryError>
    where
        T: Send,
        F: FnOnce(TokioResolver) -> Fut + Send,
        Fut: std::future::Future<Output = T>,
    {
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let mut slot = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| QueryError::Failed(format!("cannot start a DNS runtime: {e}")))?,
            );
        }
        let runtime = slot.as_ref().expect("built above");
        let timeout = self.timeout;
        let resolver = {
            let _entered = runtime.enter();
            build_resolver(server, timeout)?
        };
        let started = Instant::now();
        let outcome = runtime.block_on(async {
            tokio::select! {
                // hickory has the same timeout; this one also bounds connection set-up.
                result = tokio::time::timeout(timeout + Duration::from_millis(100), query(resolver)) => Some(result),
                _ = cancelled(cancel) => None,
            }
        });
        match outcome {
            None => Err(QueryError::Cancelled),
            Some(Err(_elapsed)) => Err(QueryError::Failed(format!(
                "no answer within {} ms",
                started.elapsed().as_millis()
            ))),
            Some(Ok(value)) => Ok(value),
        }
    }
}

/// One lookup of [`Dns::first`], ready to run on its runtime.
type Query<R> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, String>> + Send>>;

/// How [`Dns::srv_first`] or [`Dns::address_first`] went.
#[derive(Debug)]
pub(crate) struct Failover<T> {
    /// The server that answered and the accepted value; `Failed("")` when every server
    /// failed (each one is in `failed`).
    pub(crate) answer: Result<(SocketAddr, T), QueryError>,
    /// Servers that failed, with why, in the order they failed.
    pub(crate) failed: Vec<(SocketAddr, String)>,
    /// Servers asked before the winner that had not answered when it did.
    pub(crate) silent: Vec<SocketAddr>,
}

/// The SRV records of an answer.
fn srv_records(lookup: &hickory_resolver::lookup::Lookup) -> Vec<RawSrv> {
    lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == RecordType::SRV)
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(RawSrv {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_ascii(),
            }),
            _ => None,
        })
        .collect()
}

/// A resolver that asks `server` only (UDP, then TCP for long answers), once per
/// query, with no cache: every try asks the server again.
fn build_resolver(server: SocketAddr, timeout: Duration) -> Result<TokioResolver, QueryError> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.timeout = timeout;
    // One query per try: retries are the backoff loop's, failover the caller's.
    options.attempts = 0;
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    options.use_hosts_file = ResolveHosts::Never;
    builder
        .build()
        .map_err(|e| QueryError::Failed(format!("cannot build a DNS resolver: {e}")))
}

/// `name` with a trailing dot: search domains never apply.
fn fully_qualified(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A short description of a failed lookup.
fn describe(e: &NetError, name: &str, what: &str) -> String {
    if e.is_nx_domain() {
        format!("{name} does not exist (NXDOMAIN)")
    } else if e.is_no_records_found() {
        format!("no {what} records for {name}")
    } else {
        let text = e.to_string();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Resolves once `cancel` is cancelled.
async fn cancelled(cancel: &dyn Cancellation) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn raw(priority: u16, weight: u16, port: u16, target: &str) -> RawSrv {
        RawSrv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn answers_are_checked_record_by_record() {
        let checked = check_answer(vec![
            raw(10, 60, 4222, "Prov1.Example.NET."),
            raw(10, 40, 0, "prov2.example.net."),
            raw(20, 0, 4222, "bad_name.example.net."),
            raw(20, 0, 4222, "-x.example.net."),
            raw(30, 0, 4222, "."),
            raw(5, 0, 4223, "prov3.example.net"),
        ])
        .unwrap();
        assert_eq!(
            checked.usable,
            vec![
                SrvTarget {
                    priority: 10,
                    weight: 60,
                    host: "prov1.example.net".into(),
                    port: 4222
                },
                SrvTarget {
                    priority: 5,
                    weight: 0,
                    host: "prov3.example.net".into(),
                    port: 4223
                },
            ]
        );
        assert_eq!(checked.not_offered, 1);
        assert_eq!(checked.refused.len(), 3, "{:?}", checked.refused);
        assert!(
            checked.refused[0].contains("port 0"),
            "{:?}",
            checked.refused
        );
        assert!(
            checked.refused[1].contains("\"bad_name\""),
            "{:?}",
            checked.refused
        );
        assert!(checked.refused[2].contains("starts or ends with '-'"));
    }

    #[test]
    fn too_many_records_refuse_the_answer() {
        let many: Vec<RawSrv> = (0..=MAX_RECORDS as u16)
            .map(|i| raw(1, 1, 4222, &format!("h{i}.example.net.")))
            .collect();
        let err = check_answer(many).unwrap_err();
        assert!(err.contains("65 SRV records; at most 64"), "{err}");
        let enough: Vec<RawSrv> = (0..MAX_RECORDS as u16)
            .map(|i| raw(1, 1, 4222, &format!("h{i}.example.net.")))
            .collect();
        assert_eq!(check_answer(enough).unwrap().usable.len(), MAX_RECORDS);
    }

    #[test]
    fn dns_names_are_checked() {
        assert!(check_host_name("a-b.example.net").is_ok());
        assert!(check_host_name("localhost").is_ok());
        assert!(check_host_name("").is_err());
        assert!(check_host_name("a..b").is_err());
        assert!(check_host_name("a b.net").is_err());
        assert!(check_host_name("evil.net:1#").is_err());
        assert!(check_host_name(&"a".repeat(64)).is_err());
        assert!(check_host_name(&["abc"; 70].join(".")).is_err());
        assert!(check_host_name("_srv._tcp.example.net").is_err());
        assert!(check_dns_name("_srv._tcp.example.net", true).is_ok());
    }

    /// Never cancelled (also used by the crate's other tests).
    pub(crate) struct Never;
    impl Cancellation for Never {
        fn is_cancelled(&self) -> bool {
            false
        }
        fn sleep(&self, d: Duration) -> Result<(), provtarget_abi::Cancelled> {
            std::thread::sleep(d);
            Ok(())
        }
    }

    struct After(Instant);
    impl Cancellation for After {
        fn is_cancelled(&self) -> bool {
            Instant::now() >= self.0
        }
        fn sleep(&self, d: Duration) -> Result<(), provtarget_abi::Cancelled> {
            std::thread::sleep(d);
            Ok(())
        }
    }

    /// A UDP socket on 127.0.0.1 that receives queries and never answers.
    fn silent_server() -> (std::net::UdpSocket, SocketAddr) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    #[test]
    fn a_silent_server_times_out_with_a_clear_cause() {
        let (_socket, addr) = silent_server();
        let dns = Dns::new(Duration::from_millis(300));
        let err = dns.srv(addr, "_x._tcp.example.net", &Never).unwrap_err();
        match err {
            QueryError::Failed(why) => assert!(
                why.contains("timed out") || why.contains("no answer within"),
                "{why}"
            ),
            QueryError::Cancelled => panic!("not cancelled"),
        }
    }

    #[test]
    fn cancellation_ends_a_query_to_a_silent_server() {
        let (_socket, addr) = silent_server();
        // A long query timeout: only cancellation can end this query early.
        let dns = Dns::new(Duration::from_secs(30));
        let started = Instant::now();
        let cancel = After(started + Duration::from_millis(200));
        let err = dns.srv(addr, "_x._tcp.example.net", &cancel).unwrap_err();
        assert_eq!(err, QueryError::Cancelled);
        eprintln!(
            "query ended {} ms after cancellation",
            started.elapsed().as_millis().saturating_sub(200)
        );
        // Liveness bound only (the figure is in the report): far below the 30 s timeout.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_cancelled_call_sends_nothing_and_builds_nothing() {
        let dns = Dns::new(Duration::from_secs(1));
        let cancel = After(Instant::now());
        let err = dns
            .srv(
                "127.0.0.1:9".parse().unwrap(),
                "_x._tcp.example.net",
                &cancel,
            )
            .unwrap_err();
        assert_eq!(err, QueryError::Cancelled);
        assert!(dns.runtime.lock().unwrap().is_none());
    }
}
