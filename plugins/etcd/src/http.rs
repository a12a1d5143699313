//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, written for this
//! plugin's two needs: short JSON requests, and one long streaming response (the etcd
//! watch) that must end within 100 ms of cancellation.
//!
//! Why not a client crate: every read here runs with a 50 ms socket timeout and checks
//! the host's cancellation between reads, connects on a helper thread so a silent
//! address cannot hold the call, and bounds every line, header block, chunk and body.
//! No proxy is ever used (the environment's `http_proxy` is ignored on purpose: the
//! endpoints are the etcd members themselves).

use std::{
    fmt,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::mpsc,
    time::{Duration, Instant},
};

use provtarget_abi::Cancellation;

/// How long one socket read waits before cancellation is checked again.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// Longest status line, header line or chunk-size line.
const MAX_LINE: usize = 8 * 1024;
/// Most header lines in one response.
const MAX_HEADERS: usize = 64;

/// Anything a connection can run over (plain TCP, or TLS over it).
pub(crate) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

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
    /// Connecting, sending or reading failed, or the answer was not HTTP.
    Io(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Cancelled => f.write_str("context canceled"),
            HttpError::Deadline => f.write_str("timed out"),
            HttpError::Io(e) => f.write_str(e),
        }
    }
}

type Result<T> = std::result::Result<T, HttpError>;

/// One HTTP exchange on its own connection (`Connection: close`).
pub(crate) struct Conn<'c> {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    cancel: &'c (dyn Cancellation + Sync),
    deadline: Instant,
}

/// The status and headers of a response.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: u16,
    chunked: bool,
    length: Option<usize>,
}

/// Opens a TCP connection to `ep` on a helper thread (so a host that never answers
/// the SYN cannot hold a cancelled call), with reads polling every [`POLL`].
pub(crate) fn connect(
    ep: &Endpoint,
    cancel: &(dyn Cancellation + Sync),
    timeout: Duration,
) -> Result<TcpStream> {
    let (tx, rx) = mpsc::channel();
    let (host, port) = (ep.host.clone(), ep.port);
    std::thread::Builder::new()
        .name("etcd-connect".into())
        .spawn(move || {
            let result = (|| -> std::io::Result<TcpStream> {
                let addrs: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs()?.collect();
                let mut last = std::io::Error::new(ErrorKind::NotFound, "no address found");
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| HttpError::Io(format!("cannot start a connect thread: {e}")))?;
    let deadline = Instant::now() + timeout + POLL;
    loop {
        if cancel.is_cancelled() {
            return Err(HttpError::Cancelled);
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(s)) => {
                s.set_read_timeout(Some(POLL))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .and_then(|()| s.set_nodelay(true))
                    .map_err(|e| HttpError::Io(format!("cannot set up the socket: {e}")))?;
                return Ok(s);
            }
            Ok(Err(e)) => return Err(HttpError::Io(format!("cannot connect: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
            Err(_) => {
                return Err(HttpError::Io(format!(
                    "cannot connect: no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

impl<'c> Conn<'c> {
    /// Sends `POST path` with a JSON `body` (and `Authorization: token` when given) on
    /// `stream`, and reads the response head. Reads must finish before `deadline`.
    pub fn post(
        stream: Box<dyn Stream>,
        ep: &Endpoint,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        cancel: &'c (dyn Cancellation + Sync),
        deadline: Instant,
    ) -> Result<(Conn<'c>, Head)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: provtarget-etcd/{}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            ep.host_header(),
            env!("CARGO_PKG_VERSION"),
            body.len()
        )
        .into_bytes();
        if let Some(t) = token {
            req.extend_from_slice(format!("Authorization: {t}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            cancel,
            deadline,
        };
        conn.write_all(&req)?;
        let head = conn.read_head()?;
        Ok((conn, head))
    }

    /// Moves the deadline (a watch gets a new one once it is established).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(HttpError::Cancelled);
            }
            match self.stream.write(data) {
                Ok(0) => return Err(HttpError::Io("connection closed while sending".into())),
                Ok(n) => data = &data[n..],
                Err(e) if retryable(&e) => {
                    if Instant::now() >= self.deadline {
                        return Err(HttpError::Deadline);
                    }
                }
                Err(e) => return Err(HttpError::Io(format!("cannot send the request: {e}"))),
            }
        }
        self.stream
            .flush()
            .map_err(|e| HttpError::Io(format!("cannot send the request: {e}")))
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    fn fill(&mut self) -> Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            if self.cancel.is_cancelled() {
                return Err(HttpError::Cancelled);
            }
            if Instant::now() >= self.deadline {
                return Err(HttpError::Deadline);
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(HttpError::Io(format!("connection failed: {e}"))),
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].windows(2).position(|w| w == b"\r\n") {
                let end = searched + i;
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(HttpError::Io(format!(
                    "protocol error: a line longer than {MAX_LINE} bytes"
                )));
            }
            searched = self.buf.len().saturating_sub(1);
            if !self.fill()? {
                return Err(HttpError::Io("connection closed mid-response".into()));
            }
        }
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(HttpError::Io("connection closed mid-response".into()));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_head(&mut self) -> Result<Head> {
        let status_line = self.line()?;
        let status_line = String::from_utf8_lossy(&status_line);
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let status = match (version.starts_with("HTTP/1."), status) {
            (true, Some(s)) => s,
            _ => {
                return Err(HttpError::Io(format!(
                    "not an HTTP answer: {:?}",
                    status_line.chars().take(60).collect::<String>()
                )))
            }
        };
        let mut head = Head {
            status,
            chunked: false,
            length: None,
        };
        for n in 0.. {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            if n >= MAX_HEADERS {
                return Err(HttpError::Io("protocol error: too many headers".into()));
            }
            let line = String::from_utf8_lossy(&line);
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim(), value.trim());
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    head.chunked = value.to_ascii_lowercase().contains("chunked");
                } else if name.eq_ignore_ascii_case("content-length") {
                    head.length = Some(value.parse().map_err(|_| {
                        HttpError::Io(format!("protocol error: Content-Length {value:?}"))
                    })?);
                }
            }
        }
        Ok(head)
    }

    /// The next piece of the body (a chunk, or what arrived), or `None` at its end.
    /// Pieces are at most `max` bytes.
    pub fn next_piece(&mut self, head: &mut Head, max: usize) -> Result<Option<Vec<u8>>> {
        if head.chunked {
            let size_line = self.line()?;
            let size_line = String::from_utf8_lossy(&size_line);
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| HttpError::Io(format!("protocol error: chunk size {hex:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line()?.is_empty() {}
                head.chunked = false;
                head.length = Some(0);
                return Ok(None);
            }
            if size > max {
                return Err(HttpError::Io(format!(
                    "answer too large: a chunk of {size} bytes (at most {max})"
                )));
            }
            let data = self.exact(size)?;
            if !self.line()?.is_empty() {
                return Err(HttpError::Io(
                    "protocol error: chunk not followed by CRLF".into(),
                ));
            }
            return Ok(Some(data));
        }
        match head.length {
            Some(0) => Ok(None),
            Some(left) => {
                if self.buf.is_empty() && !self.fill()? {
                    return Err(HttpError::Io("connection closed mid-response".into()));
                }
                let n = left.min(self.buf.len()).min(max);
                head.length = Some(left - n);
                Ok(Some(self.buf.drain(..n).collect()))
            }
            None => {
                if self.buf.is_empty() && !self.fill()? {
                    return Ok(None);
                }
                let n = self.buf.len().min(max);
                Ok(Some(self.buf.drain(..n).collect()))
            }
        }
    }

    /// The whole body, at most `max` bytes.
    pub fn body(&mut self, head: &mut Head, max: usize) -> Result<Vec<u8>> {
        if let Some(len) = head.length.filter(|_| !head.chunked) {
            if len > max {
                return Err(HttpError::Io(format!(
                    "answer too large: {len} bytes (at most {max})"
                )));
            }
        }
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece(head, max)? {
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

fn retryable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
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

    /// A server on 127.0.0.1 that reads the request head, then writes `answer` in
    /// pieces (to exercise reassembly) and holds the connection for `hold`.
    fn serve(answer: Vec<u8>, hold: Duration) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
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
        let tcp = connect(ep, cancel, Duration::from_secs(5))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut conn, mut head) = Conn::post(
            Box::new(tcp),
            ep,
            "/v3/kv/range",
            Some("tok"),
            b"{}",
            cancel,
            deadline,
        )?;
        let body = conn.body(&mut head, max)?;
        Ok((head.status, body))
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
        let ep = serve(vec![b'x'; 3 * MAX_LINE], Duration::from_millis(500));
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
