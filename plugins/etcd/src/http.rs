//! The plugin's HTTP requests, over [`ureq`] (the crate the http plugin uses too): short
//! JSON requests, and one long streaming response (the etcd watch) that must end within
//! 100 ms of cancellation.
//!
//! Each request runs on a worker thread with an [`ureq::Agent`] of its own, while the
//! calling thread waits for the worker's events (the head, then pieces of the body) and
//! checks the host's cancellation every [`POLL`]. When the call is cancelled, its
//! deadline passes or the caller lets go of the [`Exchange`], the agent is shut down
//! ([`ureq::Agent::shutdown`]), which interrupts the worker's socket at once; a worker
//! still resolving a name or connecting (which no socket shutdown reaches) ends on its
//! own connect timeout, its result unread. Every head, body and piece is bounded. No
//! proxy is ever used (the environment's `http_proxy` is ignored on purpose: the
//! endpoints are the etcd members themselves).

use std::{
    fmt,
    io::{ErrorKind, Read},
    sync::mpsc,
    time::{Duration, Instant},
};

use provtarget_abi::Cancellation;
use ureq::{Agent, Timeout};

/// How often a waiting request checks the host's cancellation.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// Longest response head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Size of one read of a body.
const READ_SIZE: usize = 16 * 1024;
/// Events a worker may send ahead of its caller (back-pressure for a fast stream).
const EVENTS_AHEAD: usize = 8;

/// An etcd client URL: `http://host:port` or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// As configured (without a trailing `/`), for messages.
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `http://host[:port]` or `https://host[:port]` (port 2379 when absent).
    pub fn parse(url: &str) -> std::result::Result<Endpoint, String> {
        let url = url.trim().trim_end_matches('/');
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        if rest.is_empty()
            || rest.contains(['/', '?', '#', '@'])
            || rest.contains(char::is_whitespace)
        {
            return Err(format!(
                "{url:?} must be scheme://host[:port] with no path, query or user"
            ));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("{url:?} has no valid host or port"))?;
        let port = port.unwrap_or(2379);
        Ok(Endpoint {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// `http://host:port` with the port written out (a URL without one means port 80
    /// to an HTTP client, 2379 here).
    fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host_header())
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port, when present, is 1..=65535.
/// Returns the host without brackets.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !s.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let h = host.strip_suffix('.').unwrap_or(host);
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
            return None;
        }
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>()
        {
            Ok(p) if p > 0 => Some(p),
            _ => return None,
        },
        Some(_) => return None,
    };
    Some((host, port))
}

/// Why a request got no usable answer.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The host cancelled the call.
    Cancelled,
    /// The deadline of this request (or of this watch period) passed.
    Deadline,
    /// The answer broke a bound, or the request could not be started.
    Io(String),
    /// Connecting, sending or reading failed, or the answer was not HTTP: what, by
    /// the error's value, and the message.
    Failed(Fault, String),
}

/// What a connection failure was, sorted by ureq's error value, the I/O error's kind
/// and rustls's error value (never by wording), so the fix can be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Without the `tls` feature no TLS fault is ever made.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) enum Fault {
    /// Nothing accepted the connection.
    Refused,
    /// The answer was not HTTP, or the connection closed in the middle of it.
    NotHttp,
    /// The peer closed or reset the connection while it was in use (over TLS: what a
    /// member that wants a client certificate does after the handshake).
    Closed,
    /// TLS failed: the member's certificate is not signed by a trusted CA.
    UnknownIssuer,
    /// TLS failed: the member's certificate does not name the host.
    WrongName,
    /// TLS failed: the member's certificate has expired.
    Expired,
    /// TLS failed: the member refused this side's certificate, or wants one.
    ClientCertWanted,
    /// TLS failed: what came back was not TLS.
    NotTls,
    /// Anything else.
    Other,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Cancelled => f.write_str("context canceled"),
            HttpError::Deadline => f.write_str("timed out"),
            HttpError::Io(e) | HttpError::Failed(_, e) => f.write_str(e),
        }
    }
}

type Result<T> = std::result::Result<T, HttpError>;

/// How https endpoints are spoken to (the cargo feature `tls`).
#[cfg(feature = "tls")]
pub(crate) type TlsSettings = ureq::tls::TlsConfig;
/// Without the cargo feature `tls` there is no way: https endpoints are refused in
/// `configure`.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsSettings {}

/// The settings every request of one client shares: timeouts, TLS, no proxy, no
/// redirects, no connection pool.
#[derive(Clone)]
pub(crate) struct Http {
    config: ureq::config::Config,
    timeout: Duration,
    tls: bool,
}

impl Http {
    /// `timeout` bounds connecting and each unary request; `tls` (when set) is how
    /// https endpoints are spoken to.
    pub fn new(timeout: Duration, tls: Option<TlsSettings>) -> Http {
        let has_tls = tls.is_some();
        let config = Agent::config_builder()
            // Never through a proxy: the endpoints are the members themselves.
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_response_header_size(MAX_HEAD)
            .user_agent(concat!("provtarget-etcd/", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(timeout))
            .timeout_connect(Some(timeout))
            // A stalled unary request fails on the caller's deadline first (see post).
            .timeout_global(Some(timeout + POLL));
        #[cfg(feature = "tls")]
        let config = match tls {
            Some(tls) => config.tls_config(tls),
            None => config,
        };
        #[cfg(not(feature = "tls"))]
        if let Some(never) = tls {
            match never {}
        }
        Http {
            config: config.build(),
            timeout,
            tls: has_tls,
        }
    }
}

/// What a worker reports to the waiting caller, in order.
enum Event {
    Head { status: u16, length: Option<u64> },
    Piece(Vec<u8>),
    End,
    Failed(HttpError),
}

/// One request in flight: its status, and its body still to read. Dropping it shuts
/// its connection down.
pub(crate) struct Exchange<'c> {
    /// The response status.
    pub status: u16,
    /// The declared body length, when there is one.
    length: Option<u64>,
    events: mpsc::Receiver<Event>,
    agent: Agent,
    cancel: &'c (dyn Cancellation + Sync),
    deadline: Instant,
    ended: bool,
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        self.agent.clone().shutdown();
    }
}

/// What to send: `POST path` with a JSON body, and `Authorization: token` when given.
pub(crate) struct Post<'a> {
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: &'a [u8],
    /// A long-lived stream (the watch): no overall time limit on the worker; the
    /// caller's deadline ([`Exchange::set_deadline`]) bounds it.
    pub streaming: bool,
}

impl<'c> Exchange<'c> {
    /// Sends `post` to `ep` on a worker thread and waits for the response head.
    /// Waiting ends at `deadline` or when `cancel` is cancelled.
    pub fn start(
        http: &Http,
        ep: &Endpoint,
        post: &Post<'_>,
        cancel: &'c (dyn Cancellation + Sync),
        deadline: Instant,
    ) -> Result<Exchange<'c>> {
        if ep.tls && !http.tls {
            return Err(HttpError::Io(
                "https endpoint but this build has no TLS support".into(),
            ));
        }
        let agent = Agent::new_with_config(http.config.clone());
        let (tx, events) = mpsc::sync_channel(EVENTS_AHEAD);
        let job = Job {
            agent: agent.clone(),
            url: format!("{}{}", ep.base_url(), post.path),
            token: post.token.map(String::from),
            body: post.body.to_vec(),
            streaming: post.streaming,
            timeout: http.timeout,
        };
        std::thread::Builder::new()
            .name("etcd-request".into())
            .spawn(move || job.run(&tx))
            .map_err(|e| HttpError::Io(format!("cannot start a request thread: {e}")))?;
        let mut exchange = Exchange {
            status: 0,
            length: None,
            events,
            agent,
            cancel,
            // Connecting and reading have their own timeouts in the worker, which name
            // what timed out; this is the backstop.
            deadline: deadline + 2 * POLL,
            ended: false,
        };
        match exchange.wait()? {
            Event::Head { status, length } => {
                exchange.status = status;
                exchange.length = length;
                exchange.deadline = deadline;
                Ok(exchange)
            }
            Event::Failed(e) => Err(e),
            Event::Piece(_) | Event::End => Err(HttpError::Io(
                "the request thread sent a body before its head".into(),
            )),
        }
    }

    /// Moves the deadline (a watch gets a new one once it is established).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// The worker's next event, checking cancellation and the deadline while waiting.
    fn wait(&mut self) -> Result<Event> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(HttpError::Cancelled);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HttpError::Deadline);
            }
            match self.events.recv_timeout(left.min(POLL)) {
                Ok(event) => return Ok(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(HttpError::Io(
                        "the request thread ended without an answer".into(),
                    ))
                }
            }
        }
    }

    /// The next piece of the body (what one read returned), or `None` at its end.
    /// Pieces are at most `max` bytes.
    pub fn next_piece(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        match self.wait()? {
            Event::Piece(p) if p.len() > max => Err(HttpError::Io(format!(
                "answer too large: a piece of {} bytes (at most {max})",
                p.len()
            ))),
            Event::Piece(p) => Ok(Some(p)),
            Event::End => {
                self.ended = true;
                Ok(None)
            }
            Event::Failed(e) => Err(e),
            Event::Head { .. } => Err(HttpError::Io(
                "the request thread sent a second head".into(),
            )),
        }
    }

    /// The whole body, at most `max` bytes.
    pub fn body(&mut self, max: usize) -> Result<Vec<u8>> {
        if let Some(len) = self.length.filter(|&len| len > max as u64) {
            return Err(HttpError::Io(format!(
                "answer too large: {len} bytes (at most {max})"
            )));
        }
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece(max)? {
            body.extend_from_slice(&piece);
            if body.len() > max {
                return Err(HttpError::Io(format!(
                    "answer too large: more than {max} bytes"
                )));
            }
        }
        Ok(body)
    }
}

/// A request as the worker thread owns it.
struct Job {
    agent: Agent,
    url: String,
    token: Option<String>,
    body: Vec<u8>,
    streaming: bool,
    timeout: Duration,
}

impl Job {
    /// Sends the request and reports the head, each piece of the body and its end
    /// (or the failure) to `tx`; stops early once the caller is gone.
    fn run(self, tx: &mpsc::SyncSender<Event>) {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .header("Connection", "close");
        if let Some(token) = &self.token {
            request = request.header("Authorization", token);
        }
        if self.streaming {
            request = request.config().timeout_global(None).build();
        }
        let response = match request.send(&self.body[..]) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Event::Failed(failure(e, self.timeout)));
                return;
            }
        };
        let head = Event::Head {
            status: response.status().as_u16(),
            length: response.body().content_length(),
        };
        if tx.send(head).is_err() {
            return;
        }
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let event = match reader.read(&mut buf) {
                Ok(0) => Event::End,
                Ok(n) => Event::Piece(buf[..n].to_vec()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Event::Failed(failure(ureq::Error::from(e), self.timeout)),
            };
            let last = !matches!(event, Event::Piece(_));
            if tx.send(event).is_err() || last {
                return;
            }
        }
    }
}

/// What went wrong, by ureq's error value, the I/O error's kind and the TLS error's
/// value.
fn failure(e: ureq::Error, timeout: Duration) -> HttpError {
    let failed = |fault, message: String| HttpError::Failed(fault, message);
    match e {
        ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => failed(
            Fault::Other,
            format!(
                "cannot connect: no answer within {} ms",
                timeout.as_millis()
            ),
        ),
        ureq::Error::Timeout(_) => HttpError::Deadline,
        ureq::Error::HostNotFound => failed(Fault::Other, "cannot connect: host not found".into()),
        ureq::Error::Io(e) => match e.kind() {
            ErrorKind::ConnectionRefused => failed(Fault::Refused, format!("cannot connect: {e}")),
            ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable => failed(Fault::Other, format!("cannot connect: {e}")),
            ErrorKind::UnexpectedEof => {
                failed(Fault::NotHttp, "connection closed mid-response".into())
            }
            ErrorKind::TimedOut => HttpError::Deadline,
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                failed(Fault::Closed, format!("connection failed: {e}"))
            }
            _ => failed(tls_fault_in(&e), format!("connection failed: {e}")),
        },
        ureq::Error::LargeResponseHeader(_, max) => failed(
            Fault::NotHttp,
            format!("protocol error: a response head longer than {max} bytes"),
        ),
        ureq::Error::Protocol(e) => failed(Fault::NotHttp, format!("not an HTTP answer: {e}")),
        ureq::Error::BodyExceedsLimit(max) => {
            HttpError::Io(format!("answer too large: more than {max} bytes"))
        }
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(e) => failed(tls_fault(&e), format!("connection failed: {e}")),
        e => failed(Fault::Other, format!("connection failed: {e}")),
    }
}

/// The TLS failure an I/O error carries (rustls reports through `io::Error`).
fn tls_fault_in(e: &std::io::Error) -> Fault {
    #[cfg(feature = "tls")]
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return tls_fault(tls);
    }
    let _ = e;
    Fault::Other
}

#[cfg(feature = "tls")]
fn tls_fault(e: &rustls::Error) -> Fault {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error, InvalidMessage};
    match e {
        Error::InvalidCertificate(Cert::UnknownIssuer) => Fault::UnknownIssuer,
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            Fault::WrongName
        }
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => Fault::Expired,
        Error::AlertReceived(
            Alert::BadCertificate | Alert::CertificateRequired | Alert::UnknownCA,
        ) => Fault::ClientCertWanted,
        Error::InvalidMessage(InvalidMessage::InvalidContentType) => Fault::NotTls,
        _ => Fault::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Write,
        net::TcpListener,
        sync::atomic::{AtomicBool, Ordering},
    };

    struct Flag(AtomicBool);
    impl Cancellation for Flag {
        fn is_cancelled(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, d: Duration) -> std::result::Result<(), provtarget_abi::Cancelled> {
            std::thread::sleep(d);
            Ok(())
        }
    }

    /// A server on 127.0.0.1 that reads the request (its body is `{}`), then writes `answer` in
    /// pieces (to exercise reassembly) and holds the connection for `hold`.
    fn serve(answer: Vec<u8>, hold: Duration) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n{}") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&b[..n]);
            }
            for piece in answer.chunks(7) {
                let _ = s.write_all(piece);
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(hold);
        });
        Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    fn exchange(ep: &Endpoint, cancel: &Flag, max: usize) -> Result<(u16, Vec<u8>)> {
        let http = Http::new(Duration::from_secs(5), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        let post = Post {
            path: "/v3/kv/range",
            token: Some("tok"),
            body: b"{}",
            streaming: false,
        };
        let mut exchange = Exchange::start(&http, ep, &post, cancel, deadline)?;
        let body = exchange.body(max)?;
        Ok((exchange.status, body))
    }

    #[test]
    fn bodies_chunked_sized_and_bounded() {
        let flag = Flag(AtomicBool::new(false));
        let ep = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n".to_vec(),
            Duration::ZERO,
        );
        assert_eq!(
            exchange(&ep, &flag, 1024).unwrap(),
            (200, b"hello world".to_vec())
        );
        let ep = serve(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef".to_vec(),
            Duration::ZERO,
        );
        assert_eq!(exchange(&ep, &flag, 1024).unwrap(), (404, b"abc".to_vec()));
        let ep = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".to_vec(),
            Duration::ZERO,
        );
        let e = exchange(&ep, &flag, 1024).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let ep = serve(b"SSH-2.0-OpenSSH\r\n".to_vec(), Duration::ZERO);
        let e = exchange(&ep, &flag, 1024).unwrap_err().to_string();
        assert!(e.contains("not an HTTP answer"), "{e}");
        let mut endless = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        endless.extend(vec![b'x'; 3 * MAX_HEAD]);
        let ep = serve(endless, Duration::from_millis(500));
        let e = exchange(&ep, &flag, 1024).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn a_silent_server_is_left_on_cancellation() {
        let flag = Flag(AtomicBool::new(false));
        let ep = serve(
            b"HTTP/1.1 200 OK\r\nContent-Len".to_vec(),
            Duration::from_secs(5),
        );
        std::thread::scope(|s| {
            let started = Instant::now();
            let call = s.spawn(|| exchange(&ep, &flag, 1024));
            std::thread::sleep(Duration::from_millis(200));
            flag.0.store(true, Ordering::SeqCst);
            let result = call.join().unwrap();
            assert!(matches!(result, Err(HttpError::Cancelled)), "{result:?}");
            // Liveness only: it ended long before the server let go (5 s).
            assert!(started.elapsed() < Duration::from_secs(4));
        });
    }

    /// A watch-like stream: the caller returns within a poll of the cancellation, and
    /// letting go of the exchange closes the connection (the worker is not left
    /// blocked on a stream that has no time limit).
    #[test]
    fn a_cancelled_stream_returns_at_once_and_closes_its_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n{}") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // 0: the client closed the connection; an error: it never did.
            s.read(&mut b).map_err(|e| e.kind())
        });
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let flag = Flag(AtomicBool::new(false));
        let http = Http::new(Duration::from_secs(5), None);
        let post = Post {
            path: "/v3/watch",
            token: None,
            body: b"{}",
            streaming: true,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut exchange = Exchange::start(&http, &ep, &post, &flag, deadline).unwrap();
        exchange.set_deadline(Instant::now() + Duration::from_secs(60));
        assert_eq!(exchange.next_piece(1024).unwrap(), Some(b"abc".to_vec()));
        let latency = std::thread::scope(|s| {
            let cancelled_at = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                flag.0.store(true, Ordering::SeqCst);
                Instant::now()
            });
            let result = exchange.next_piece(1024);
            let returned = Instant::now();
            assert!(matches!(result, Err(HttpError::Cancelled)), "{result:?}");
            returned.saturating_duration_since(cancelled_at.join().unwrap())
        });
        eprintln!("stream returned {latency:?} after cancellation");
        drop(exchange);
        assert_eq!(server.join().unwrap(), Ok(0));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_failures_are_sorted_by_rustls_error_value() {
        use rustls::{AlertDescription, CertificateError, InvalidMessage};
        let fault = |e: rustls::Error| {
            let io = std::io::Error::new(ErrorKind::InvalidData, e);
            match failure(ureq::Error::Io(io), Duration::from_secs(1)) {
                HttpError::Failed(fault, _) => fault,
                other => panic!("{other:?}"),
            }
        };
        let cert = rustls::Error::InvalidCertificate;
        assert_eq!(
            fault(cert(CertificateError::UnknownIssuer)),
            Fault::UnknownIssuer
        );
        assert_eq!(
            fault(cert(CertificateError::NotValidForName)),
            Fault::WrongName
        );
        assert_eq!(fault(cert(CertificateError::Expired)), Fault::Expired);
        for alert in [
            AlertDescription::BadCertificate,
            AlertDescription::CertificateRequired,
            AlertDescription::UnknownCA,
        ] {
            assert_eq!(
                fault(rustls::Error::AlertReceived(alert)),
                Fault::ClientCertWanted
            );
        }
        assert_eq!(
            fault(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType
            )),
            Fault::NotTls
        );
        assert_eq!(fault(rustls::Error::HandshakeNotComplete), Fault::Other);
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert!(matches!(
            failure(ureq::Error::Io(refused), Duration::from_secs(1)),
            HttpError::Failed(Fault::Refused, m) if m.starts_with("cannot connect: ")
        ));
    }

    #[test]
    fn endpoints_parse_and_refuse_garbage() {
        let ep = Endpoint::parse("http://127.0.0.1:2379/").unwrap();
        assert_eq!(
            (ep.tls, ep.host.as_str(), ep.port),
            (false, "127.0.0.1", 2379)
        );
        assert_eq!(ep.url, "http://127.0.0.1:2379");
        let ep = Endpoint::parse("https://etcd-1.example.net").unwrap();
        assert_eq!((ep.tls, ep.port), (true, 2379));
        let ep = Endpoint::parse("http://[::1]:2380").unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.port, ep.host_header().as_str()),
            ("::1", 2380, "[::1]:2380")
        );
        for bad in [
            "127.0.0.1:2379",
            "ftp://a:1",
            "http://",
            "http://a:0",
            "http://a:99999",
            "http://a:1/v3",
            "http://u@a:1",
            "http://a b:1",
            "http://a..b:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
