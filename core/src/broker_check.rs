//! The broker check (`plugin.provtarget.broker_check`): before an answer is accepted,
//! each broker it names is asked whether it is a NATS server at all.
//!
//! For every broker of an answer, concurrently, on plain threads with one shared
//! deadline (`plugin.provtarget.broker_check_timeout`, default 2 s, so the whole check
//! never costs more than one timeout, however many brokers there are):
//!
//! 1. a TCP connection, then the first line the server sends, at most
//!    [`MAX_LINE`] bytes; NATS means `INFO {json}` with a `server_id`;
//! 2. for `tls://` brokers, or an INFO that says `tls_required`, a TLS handshake on
//!    that connection (rustls, ring provider). No certificate is verified unless
//!    `plugin.provtarget.broker_check_ca` names a CA bundle: Choria's provisioning
//!    uses anonymous TLS. The handshake signatures are always verified;
//! 3. a server that stays silent for half the timeout gets one TLS-first attempt
//!    (nats-server 2.10's `handshake_first`): a new connection, a TLS handshake, then
//!    the INFO line over TLS.
//!
//! Nothing is ever sent but the TLS handshake: no credentials, no `CONNECT`.
//!
//! With `warn` every broker is kept and each failure logged once; with `require`
//! only the brokers that passed are answered, in the resolver's order, and when none
//! passed that resolver's answer fails, naming each broker and why
//! ([`verdict`]), so the chain moves on.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs},
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};
use serde_json::{json, Value};

/// The broker check's settings and mode, parsed with the configuration (they live in
/// [`crate::config`], the lower layer, and keep their names here).
pub use crate::config::{
    BrokerCheckMode as Mode, BrokerCheckSettings as Settings,
    DEFAULT_BROKER_CHECK_TIMEOUT as DEFAULT_TIMEOUT,
};
use crate::{
    config::keys,
    resolver::CancelToken,
    servers::Server,
    text::{printable, shown},
};

/// The longest first line read from a broker (64 KiB); a longer one is not NATS.
pub const MAX_LINE: usize = 64 * 1024;

/// How much of a first line or INFO is quoted in a reason.
const QUOTED: usize = 60;

/// Extra time the collector waits past the deadline for threads to report (they
/// watch the deadline themselves; this only absorbs scheduling delay).
const COLLECT_GRACE: Duration = Duration::from_millis(100);

/// The check of one broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerResult {
    /// The resolver that answered the broker.
    pub resolver: String,
    /// The broker, `scheme://host:port`.
    pub server: String,
    /// Whether it is a NATS server that completed every step asked of it.
    pub passed: bool,
    /// Why not (one line, escaped, as printed), `None` when it passed.
    pub reason: Option<String>,
    /// The `server_id` of its INFO (raw text from the network).
    pub server_id: Option<String>,
    /// The `version` of its INFO (raw text from the network).
    pub version: Option<String>,
    /// Whether a TLS handshake completed.
    pub tls: bool,
    /// How long its check took, in milliseconds.
    pub ms: f64,
}

/// Checks every broker of `servers` (answered by `resolver`) concurrently, all within
/// one `settings.timeout`. `None` when `cancel` fires first (the checks still
/// running end by themselves at the deadline).
pub async fn check(
    resolver: &str,
    servers: &[Server],
    settings: &Settings,
    cancel: &CancelToken,
) -> Option<Vec<BrokerResult>> {
    let deadline = Instant::now() + settings.timeout;
    let tls = Arc::new(tls_config(settings.ca.as_deref()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut found: Vec<Option<Probe>> = vec![None; servers.len()];
    for (i, server) in servers.iter().enumerate() {
        let tx = tx.clone();
        let server = server.clone();
        let tls = Arc::clone(&tls);
        let timeout = settings.timeout;
        let spawned = thread::Builder::new()
            .name("broker check".into())
            .spawn(move || {
                let started = Instant::now();
                let mut probe = probe(&server, deadline, timeout, &tls);
                probe.ms = started.elapsed().as_secs_f64() * 1000.0;
                let _ = tx.send((i, probe));
            });
        if let Err(e) = spawned {
            found[i] = Some(Probe::failed(format!(
                "cannot start a thread to check it: {e}"
            )));
        }
    }
    drop(tx);
    let collect = async {
        while let Some((i, probe)) = rx.recv().await {
            found[i] = Some(probe);
        }
    };
    let limit = tokio::time::Instant::from_std(deadline + COLLECT_GRACE);
    tokio::select! {
        _ = tokio::time::timeout_at(limit, collect) => {}
        _ = cancel.cancelled() => return None,
    }
    let waited = settings.timeout.as_secs_f64() * 1000.0;
    Some(
        servers
            .iter()
            .zip(found)
            .map(|(server, probe)| {
                let probe = probe.unwrap_or_else(|| Probe {
                    ms: waited,
                    ..Probe::failed(format!(
                        "no answer within {} (name resolution or connection still pending)",
                        human(settings.timeout)
                    ))
                });
                BrokerResult {
                    resolver: resolver.to_string(),
                    server: server.to_string(),
                    passed: probe.reason.is_none(),
                    reason: probe.reason,
                    server_id: probe.server_id,
                    version: probe.version,
                    tls: probe.tls,
                    ms: (probe.ms * 100.0).round() / 100.0,
                }
            })
            .collect(),
    )
}

/// Why `require` refused a resolver's whole answer: no broker passed the check. Each
/// broker and why it failed; `Display` gives the resolver's failure text
/// (`no broker passed the broker check (plugin.provtarget.broker_check = require):
/// nats://a:1: connection refused; ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBrokerPassed {
    /// `(broker, why)` for every broker of the answer, in the resolver's order.
    pub failures: Vec<(String, String)>,
}

impl std::fmt::Display for NoBrokerPassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no broker passed the broker check ({} = require): ",
            keys::BROKER_CHECK
        )?;
        for (i, (server, why)) in self.failures.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{server}: {why}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoBrokerPassed {}

/// Applies `mode` to a resolver's answer and its check `results` (same order as
/// `servers`): `warn` keeps every broker and logs each failure; `require` keeps the
/// brokers that passed, or fails with every broker and why (the text of the
/// resolver's failure).
pub fn verdict(
    mode: Mode,
    resolver: &str,
    servers: Vec<Server>,
    results: &[BrokerResult],
) -> Result<Vec<Server>, NoBrokerPassed> {
    fn failed(r: &BrokerResult) -> Option<(&str, &str)> {
        r.reason.as_deref().map(|why| (r.server.as_str(), why))
    }
    match mode {
        Mode::Off => Ok(servers),
        Mode::Warn => {
            for (server, why) in results.iter().filter_map(failed) {
                tracing::warn!(
                    plugin = resolver,
                    "broker {} failed the broker check: {why}; kept ({} = warn)",
                    shown(server),
                    keys::BROKER_CHECK
                );
            }
            Ok(servers)
        }
        Mode::Require => {
            let kept: Vec<Server> = servers
                .into_iter()
                .zip(results)
                .filter(|(_, r)| r.passed)
                .map(|(s, _)| s)
                .collect();
            if kept.is_empty() {
                return Err(NoBrokerPassed {
                    failures: results
                        .iter()
                        .filter_map(failed)
                        .map(|(server, why)| (server.to_string(), why.to_string()))
                        .collect(),
                });
            }
            for (server, why) in results.iter().filter_map(failed) {
                tracing::warn!(
                    plugin = resolver,
                    "broker {} failed the broker check and is left out: {why}",
                    shown(server)
                );
            }
            Ok(kept)
        }
    }
}

/// One line for a broker's result, as `targets` prints it (escaped):
/// `nats://h:4222  ok  server_id=... version=2.9.10 tls=no 3.1 ms` or
/// `nats://h:4222  failed: connection refused (tls=no 0.4 ms)`.
pub fn line(r: &BrokerResult) -> String {
    let tls = if r.tls { "yes" } else { "no" };
    match &r.reason {
        None => format!(
            "{}  ok  server_id={} version={} tls={tls} {:.1} ms",
            shown(&r.server),
            shown(r.server_id.as_deref().unwrap_or("")),
            shown(r.version.as_deref().unwrap_or("?")),
            r.ms
        ),
        Some(why) => format!(
            "{}  failed: {why} (tls={tls} {:.1} ms)",
            shown(&r.server),
            r.ms
        ),
    }
}

/// The text `targets` prints under the servers: a header naming the mode, then one
/// indented line per broker checked (those of other resolvers of the chain marked).
pub fn text(mode: Mode, answered_by: &str, results: &[BrokerResult]) -> String {
    let mut out = format!("Broker check ({}):\n", mode.as_str());
    for r in results {
        out.push_str("   ");
        out.push_str(&line(r));
        if r.resolver != answered_by {
            out.push_str(&format!(" [from {}]", shown(&r.resolver)));
        }
        out.push('\n');
    }
    out
}

/// The JSON `brokers` array: `[{"resolver", "server", "passed", "reason",
/// "server_id", "version", "tls", "ms"}]` (values raw, `reason` the printed text).
pub fn json(results: &[BrokerResult]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| {
                json!({
                    "resolver": r.resolver,
                    "server": r.server,
                    "passed": r.passed,
                    "reason": r.reason,
                    "server_id": r.server_id,
                    "version": r.version,
                    "tls": r.tls,
                    "ms": r.ms,
                })
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------
// One broker

/// What the check of one broker found.
#[derive(Debug, Clone, Default)]
struct Probe {
    reason: Option<String>,
    server_id: Option<String>,
    version: Option<String>,
    tls: bool,
    ms: f64,
}

impl Probe {
    fn failed(reason: String) -> Probe {
        Probe {
            reason: Some(reason),
            ..Probe::default()
        }
    }
}

/// The parts of an INFO the check uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    server_id: String,
    version: Option<String>,
    tls_required: bool,
    tls_available: bool,
}

/// Checks one broker, all before `deadline`.
fn probe(
    server: &Server,
    deadline: Instant,
    timeout: Duration,
    tls: &Result<Arc<ClientConfig>, String>,
) -> Probe {
    let mut probe = Probe::default();
    if let Err(why) = probe_into(server, deadline, timeout, tls, &mut probe) {
        probe.reason = Some(why);
    }
    probe
}

fn probe_into(
    server: &Server,
    deadline: Instant,
    timeout: Duration,
    tls: &Result<Arc<ClientConfig>, String>,
    probe: &mut Probe,
) -> Result<(), String> {
    let addrs = addresses(server)?;
    let mut tcp = connect(&addrs, deadline, timeout)?;
    // Silent for half the timeout: perhaps a TLS-first server.
    let quiet_until = deadline.min(Instant::now() + timeout / 2);
    let info = match read_line(&mut tcp, quiet_until, deadline) {
        Ok(line) => parse_info(&line)?,
        Err(LineError::Silent) => {
            drop(tcp);
            let config = tls.as_ref().map_err(Clone::clone)?;
            let tcp = connect(&addrs, deadline, timeout)
                .map_err(|e| format!("silent in clear; on a TLS-first attempt: {e}"))?;
            let mut stream = handshake(server, tcp, config, deadline).map_err(|e| match e {
                HandshakeError::Timeout => format!("no INFO within {}", human(timeout)),
                HandshakeError::Failed(e) => format!(
                    "no INFO within {} in clear, and a TLS-first handshake failed: {e}",
                    human(timeout / 2)
                ),
            })?;
            probe.tls = true;
            let line = read_line(&mut stream, deadline, deadline)
                .map_err(|e| format!("after a TLS-first handshake: {}", e.reason(timeout)))?;
            let info = parse_info(&line)?;
            close(stream);
            probe.server_id = Some(info.server_id);
            probe.version = info.version;
            return Ok(());
        }
        Err(e) => return Err(e.reason(timeout)),
    };
    probe.server_id = Some(info.server_id.clone());
    probe.version = info.version.clone();
    let wants_tls = server.scheme.eq_ignore_ascii_case("tls");
    if !(wants_tls || info.tls_required) {
        return Ok(());
    }
    if !info.tls_required && !info.tls_available {
        return Err(
            "the URL asks for TLS (tls://) but the server's INFO offers none (no tls_required or tls_available)"
                .into(),
        );
    }
    let config = tls.as_ref().map_err(Clone::clone)?;
    let stream = handshake(server, tcp, config, deadline).map_err(|e| match e {
        HandshakeError::Timeout => {
            format!("TLS handshake failed: no answer within {}", human(timeout))
        }
        HandshakeError::Failed(e) => format!("TLS handshake failed: {e}"),
    })?;
    probe.tls = true;
    close(stream);
    Ok(())
}

/// The socket addresses of `server` (a DNS name is resolved here, on the check's
/// thread).
fn addresses(server: &Server) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = server.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, server.port)]);
    }
    let addrs: Vec<SocketAddr> = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", printable(&server.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{} has no address", printable(&server.host)));
    }
    Ok(addrs)
}

/// A TCP connection to the first address that takes one before `deadline`.
fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let mut last = None;
    for addr in addrs {
        let Some(left) = left(deadline) else { break };
        match TcpStream::connect_timeout(addr, left) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => "connection refused".into(),
        Some(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            format!("no connection within {}", human(timeout))
        }
        Some(e) => format!("cannot connect: {e}"),
        None => format!("no connection within {}", human(timeout)),
    })
}

/// Time left before `deadline` (at least 1 ms, since a zero socket timeout means
/// none), or `None` when it has passed.
fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

/// A stream whose reads can be bounded in time.
trait Timed: Read {
    fn socket(&self) -> &TcpStream;
}

impl Timed for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Timed for StreamOwned<ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Why no first line was read.
#[derive(Debug)]
enum LineError {
    /// Not a byte before the quiet limit.
    Silent,
    /// Bytes, but no line end before the deadline.
    Partial(Vec<u8>),
    /// More than [`MAX_LINE`] bytes without a line end.
    TooLong(Vec<u8>),
    /// The connection closed first (with what had come).
    Closed(Vec<u8>),
    /// A read failed.
    Io(io::Error),
}

impl LineError {
    fn reason(&self, timeout: Duration) -> String {
        match self {
            LineError::Silent => format!("no INFO within {}", human(timeout)),
            LineError::Partial(got) => format!(
                "no complete first line within {} (got \"{}\")",
                human(timeout),
                quote(got)
            ),
            LineError::TooLong(got) => format!(
                "not NATS: first line longer than {} KiB (it starts \"{}\")",
                MAX_LINE / 1024,
                quote(got)
            ),
            LineError::Closed(got) if got.is_empty() => {
                "closed the connection without sending a line".into()
            }
            LineError::Closed(got) => format!(
                "closed the connection in its first line (got \"{}\")",
                quote(got)
            ),
            LineError::Io(e) => format!("cannot read from it: {e}"),
        }
    }
}

/// Reads the first line (without its line end): the first byte must come before
/// `quiet_until`, the whole line before `deadline`, and within [`MAX_LINE`] bytes.
fn read_line<S: Timed>(
    stream: &mut S,
    quiet_until: Instant,
    deadline: Instant,
) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let limit = if line.is_empty() {
            quiet_until
        } else {
            deadline
        };
        let Some(wait) = left(limit) else {
            return Err(if line.is_empty() {
                LineError::Silent
            } else {
                LineError::Partial(line)
            });
        };
        stream
            .socket()
            .set_read_timeout(Some(wait))
            .map_err(LineError::Io)?;
        let want = chunk.len().min(MAX_LINE + 1 - line.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(LineError::Closed(line)),
            Ok(n) => {
                let start = line.len();
                line.extend_from_slice(&chunk[..n]);
                if let Some(end) = line[start..].iter().position(|&b| b == b'\n') {
                    line.truncate(start + end);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                if line.len() > MAX_LINE {
                    return Err(LineError::TooLong(line));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LineError::Io(e)),
        }
    }
}

/// The start of `bytes`, as printable text for a reason.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4 * QUOTED)]);
    let mut cut: String = text.chars().take(QUOTED).collect();
    if cut.len() < text.len() || bytes.len() > 4 * QUOTED {
        cut.push_str("...");
    }
    printable(&cut)
}

/// Reads a first line as NATS' `INFO {json}`.
fn parse_info(line: &[u8]) -> Result<Info, String> {
    let is_info = line.len() > 4
        && line[..4].eq_ignore_ascii_case(b"INFO")
        && matches!(line[4], b' ' | b'\t');
    if !is_info {
        return Err(format!("not NATS: first line \"{}\"", quote(line)));
    }
    let body = &line[5..];
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not NATS: INFO is not valid JSON ({e}; it starts \"{}\")",
            quote(body)
        )
    })?;
    let server_id = value
        .get("server_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "not NATS: its INFO has no server_id".to_string())?;
    let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
    Ok(Info {
        server_id: server_id.to_string(),
        version: value
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_string),
        tls_required: flag("tls_required"),
        tls_available: flag("tls_available"),
    })
}

// ---------------------------------------------------------------------------------
// TLS

/// Why a TLS handshake did not complete.
enum HandshakeError {
    /// No answer before the deadline.
    Timeout,
    /// Anything else (one line).
    Failed(String),
}

/// Completes a TLS handshake over `tcp` before `deadline`.
fn handshake(
    server: &Server,
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    deadline: Instant,
) -> Result<StreamOwned<ClientConnection, TcpStream>, HandshakeError> {
    let name = match server.host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(server.host.clone()).map_err(|e| {
            HandshakeError::Failed(format!(
                "{} is not a TLS server name: {e}",
                printable(&server.host)
            ))
        })?,
    };
    let conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| HandshakeError::Failed(format!("cannot start TLS: {e}")))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        let Some(wait) = left(deadline) else {
            return Err(HandshakeError::Timeout);
        };
        let timeouts = stream
            .sock
            .set_read_timeout(Some(wait))
            .and_then(|()| stream.sock.set_write_timeout(Some(wait)));
        if let Err(e) = timeouts {
            return Err(HandshakeError::Failed(e.to_string()));
        }
        match stream.conn.complete_io(&mut stream.sock) {
            Ok((0, 0)) if stream.conn.is_handshaking() => {
                return Err(HandshakeError::Failed(
                    "the server closed the connection".into(),
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HandshakeError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(HandshakeError::Failed(
                    "the server closed the connection".into(),
                ))
            }
            Err(e) => return Err(HandshakeError::Failed(printable(&e.to_string()))),
        }
    }
    Ok(stream)
}

/// Ends a TLS session politely (best effort; nothing else is ever sent).
fn close(mut stream: StreamOwned<ClientConnection, TcpStream>) {
    stream.conn.send_close_notify();
    let _ = stream
        .sock
        .set_write_timeout(Some(Duration::from_millis(50)));
    let _ = stream.conn.write_tls(&mut stream.sock);
    let _ = stream.sock.flush();
}

/// The client configuration for every TLS handshake of one check: against the CA
/// bundle `ca` when given, else accepting any certificate (signatures still checked).
/// Err: why the bundle cannot be used (the reason of every TLS broker's failure).
fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = match ca {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                format!(
                    "{} = {} cannot be used: {}; name a PEM file of CA certificates",
                    keys::BROKER_CHECK_CA,
                    shown(&path.display().to_string()),
                    printable(&e.to_string())
                )
            };
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"it holds no certificate"));
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    Ok(Arc::new(builder.with_no_client_auth()))
}

/// Accepts any server certificate (Choria's anonymous provisioning TLS) but still
/// checks that the server holds its key: handshake signatures are verified with the
/// provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `2s`, `500ms`, `1.5s`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if d.subsec_millis() == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse(" Require "), Ok(Mode::Require));
        assert_eq!(Mode::parse("warn"), Ok(Mode::Warn));
        assert_eq!(Mode::parse("off"), Ok(Mode::Off));
        assert!(Mode::parse("yes")
            .unwrap_err()
            .to_string()
            .contains("off, warn or require"));
    }

    #[test]
    fn info_lines_are_read() {
        let info =
            parse_info(br#"INFO {"server_id":"NABC","version":"2.9.10","tls_required":true}"#)
                .unwrap();
        assert_eq!(info.server_id, "NABC");
        assert_eq!(info.version.as_deref(), Some("2.9.10"));
        assert!(info.tls_required && !info.tls_available);
        assert_eq!(
            parse_info(b"HTTP/1.0 200 OK").unwrap_err(),
            "not NATS: first line \"HTTP/1.0 200 OK\""
        );
        assert!(parse_info(b"INFO {nope")
            .unwrap_err()
            .to_string()
            .starts_with("not NATS: INFO is not valid JSON ("));
        assert_eq!(
            parse_info(br#"INFO {"version":"1"}"#).unwrap_err(),
            "not NATS: its INFO has no server_id"
        );
        // Escaped, and cut short.
        let hostile = parse_info(&[b"\x1b[31m".as_slice(), &[b'a'; 500]].concat()).unwrap_err();
        assert!(
            hostile.starts_with("not NATS: first line \"\\u{1b}[31maaa"),
            "{hostile}"
        );
        assert!(
            hostile.ends_with("...\"") && hostile.len() < 120,
            "{hostile}"
        );
    }

    #[test]
    fn require_keeps_passed_brokers_in_order_or_fails_naming_each() {
        let servers = crate::servers::parse_servers(["a:1", "b:2", "c:3"]).unwrap();
        let result = |s: &Server, reason: Option<&str>| BrokerResult {
            resolver: "R".into(),
            server: s.to_string(),
            passed: reason.is_none(),
            reason: reason.map(str::to_string),
            server_id: None,
            version: None,
            tls: false,
            ms: 1.0,
        };
        let results = vec![
            result(&servers[0], None),
            result(&servers[1], Some("connection refused")),
            result(&servers[2], None),
        ];
        let kept = verdict(Mode::Require, "R", servers.clone(), &results).unwrap();
        assert_eq!(kept, vec![servers[0].clone(), servers[2].clone()]);
        assert_eq!(
            verdict(Mode::Warn, "R", servers.clone(), &results).unwrap(),
            servers
        );
        let none: Vec<BrokerResult> = servers
            .iter()
            .map(|s| result(s, Some("connection refused")))
            .collect();
        let err = verdict(Mode::Require, "R", servers, &none).unwrap_err();
        assert_eq!(err.failures.len(), 3);
        assert_eq!(
            err.failures[0],
            ("nats://a:1".to_string(), "connection refused".to_string())
        );
        assert_eq!(
            err.to_string(),
            "no broker passed the broker check (plugin.provtarget.broker_check = require): \
             nats://a:1: connection refused; nats://b:2: connection refused; nats://c:3: connection refused"
        );
    }
}
