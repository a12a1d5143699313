//! `HTTP Provisioning Target`: provisioning brokers from a JSON document fetched over
//! plain HTTP, such as a cloud instance's metadata or user data.
//!
//! ```text
//! # /etc/choria/server.conf: AWS EC2 with IMDSv2, user data {"brokers": ["prov1.example.net:4222"]}
//! plugin.provtarget.http.url = http://169.254.169.254/latest/user-data
//! plugin.provtarget.http.pointer = /brokers
//! plugin.provtarget.http.token.url = http://169.254.169.254/latest/api/token
//! plugin.provtarget.http.token.header.X-aws-ec2-metadata-token-ttl-seconds = 21600
//! plugin.provtarget.http.token.into = X-aws-ec2-metadata-token
//! ```
//!
//! On every try it (optionally) asks a token service for a token, then sends
//! `GET <url>` with the configured headers (and the token in the header named by
//! `token.into`), requires a `2xx` answer of at most [`MAX_BODY`] bytes holding JSON,
//! and takes the value at the RFC 6901 JSON pointer: a string (`"a:4222"`), a
//! comma-separated string (`"a:4222, b:4222"`) or an array of strings. Every entry must
//! be `host:port` or `scheme://host:port`.
//!
//! A try that fails (connection refused, timeout, non-`2xx` status, a body too large,
//! invalid JSON, nothing at the pointer, no targets, an entry that is not a target) is
//! retried with Choria's FiveSec backoff (the SDK's `backoff::FIVE_SEC.retry`), which
//! logs each failure once through the host, e.g.
//! `try 1 failed: GET http://169.254.169.254/latest/user-data: 503 Service Unavailable`,
//! until the host cancels.
//!
//! Configuration keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.provtarget.http.url` | (required) | the JSON document, an `http://` URL |
//! | `plugin.provtarget.http.pointer` | empty: the whole document | RFC 6901 JSON pointer to the targets, e.g. `/brokers` |
//! | `plugin.provtarget.http.header.<Name>` | | a request header for the `GET`, any number, e.g. `…header.Metadata-Flavor = Google` |
//! | `plugin.provtarget.http.connect_timeout` | `2s` | how long to wait for a TCP connection |
//! | `plugin.provtarget.http.read_timeout` | `5s` | how long to wait for the answer; a request ends after `connect_timeout` + `read_timeout` at the latest |
//! | `plugin.provtarget.http.token.url` | none | fetch a token from this `http://` URL first |
//! | `plugin.provtarget.http.token.method` | `PUT` | `PUT`, `POST` or `GET` for the token request |
//! | `plugin.provtarget.http.token.header.<Name>` | | a request header for the token request, any number |
//! | `plugin.provtarget.http.token.into` | (required with `token.url`) | the header of the `GET` the token goes into |
//!
//! Header names are HTTP tokens and compared without regard to case. Values of
//! `Authorization`, `Cookie` and of headers whose name mentions a token, secret, key,
//! password, session or credential are masked in the settings `buildinfo` shows, and no
//! header value or token is ever logged.
//!
//! Safety bounds:
//! - never through a proxy: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` are
//!   ignored (metadata services live on link-local addresses a proxy cannot reach);
//! - no redirects are followed, neither for the token nor for the document: a `3xx` is
//!   a failed try naming the `Location`;
//! - answers over [`MAX_BODY`] bytes (tokens over [`MAX_TOKEN_BODY`]) are refused, and
//!   at most [`MAX_TARGETS`] targets are taken;
//! - plain `http://` only: the plugin's HTTP agent has no TLS connector, so no TLS stack
//!   is linked into it (a workspace build may compile `ureq` with rustls for the etcd
//!   plugin; only its error type reaches this library).
//!
//! Cancellation: each try runs on a short-lived worker thread, with an HTTP agent
//! ([`ureq`], the client the etcd plugin uses too) of its own, while the calling thread
//! polls the host's cancellation every [`POLL`]. When the host cancels, the call
//! returns at once (well within the host's 100 ms), whatever the network is doing (a
//! server that accepts and never answers, a DNS lookup that hangs), and shuts the
//! try's agent down, which closes its connection so the worker ends at once; a worker
//! still resolving a name or connecting ends on its own deadline (`connect_timeout`).
//! Short timeouts alone could not give that bound: a deadline short enough would fail
//! healthy but slow services, and name resolution cannot be interrupted at all.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    fmt,
    io::Read,
    sync::{mpsc, Arc},
    thread,
    time::Duration,
};

use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, targets::is_url_scheme, Cancellation, Cancelled, Config,
    ConfigError, ConfigKey, Context, Error, Resolver, Settings,
};
use serde_json::Value;
use url::Url;

/// `plugin.provtarget.http.url`: the JSON document.
pub const URL_KEY: &str = "plugin.provtarget.http.url";
/// `plugin.provtarget.http.pointer`: RFC 6901 JSON pointer to the targets.
pub const POINTER_KEY: &str = "plugin.provtarget.http.pointer";
/// Prefix of the `GET` request's header keys: `plugin.provtarget.http.header.<Name>`.
pub const HEADER_PREFIX: &str = "plugin.provtarget.http.header.";
/// `plugin.provtarget.http.connect_timeout`: TCP connection timeout.
pub const CONNECT_TIMEOUT_KEY: &str = "plugin.provtarget.http.connect_timeout";
/// `plugin.provtarget.http.read_timeout`: time allowed for the answer.
pub const READ_TIMEOUT_KEY: &str = "plugin.provtarget.http.read_timeout";
/// `plugin.provtarget.http.token.url`: the token service, when there is one.
pub const TOKEN_URL_KEY: &str = "plugin.provtarget.http.token.url";
/// `plugin.provtarget.http.token.method`: the token request's method.
pub const TOKEN_METHOD_KEY: &str = "plugin.provtarget.http.token.method";
/// Prefix of the token request's header keys: `plugin.provtarget.http.token.header.<Name>`.
pub const TOKEN_HEADER_PREFIX: &str = "plugin.provtarget.http.token.header.";
/// `plugin.provtarget.http.token.into`: the `GET` header the token goes into.
pub const TOKEN_INTO_KEY: &str = "plugin.provtarget.http.token.into";

const DEFAULT_CONNECT_TIMEOUT: &str = "2s";
const DEFAULT_READ_TIMEOUT: &str = "5s";
const DEFAULT_TOKEN_METHOD: &str = "PUT";

/// The largest document accepted, in bytes (1 MiB).
pub const MAX_BODY: u64 = 1 << 20;
/// The largest token accepted, in bytes.
pub const MAX_TOKEN_BODY: u64 = 8 * 1024;
/// The most targets taken from one document.
pub const MAX_TARGETS: usize = 100;
/// How often a waiting call checks the host's cancellation.
pub const POLL: Duration = Duration::from_millis(10);
/// The longest target string accepted.
const MAX_TARGET_LEN: usize = 512;

/// Resolves the provisioning brokers from a JSON document fetched over HTTP.
pub struct HttpResolver {
    request: Option<Arc<Request>>,
}

impl Resolver for HttpResolver {
    const NAME: &'static str = "HTTP Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget";
    const DESCRIPTION: &'static str =
        "Provisioning brokers from a JSON document over HTTP (AWS, GCP, Azure metadata)";

    fn new() -> Result<Self, Error> {
        Ok(HttpResolver { request: None })
    }

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new(
                URL_KEY,
                "",
                "http:// URL of the JSON document holding the targets (required)",
            ),
            ConfigKey::new(
                POINTER_KEY,
                "",
                "RFC 6901 JSON pointer to a string, comma-separated string or array of strings, e.g. /brokers; empty means the whole document",
            ),
            ConfigKey::new(
                &format!("{HEADER_PREFIX}<Name>"),
                "",
                "a request header <Name> for the GET, any number of them, e.g. plugin.provtarget.http.header.Metadata-Flavor = Google",
            ),
            ConfigKey::new(
                CONNECT_TIMEOUT_KEY,
                DEFAULT_CONNECT_TIMEOUT,
                "how long to wait for a TCP connection",
            ),
            ConfigKey::new(
                READ_TIMEOUT_KEY,
                DEFAULT_READ_TIMEOUT,
                "how long to wait for the answer; a request ends after connect_timeout + read_timeout at the latest",
            ),
            ConfigKey::new(
                TOKEN_URL_KEY,
                "",
                "http:// URL of a token service asked before every GET (e.g. AWS IMDSv2); empty for none",
            ),
            ConfigKey::new(
                TOKEN_METHOD_KEY,
                DEFAULT_TOKEN_METHOD,
                "method of the token request: PUT, POST or GET",
            ),
            ConfigKey::new(
                &format!("{TOKEN_HEADER_PREFIX}<Name>"),
                "",
                "a request header <Name> for the token request, any number of them, e.g. plugin.provtarget.http.token.header.X-aws-ec2-metadata-token-ttl-seconds = 21600",
            ),
            ConfigKey::new(
                TOKEN_INTO_KEY,
                "",
                "the GET request header the token goes into, e.g. X-aws-ec2-metadata-token (required with token.url)",
            ),
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        let request = Request::from_config(config)?;
        ctx.debug(format!(
            "GET {} with {} header(s){}; targets at {}",
            request.shown_url,
            request.headers.len(),
            match &request.token {
                Some(t) => format!(" after {} {}", t.method, t.shown_url),
                None => String::new(),
            },
            pointer_name(&request.pointer),
        ));
        let settings = request.settings();
        self.request = Some(Arc::new(request));
        Ok(settings)
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let request = self
            .request
            .as_ref()
            .ok_or("the HTTP resolver was not configured")?;
        let found = resolve(ctx, request)?;
        ctx.provenance(format_args!(
            "HTTP GET {} pointer {:?}",
            request.shown_url, request.pointer
        ));
        Ok(found)
    }
}

export_plugin!(HttpResolver);

/// Retries [`try_once`] with Choria's FiveSec backoff until it succeeds or `cancel`
/// is cancelled; each failed try is reported once to `cancel` (logged by the host).
fn resolve<C: Cancellation + ?Sized>(
    cancel: &C,
    request: &Arc<Request>,
) -> Result<Vec<String>, Error> {
    FIVE_SEC.retry(cancel, |_try| try_once(cancel, request))
}

/// One try: fetch on a worker thread (see the crate docs), then take the targets.
fn try_once<C: Cancellation + ?Sized>(
    cancel: &C,
    request: &Arc<Request>,
) -> Result<Vec<String>, Error> {
    let worker = Arc::clone(request);
    // An agent of this try's own: shutting it down ends the worker's request alone.
    // Plain TCP only: no TLS connector in the chain, whatever features a workspace
    // build turns on in ureq (the etcd plugin's rustls), so no TLS code is linked.
    let agent = ureq::Agent::with_parts(
        request.config.clone(),
        ureq::unversioned::transport::TcpConnector::default(),
        ureq::unversioned::resolver::DefaultResolver::default(),
    );
    let used = agent.clone();
    let outcome = run_cancellable(cancel, move || worker.fetch(&used));
    // Cancelled (or done): close the connection, so an abandoned worker ends at once
    // rather than on its own deadline (a name lookup or a connect still runs out).
    agent.shutdown();
    let body = match outcome? {
        Ok(body) => body,
        Err(f) if f.permanent => return Err(provtarget_abi::permanent(f.message)),
        Err(f) => return Err(f.message.into()),
    };
    Ok(extract_targets(
        &body,
        &request.pointer,
        &request.shown_url,
    )?)
}

/// Runs `work` on a new thread and waits for it, checking `cancel` every [`POLL`].
/// Returns [`Cancelled`] as soon as `cancel` is cancelled, leaving the thread to end
/// on its own (the caller shuts its connection down).
fn run_cancellable<C, T, F>(cancel: &C, work: F) -> Result<T, Error>
where
    C: Cancellation + ?Sized,
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("provtarget-http request".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a request thread: {e}"))?;
    loop {
        if cancel.is_cancelled() {
            return Err(Box::new(Cancelled));
        }
        match rx.recv_timeout(POLL) {
            Ok(value) => return Ok(value),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the request thread ended without an answer".into())
            }
        }
    }
}

/// One request header from the configuration.
#[derive(Clone)]
struct Header {
    /// The configuration key it came from.
    key: String,
    name: String,
    value: String,
    secret: bool,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the value: it may be a secret.
        write!(f, "Header({})", self.name)
    }
}

/// The optional token step.
#[derive(Debug, Clone)]
struct TokenStep {
    url: Url,
    shown_url: String,
    method: String,
    headers: Vec<Header>,
    into: String,
}

/// What one try does, validated from the configuration.
struct Request {
    url: Url,
    shown_url: String,
    pointer: String,
    headers: Vec<Header>,
    connect_timeout: Duration,
    read_timeout: Duration,
    token: Option<TokenStep>,
    /// The HTTP client's settings; each try makes an agent from them.
    config: ureq::config::Config,
}

impl Request {
    /// Validates the configuration; every error names its key.
    fn from_config(config: &Config) -> Result<Request, ConfigError> {
        let config = config.clone().with_keys(&HttpResolver::config_keys());
        let url_text = config.string(URL_KEY);
        if url_text.is_empty() {
            return Err(ConfigError::new(
                URL_KEY,
                "",
                "the http:// URL of a JSON document, e.g. http://169.254.169.254/latest/user-data",
            ));
        }
        let url = http_url(URL_KEY, url_text)?;
        let pointer = config.string(POINTER_KEY).to_string();
        check_pointer(&pointer).map_err(|why| ConfigError::new(POINTER_KEY, &pointer, why))?;
        let connect_timeout = positive_duration(&config, CONNECT_TIMEOUT_KEY)?;
        let read_timeout = positive_duration(&config, READ_TIMEOUT_KEY)?;
        let mut headers = headers(&config, HEADER_PREFIX)?;

        let token = TokenStep::from_config(&config, &headers)?;
        headers.shrink_to_fit();

        let config = ureq::Agent::config_builder()
            // Never through a proxy: ureq reads HTTP_PROXY and friends unless told not to.
            .proxy(None)
            // Redirects are not followed: a 3xx comes back as the answer.
            .max_redirects(0)
            // Every status is an answer, read below, not an error.
            .http_status_as_error(false)
            .timeout_connect(Some(connect_timeout))
            // One deadline for the whole request, so a server dripping bytes cannot
            // hold a try, or an abandoned worker thread, for longer.
            .timeout_global(Some(connect_timeout + read_timeout))
            // A fresh connection every try: no stale pooled sockets across retries.
            .max_idle_connections(0)
            .user_agent(concat!("provtarget-http/", env!("CARGO_PKG_VERSION")))
            .build();

        Ok(Request {
            shown_url: shown_url(&url),
            url,
            pointer,
            headers,
            connect_timeout,
            read_timeout,
            token,
            config,
        })
    }

    /// The settings `buildinfo` shows, secrets masked.
    fn settings(&self) -> Settings {
        let mut s = Settings::new()
            .with(URL_KEY, &self.shown_url)
            .with(POINTER_KEY, &self.pointer)
            .with(CONNECT_TIMEOUT_KEY, format!("{:?}", self.connect_timeout))
            .with(READ_TIMEOUT_KEY, format!("{:?}", self.read_timeout));
        let add = |mut s: Settings, headers: &[Header]| {
            for h in headers {
                s = if h.secret {
                    s.secret(&h.key, &h.value)
                } else {
                    s.with(&h.key, &h.value)
                };
            }
            s
        };
        s = add(s, &self.headers);
        if let Some(t) = &self.token {
            s = s
                .with(TOKEN_URL_KEY, &t.shown_url)
                .with(TOKEN_METHOD_KEY, &t.method)
                .with(TOKEN_INTO_KEY, &t.into);
            s = add(s, &t.headers);
        }
        s
    }

    /// The token step (if any), then the `GET`: the document's bytes.
    fn fetch(&self, agent: &ureq::Agent) -> Result<Vec<u8>, Failed> {
        let token = match &self.token {
            Some(step) => Some(step.fetch(agent)?),
            None => None,
        };
        let mut req = agent.get(self.url.as_str());
        for h in &self.headers {
            req = req.header(&h.name, &h.value);
        }
        if let (Some(step), Some(token)) = (&self.token, &token) {
            req = req.header(&step.into, token);
        }
        let what = format!("GET {}", self.shown_url);
        let response = check_status(req.call(), &what)?;
        Ok(read_response(response, MAX_BODY, &what)?)
    }
}

impl TokenStep {
    /// The token step, when `token.url` is set; token settings without it are an error.
    /// `headers` are the `GET`'s, which `token.into` must not also set.
    fn from_config(config: &Config, headers: &[Header]) -> Result<Option<TokenStep>, ConfigError> {
        Ok(if config.is_set(TOKEN_URL_KEY) {
            let token_url = http_url(TOKEN_URL_KEY, config.string(TOKEN_URL_KEY))?;
            let method = config.string(TOKEN_METHOD_KEY).to_ascii_uppercase();
            if !matches!(method.as_str(), "PUT" | "POST" | "GET") {
                return Err(ConfigError::new(
                    TOKEN_METHOD_KEY,
                    config.string(TOKEN_METHOD_KEY),
                    "PUT, POST or GET",
                ));
            }
            let into = config.string(TOKEN_INTO_KEY).to_string();
            if into.is_empty() {
                return Err(ConfigError::new(
                TOKEN_INTO_KEY,
                "",
                &format!(
                    "the header the token goes into on the GET, e.g. X-aws-ec2-metadata-token ({TOKEN_URL_KEY} is set)"
                ),
            ));
            }
            check_header_name(&into).map_err(|why| ConfigError::new(TOKEN_INTO_KEY, &into, why))?;
            if let Some(clash) = headers.iter().find(|h| h.name.eq_ignore_ascii_case(&into)) {
                return Err(ConfigError::new(
                    TOKEN_INTO_KEY,
                    &into,
                    &format!("a header not also set by {}", clash.key),
                ));
            }
            Some(TokenStep {
                shown_url: shown_url(&token_url),
                url: token_url,
                method,
                headers: self::headers(config, TOKEN_HEADER_PREFIX)?,
                into,
            })
        } else {
            // Token settings without a token URL are a mistake, not something to ignore.
            let stray = config
                .iter()
                .map(|(k, _)| k)
                .find(|k| {
                    (*k == TOKEN_INTO_KEY || k.starts_with(TOKEN_HEADER_PREFIX)) && config.is_set(k)
                })
                .map(str::to_string);
            if let Some(stray) = stray {
                return Err(ConfigError::new(
                    TOKEN_URL_KEY,
                    "",
                    &format!("the token service's http:// URL, since {stray} is set"),
                ));
            }
            None
        })
    }

    fn fetch(&self, agent: &ureq::Agent) -> Result<String, Failed> {
        let what = format!("token: {} {}", self.method, self.shown_url);
        let url = self.url.as_str();
        let result = if self.method == "GET" {
            with_headers(agent.get(url), &self.headers).call()
        } else {
            // An empty body with Content-Length: 0, as curl -X PUT sends.
            let req = match self.method.as_str() {
                "POST" => agent.post(url),
                _ => agent.put(url),
            };
            with_headers(req, &self.headers).send(&[][..])
        };
        let response = check_status(result, &what)?;
        let body = read_response(response, MAX_TOKEN_BODY, &what)?;
        // The token itself never appears in a message.
        let token = String::from_utf8(body)
            .map_err(|_| format!("{what}: the token is not UTF-8 text"))?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(format!("{what}: the answer holds no token").into());
        }
        check_header_value(&token)
            .map_err(|why| format!("{what}: the token cannot go into a header: {why}"))?;
        Ok(token)
    }
}

/// `req` with `headers` set.
fn with_headers<B>(
    mut req: ureq::RequestBuilder<B>,
    headers: &[Header],
) -> ureq::RequestBuilder<B> {
    for h in headers {
        req = req.header(&h.name, &h.value);
    }
    req
}

type Response = ureq::http::Response<ureq::Body>;

/// `2xx` responses pass; anything else is an error such as
/// `GET http://h/x: 503 Service Unavailable`.
fn check_status(result: Result<Response, ureq::Error>, what: &str) -> Result<Response, Failed> {
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            let (text, fix) = Below::from(e).shown(what);
            return Err(match fix {
                Some(fix) => format!("{what}: {text}; {fix}").into(),
                None => format!("{what}: {text}").into(),
            });
        }
    };
    let status = r.status().as_u16();
    let line = format!(
        "{what}: {status} {}",
        r.status().canonical_reason().unwrap_or("")
    );
    match status {
        200..=299 => Ok(r),
        300..=399 => Err(Failed::from(format!(
            "{line}; redirects are not followed{}",
            match r.headers().get("Location").map(|l| l.to_str()) {
                Some(Ok(l)) => format!(" (Location: {})", shown_text(l, 200)),
                _ => String::new(),
            }
        ))),
        400..=499 => {
            // A metadata service says in its body which header it wants.
            let mut body = Vec::new();
            let _ = r
                .into_body()
                .into_reader()
                .take(1024)
                .read_to_end(&mut body);
            let body = String::from_utf8_lossy(&body);
            match hint_for_status(status, &body, what) {
                // The service wants a header the configuration does not send: that
                // will not change by asking again.
                Some(fix) if fix.starts_with("the service wants the header") => Err(Failed {
                    message: format!("{line}; {fix}"),
                    permanent: true,
                }),
                Some(fix) => Err(format!("{line}; {fix}").into()),
                None => Err(line.into()),
            }
        }
        _ => Err(line.into()),
    }
}

/// A request that failed below HTTP, sorted by ureq's error value and the I/O error's
/// kind (never by its wording).
#[derive(Debug)]
enum Below {
    /// Nothing accepted the connection.
    Refused(std::io::Error),
    /// Connecting failed otherwise (no route, no address).
    Unreachable(std::io::Error),
    /// The host name does not resolve.
    NoSuchHost,
    /// A timeout of the request (connect, or the whole request).
    TimedOut(ureq::Timeout),
    /// The answer was not HTTP, or the connection closed before one.
    NotHttp(String),
    /// Anything else.
    Other(String),
}

impl From<ureq::Error> for Below {
    fn from(e: ureq::Error) -> Below {
        use std::io::ErrorKind as K;
        match e {
            ureq::Error::Io(e) => match e.kind() {
                K::ConnectionRefused => Below::Refused(e),
                K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                    Below::Unreachable(e)
                }
                K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted => {
                    Below::NotHttp(format!("the connection closed: {e}"))
                }
                _ => Below::Other(e.to_string()),
            },
            ureq::Error::HostNotFound => Below::NoSuchHost,
            ureq::Error::Timeout(t) => Below::TimedOut(t),
            ureq::Error::Protocol(e) => Below::NotHttp(format!("not an HTTP answer: {e}")),
            ureq::Error::LargeResponseHeader(_, max) => Below::NotHttp(format!(
                "not an HTTP answer: no end of the head within {max} bytes"
            )),
            e => Below::Other(e.to_string()),
        }
    }
}

impl Below {
    /// The failure's text and what to change, if something in the configuration can
    /// fix it, for the request `what` describes.
    fn shown(&self, what: &str) -> (String, Option<String>) {
        let key = url_key_of(what);
        match self {
            Below::Refused(e) => (
                format!("Connection Failed: {e}"),
                Some(format!(
                    "nothing listens at that address: check the host and port in {key}"
                )),
            ),
            Below::Unreachable(e) => (format!("Connection Failed: {e}"), None),
            Below::NoSuchHost => (
                "Dns Failed: host not found".into(),
                Some(format!("the host name does not resolve: check {key}")),
            ),
            Below::TimedOut(t) => (format!("timed out ({t})"), None),
            Below::NotHttp(text) => (
                shown_text(text, 300),
                Some(format!(
                    "the server did not answer plain HTTP; if it speaks TLS (https), this plugin cannot read it: give a plain http:// URL in {key}"
                )),
            ),
            Below::Other(text) => (shown_text(text, 300), None),
        }
    }
}

/// Why a request failed: the message, and whether no retry can change it.
#[derive(Debug)]
struct Failed {
    message: String,
    permanent: bool,
}

impl From<String> for Failed {
    fn from(message: String) -> Failed {
        Failed {
            message,
            permanent: false,
        }
    }
}

/// The key naming the URL of the request `what` describes (`token: ...` or `GET ...`).
fn url_key_of(what: &str) -> &'static str {
    if what.starts_with("token:") {
        TOKEN_URL_KEY
    } else {
        URL_KEY
    }
}

/// What to change when a metadata service refuses a request with a 4xx `status`.
fn hint_for_status(status: u16, body: &str, what: &str) -> Option<String> {
    let body = body.to_ascii_lowercase();
    if body.contains("metadata-flavor") {
        // GCP: "Missing Metadata-Flavor:Google header."
        return Some(format!(
            "the service wants the header Metadata-Flavor: Google: set {HEADER_PREFIX}Metadata-Flavor = Google"
        ));
    }
    if body.contains("required metadata header") {
        // Azure: "Bad request. Required metadata header not specified"
        return Some(format!(
            "the service wants the header Metadata: true: set {HEADER_PREFIX}Metadata = true"
        ));
    }
    if status == 401 && what.contains("169.254.169.254") && !what.starts_with("token:") {
        // AWS IMDSv2 without a token.
        return Some(format!(
            "AWS IMDSv2 wants a session token: set {TOKEN_URL_KEY} = http://169.254.169.254/latest/api/token, {TOKEN_HEADER_PREFIX}X-aws-ec2-metadata-token-ttl-seconds = 21600 and {TOKEN_INTO_KEY} = X-aws-ec2-metadata-token"
        ));
    }
    match status {
        401 | 403 => Some(format!(
            "the service refused the request: it may want a header ({}<Name>) or a token ({TOKEN_URL_KEY} and {TOKEN_INTO_KEY})",
            if what.starts_with("token:") { TOKEN_HEADER_PREFIX } else { HEADER_PREFIX }
        )),
        404 => Some(format!("nothing at that path: check {}", url_key_of(what))),
        405 if what.starts_with("token:") => Some(format!(
            "the token service does not take this method: check {TOKEN_METHOD_KEY}"
        )),
        _ => None,
    }
}

/// Reads a response body of at most `limit` bytes.
fn read_response(response: Response, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let declared = response.body().content_length();
    read_limited(declared, response.into_body().into_reader(), limit, what)
}

/// Reads at most `limit` bytes from `reader`, refusing a `declared` length or a stream
/// over the limit with the numbers.
fn read_limited(
    declared: Option<u64>,
    reader: impl Read,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    if let Some(len) = declared.filter(|&len| len > limit) {
        return Err(format!(
            "{what}: the answer is {len} bytes, more than the limit of {limit} bytes"
        ));
    }
    let mut body = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{what}: reading the answer: {e}"))?;
    if body.len() as u64 > limit {
        return Err(format!(
            "{what}: the answer is more than {limit} bytes, the limit"
        ));
    }
    Ok(body)
}

/// The targets at `pointer` in `body`, each checked to be `host:port` or
/// `scheme://host:port`.
fn extract_targets(body: &[u8], pointer: &str, shown_url: &str) -> Result<Vec<String>, String> {
    let source = format!("GET {shown_url}");
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{source}: the answer is not valid JSON: {e}"))?;
    let at = pointer_name(pointer);
    let value = doc
        .pointer(pointer)
        .ok_or_else(|| format!("{source}: nothing at JSON pointer {pointer}"))?;
    let mut targets: Vec<(String, String)> = Vec::new();
    match value {
        Value::String(s) => {
            for (i, item) in s.split(',').map(str::trim).enumerate() {
                if !item.is_empty() {
                    targets.push((format!("{at} (item {})", i + 1), item.to_string()));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if s.trim().is_empty() => {}
                    Value::String(s) => targets.push((format!("{pointer}/{i}"), s.trim().into())),
                    other => {
                        return Err(format!(
                            "{source}: {pointer}/{i} is {}, expected a string",
                            brief(other)
                        ))
                    }
                }
                if targets.len() > MAX_TARGETS {
                    break;
                }
            }
        }
        other => {
            return Err(format!(
                "{source}: {at} is {}, expected a string, a comma-separated string or an array of strings",
                brief(other)
            ))
        }
    }
    if targets.is_empty() {
        return Err(format!("{source}: {at} holds no targets"));
    }
    if targets.len() > MAX_TARGETS {
        return Err(format!(
            "{source}: {at} holds more than {MAX_TARGETS} targets, the limit"
        ));
    }
    targets
        .into_iter()
        .map(|(place, t)| match check_target(&t) {
            Ok(()) => Ok(t),
            Err(why) => Err(format!(
                "{source}: {place} = {:?} is not host:port or scheme://host:port: {why}",
                shown_text(&t, 100)
            )),
        })
        .collect()
}

/// Checks that `t` is `host:port` or `scheme://[user@]host:port[/path]`.
fn check_target(t: &str) -> Result<(), &'static str> {
    if t.len() > MAX_TARGET_LEN {
        return Err("longer than 512 characters");
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it holds white space or control characters");
    }
    let rest = match t.split_once("://") {
        Some((scheme, rest)) => {
            if !is_url_scheme(scheme) {
                return Err("bad scheme");
            }
            rest
        }
        None => t,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        if addr.is_empty() {
            return Err("empty host");
        }
        (v6, after.strip_prefix(':').ok_or("missing port")?)
    } else {
        let (host, port) = host_port.rsplit_once(':').ok_or("missing port")?;
        if host.contains(':') {
            return Err("too many colons");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("empty host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// How a pointer is named in messages.
fn pointer_name(pointer: &str) -> String {
    if pointer.is_empty() {
        "the document".into()
    } else {
        format!("JSON pointer {pointer}")
    }
}

/// The value itself, briefly (at most 40 characters), for "found X, expected Y"
/// messages: the operator sees what the document holds, not just its type.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 40 {
        text
    } else {
        format!("{}…", text.chars().take(40).collect::<String>())
    }
}

/// Server-supplied text on one line, at most `max` characters.
fn shown_text(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// `url` as shown in settings and messages: any password replaced by `*****`.
fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("*****"));
    }
    shown.to_string()
}

/// Parses an `http://` URL with a host.
fn http_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let expected = "an http:// URL such as http://169.254.169.254/latest/user-data";
    let url = Url::parse(text).map_err(|e| {
        ConfigError::new(key, &shown_config_url(text), &format!("{expected} ({e})"))
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ConfigError::new(
                key,
                &shown_url(&url),
                &format!("{expected}: this plugin has no TLS stack, so https:// is not supported"),
            ))
        }
        _ => return Err(ConfigError::new(key, &shown_url(&url), expected)),
    }
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(url),
        _ => Err(ConfigError::new(key, &shown_url(&url), expected)),
    }
}

/// A URL that did not parse, with anything that looks like user information hidden.
fn shown_config_url(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://*****{}", &rest[at..]),
                None => text.to_string(),
            }
        }
        None => text.to_string(),
    }
}

/// Empty, or `/`-separated reference tokens where `~` is followed by `0` or `1`.
fn check_pointer(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err("an RFC 6901 JSON pointer: empty, or starting with / such as /brokers");
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("an RFC 6901 JSON pointer: ~ must be followed by 0 (for ~) or 1 (for /)");
        }
    }
    Ok(())
}

/// A duration above zero.
fn positive_duration(config: &Config, key: &str) -> Result<Duration, ConfigError> {
    let d = config.duration(key)?;
    if d.is_zero() {
        return Err(ConfigError::new(
            key,
            config.string(key),
            "a duration above zero, such as 500ms or 2s",
        ));
    }
    Ok(d)
}

/// Headers set under `prefix` (`…header.<Name> = value`), in key order. Blank values
/// are ignored like any unset key.
fn headers(config: &Config, prefix: &str) -> Result<Vec<Header>, ConfigError> {
    let mut out: Vec<Header> = Vec::new();
    for (key, value) in config.iter() {
        let Some(name) = key.strip_prefix(prefix) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let secret = is_secret_header(name);
        let shown_value = if secret { "*****" } else { value };
        check_header_name(name).map_err(|why| ConfigError::new(key, shown_value, why))?;
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            return Err(ConfigError::new(
                key,
                shown_value,
                "a header other than Host, Content-Length, Transfer-Encoding or Connection, which the plugin sets itself",
            ));
        }
        if let Some(first) = out.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
            return Err(ConfigError::new(
                key,
                shown_value,
                &format!("a header not also set by {}", first.key),
            ));
        }
        check_header_value(value).map_err(|why| ConfigError::new(key, shown_value, why))?;
        out.push(Header {
            key: key.to_string(),
            name: name.to_string(),
            value: value.to_string(),
            secret,
        });
    }
    Ok(out)
}

/// Whether a header's value is a secret, from its name.
fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "token",
        "secret",
        "password",
        "key",
        "auth",
        "session",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// An RFC 9110 token: letters, digits and ``!#$%&'*+-.^_`|~``.
fn check_header_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
    if ok {
        Ok(())
    } else {
        Err("a header name of letters, digits and !#$%&'*+-.^_`|~ after the last dot of the key")
    }
}

/// Visible ASCII, spaces and tabs: nothing that could end the header line.
fn check_header_value(value: &str) -> Result<(), &'static str> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        Ok(())
    } else {
        Err("a header value of printable ASCII characters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{BufRead, BufReader, Write},
        net::{TcpListener, TcpStream},
        sync::{
            atomic::{AtomicBool, Ordering},
            Mutex,
        },
        time::Instant,
    };

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_iter(pairs.iter().copied())
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        match Request::from_config(&config(pairs)) {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn targets_from_an_array_a_comma_string_and_a_single_string() {
        let url = "http://h/x";
        let body = br#"{"brokers": ["a.example:4222", " tls://b.example:4223 ", ""],
                        "list": "a:1, b:2,,", "one": "nats://c:3",
                        "we~ird/key": {"x": ["[::1]:4222"]}}"#;
        assert_eq!(
            extract_targets(body, "/brokers", url).unwrap(),
            ["a.example:4222", "tls://b.example:4223"]
        );
        assert_eq!(extract_targets(body, "/list", url).unwrap(), ["a:1", "b:2"]);
        assert_eq!(extract_targets(body, "/one", url).unwrap(), ["nats://c:3"]);
        assert_eq!(
            extract_targets(body, "/we~0ird~1key/x", url).unwrap(),
            ["[::1]:4222"]
        );
        assert_eq!(
            extract_targets(br#"["x:1","y:2"]"#, "", url).unwrap(),
            ["x:1", "y:2"]
        );
    }

    #[test]
    fn bad_documents_say_what_is_wrong_and_where() {
        let url = "http://h/x";
        let e = extract_targets(b"{not json", "/b", url).unwrap_err();
        assert!(
            e.starts_with("GET http://h/x: the answer is not valid JSON"),
            "{e}"
        );
        let e = extract_targets(br#"{"a": 1}"#, "/brokers", url).unwrap_err();
        assert_eq!(e, "GET http://h/x: nothing at JSON pointer /brokers");
        let e = extract_targets(br#"{"b": []}"#, "/b", url).unwrap_err();
        assert_eq!(e, "GET http://h/x: JSON pointer /b holds no targets");
        let e = extract_targets(br#"{"b": " , "}"#, "/b", url).unwrap_err();
        assert_eq!(e, "GET http://h/x: JSON pointer /b holds no targets");
        let e = extract_targets(br#"{"b": ["a:1", 7]}"#, "/b", url).unwrap_err();
        assert_eq!(e, "GET http://h/x: /b/1 is 7, expected a string");
        let e = extract_targets(br#"{"b": {"c": 1}}"#, "/b", url).unwrap_err();
        assert!(
            e.contains("JSON pointer /b is {\"c\":1}, expected a string"),
            "{e}"
        );
        let e = extract_targets(br#"{"b": ["a:1", "evil host:1"]}"#, "/b", url).unwrap_err();
        assert_eq!(
            e,
            "GET http://h/x: /b/1 = \"evil host:1\" is not host:port or scheme://host:port: it holds white space or control characters"
        );
        let e = extract_targets(br#"{"b": "a:1,nohost"}"#, "/b", url).unwrap_err();
        assert!(
            e.contains("JSON pointer /b (item 2) = \"nohost\" is not host:port"),
            "{e}"
        );
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("h{i}:1")).collect();
        let body = serde_json::to_vec(&many).unwrap();
        let e = extract_targets(&body, "", url).unwrap_err();
        assert!(e.contains("more than 100 targets"), "{e}");
    }

    #[test]
    fn targets_are_host_port_or_urls() {
        for good in [
            "a:4222",
            "tls://b.example:4223",
            "nats://u:p@h:4222/p",
            "[::1]:4222",
            "nats://[fe80::1]:4222",
        ] {
            assert_eq!(check_target(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("foo", "missing port"),
            ("a:b:c", "too many colons"),
            ("h:0", "the port must be a number from 1 to 65535"),
            ("h:99999", "the port must be a number from 1 to 65535"),
            ("h:+1", "the port must be a number from 1 to 65535"),
            (":4222", "empty host"),
            ("1x://h:1", "bad scheme"),
            ("[::1:4222", "unclosed [ in the host"),
            ("a:1\n", "it holds white space or control characters"),
        ] {
            assert_eq!(check_target(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn bodies_over_the_limit_are_refused_with_the_numbers() {
        let e = read_limited(Some(2_000_000), &b""[..], MAX_BODY, "GET u").unwrap_err();
        assert_eq!(
            e,
            "GET u: the answer is 2000000 bytes, more than the limit of 1048576 bytes"
        );
        let big = [b' '; 11];
        let e = read_limited(None, &big[..], 10, "GET u").unwrap_err();
        assert_eq!(e, "GET u: the answer is more than 10 bytes, the limit");
        assert_eq!(
            read_limited(None, &big[..10], 10, "GET u").unwrap().len(),
            10
        );
    }

    #[test]
    fn configuration_is_validated_naming_the_key() {
        assert!(err(&[]).starts_with(r#"plugin.provtarget.http.url = "" is not valid"#));
        let e = err(&[(URL_KEY, "ftp://h/x")]);
        assert!(
            e.starts_with("plugin.provtarget.http.url = \"ftp://h/x\""),
            "{e}"
        );
        let e = err(&[(URL_KEY, "https://h/x")]);
        assert!(e.contains("https:// is not supported"), "{e}");
        let e = err(&[(URL_KEY, "not a url")]);
        assert!(
            e.starts_with("plugin.provtarget.http.url = \"not a url\""),
            "{e}"
        );
        let e = err(&[(URL_KEY, "http://u:hunter2@h/x"), (POINTER_KEY, "brokers")]);
        assert!(
            e.starts_with("plugin.provtarget.http.pointer = \"brokers\""),
            "{e}"
        );
        let e = err(&[(URL_KEY, "http://h/x"), (POINTER_KEY, "/a~2")]);
        assert!(e.contains("~ must be followed by 0"), "{e}");
        let e = err(&[(URL_KEY, "http://h/x"), (READ_TIMEOUT_KEY, "soon")]);
        assert!(
            e.starts_with("plugin.provtarget.http.read_timeout = \"soon\""),
            "{e}"
        );
        let e = err(&[(URL_KEY, "http://h/x"), (CONNECT_TIMEOUT_KEY, "0")]);
        assert!(e.contains("above zero"), "{e}");
        let e = err(&[
            (URL_KEY, "http://h/x"),
            ("plugin.provtarget.http.header.Bad Name", "v"),
        ]);
        assert!(
            e.starts_with("plugin.provtarget.http.header.Bad Name = \"v\" is not valid"),
            "{e}"
        );
        let e = err(&[
            (URL_KEY, "http://h/x"),
            (
                "plugin.provtarget.http.header.Authorization",
                "Bearer s3cr3t\u{7}",
            ),
        ]);
        assert!(!e.contains("s3cr3t"), "secret in error: {e}");
        assert!(e.contains("printable ASCII"), "{e}");
        let e = err(&[
            (URL_KEY, "http://h/x"),
            ("plugin.provtarget.http.header.Host", "evil"),
        ]);
        assert!(e.contains("which the plugin sets itself"), "{e}");
        let e = err(&[(URL_KEY, "http://h/x"), (TOKEN_INTO_KEY, "X-Token")]);
        assert!(
            e.starts_with("plugin.provtarget.http.token.url = \"\" is not valid")
                && e.contains("since plugin.provtarget.http.token.into is set"),
            "{e}"
        );
        let e = err(&[(URL_KEY, "http://h/x"), (TOKEN_URL_KEY, "http://h/t")]);
        assert!(
            e.starts_with("plugin.provtarget.http.token.into = \"\""),
            "{e}"
        );
        let e = err(&[
            (URL_KEY, "http://h/x"),
            (TOKEN_URL_KEY, "http://h/t"),
            (TOKEN_INTO_KEY, "X-T"),
            (TOKEN_METHOD_KEY, "DELETE"),
        ]);
        assert!(
            e.starts_with("plugin.provtarget.http.token.method = \"DELETE\""),
            "{e}"
        );
    }

    #[test]
    fn settings_mask_secret_headers_and_url_passwords() {
        let request = Request::from_config(&config(&[
            (URL_KEY, "http://prov:hunter2@169.254.169.254/x"),
            (POINTER_KEY, "/brokers"),
            (
                "plugin.provtarget.http.header.Authorization",
                "Bearer s3cr3t",
            ),
            ("plugin.provtarget.http.header.Metadata-Flavor", "Google"),
            ("plugin.provtarget.http.header.X-Blank", "  "),
            (TOKEN_URL_KEY, "http://169.254.169.254/t"),
            (TOKEN_INTO_KEY, "X-aws-ec2-metadata-token"),
            (
                "plugin.provtarget.http.token.header.X-aws-ec2-metadata-token-ttl-seconds",
                "21600",
            ),
        ]))
        .unwrap();
        let shown: Vec<(String, String)> = request.settings().into_iter().collect();
        let get = |k: &str| {
            shown
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing in {shown:?}"))
        };
        assert_eq!(get(URL_KEY), "http://prov:*****@169.254.169.254/x");
        assert_eq!(get("plugin.provtarget.http.header.Authorization"), "*****");
        assert_eq!(
            get("plugin.provtarget.http.header.Metadata-Flavor"),
            "Google"
        );
        assert_eq!(get(TOKEN_METHOD_KEY), "PUT");
        assert_eq!(get(CONNECT_TIMEOUT_KEY), "2s");
        assert_eq!(get(READ_TIMEOUT_KEY), "5s");
        assert!(!shown.iter().any(|(k, _)| k.ends_with("X-Blank")));
        let all = format!("{shown:?}");
        assert!(!all.contains("s3cr3t") && !all.contains("hunter2"), "{all}");
    }

    /// Cancels once its flag is set; records what the retry loop reports.
    #[derive(Default)]
    struct TestCancel {
        cancelled: AtomicBool,
        failures: Mutex<Vec<String>>,
    }

    impl Cancellation for TestCancel {
        fn is_cancelled(&self) -> bool {
            self.cancelled.load(Ordering::SeqCst)
        }
        fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
            let end = Instant::now() + d;
            while Instant::now() < end {
                if self.is_cancelled() {
                    return Err(Cancelled);
                }
                thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
        fn retrying(&self, _try: usize, error: &dyn fmt::Display, _pause: Duration) {
            self.failures.lock().unwrap().push(error.to_string());
        }
    }

    fn request_to(url: &str, read_timeout: &str) -> Arc<Request> {
        Arc::new(
            Request::from_config(&config(&[
                (URL_KEY, url),
                (POINTER_KEY, "/b"),
                (READ_TIMEOUT_KEY, read_timeout),
            ]))
            .unwrap(),
        )
    }

    /// A server that accepts connections and never answers: only cancellation can end
    /// the call (its read timeout is a minute).
    #[test]
    fn cancellation_ends_a_call_to_a_server_that_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let keep = Arc::clone(&held);
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "60s");
        let cancel = Arc::new(TestCancel::default());
        let canceller = Arc::clone(&cancel);
        let cancelled_at = Arc::new(Mutex::new(None::<Instant>));
        let stamp = Arc::clone(&cancelled_at);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            *stamp.lock().unwrap() = Some(Instant::now());
            canceller.cancelled.store(true, Ordering::SeqCst);
        });
        let err = resolve(&*cancel, &request).unwrap_err();
        let latency = cancelled_at.lock().unwrap().expect("cancelled").elapsed();
        eprintln!("returned {latency:?} after cancellation");
        assert!(err.to_string().starts_with("context canceled"), "{err}");
        assert!(
            !held.lock().unwrap().is_empty(),
            "the server saw no connection"
        );
        // Liveness only: the request's own timeout is a minute away.
        assert!(latency < Duration::from_secs(10), "{latency:?}");
    }

    /// An HTTP server answering its connections in turn with `answers` (status line,
    /// body), returning the request heads it saw.
    fn serve(answers: Vec<(&'static str, &'static str)>) -> (u16, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut heads = Vec::new();
            for (status, body) in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLocation: http://elsewhere/\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                heads.push(head);
            }
            heads
        });
        (port, handle)
    }

    #[test]
    fn failures_are_retried_and_each_reported_once_with_the_cause() {
        // Nothing listens on a port just released: connection refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let e = try_once(&TestCancel::default(), &request).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("GET http://127.0.0.1:{port}/b: Connection Failed")),
            "{e}"
        );

        // 503, then a redirect, then the answer: two failed tries, each reported once.
        let (port, server) = serve(vec![
            ("503 Service Unavailable", "busy"),
            ("302 Found", ""),
            ("200 OK", r#"{"b": "x.example:4222"}"#),
        ]);
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let cancel = TestCancel::default();
        assert_eq!(resolve(&cancel, &request).unwrap(), ["x.example:4222"]);
        let failures = cancel.failures.lock().unwrap().clone();
        assert_eq!(
            failures,
            [
                format!("GET http://127.0.0.1:{port}/b: 503 Service Unavailable"),
                format!("GET http://127.0.0.1:{port}/b: 302 Found; redirects are not followed (Location: http://elsewhere/)"),
            ]
        );
        let heads = server.join().unwrap();
        assert_eq!(heads.len(), 3);
        assert!(heads[0].starts_with("GET /b HTTP/1.1\r\n"), "{heads:?}");
    }

    #[test]
    fn refusals_and_failures_name_the_fix() {
        use provtarget_abi::testkit::{self, TestHost};
        // GCP's metadata server without its header: 403 with the reason in the body.
        let (port, server) = serve(vec![(
            "403 Forbidden",
            "Missing Metadata-Flavor:Google header.",
        )]);
        let url = format!("http://127.0.0.1:{port}/computeMetadata/v1/instance/attributes/brokers");
        let host = TestHost::new().instant_sleeps().cancel_after_sleeps(1);
        let (r, _) = testkit::configure::<HttpResolver>(&host, &[(URL_KEY, &url)]).unwrap();
        let err = r.targets(&host.context()).unwrap_err();
        // A header the configuration does not send: no retry can change it.
        assert!(provtarget_abi::is_permanent(&*err), "{err}");
        assert!(host.sleeps().is_empty(), "retried: {:?}", host.sleeps());
        assert_eq!(
            err.to_string(),
            format!("GET {url}: 403 Forbidden; the service wants the header Metadata-Flavor: Google: set plugin.provtarget.http.header.Metadata-Flavor = Google")
        );
        server.join().unwrap();

        // Azure's IMDS without "Metadata: true".
        let (port, server) = serve(vec![(
            "400 Bad Request",
            r#"{"error":"Bad request. Required metadata header not specified"}"#,
        )]);
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let e = try_once(&TestCancel::default(), &request)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("; the service wants the header Metadata: true: set plugin.provtarget.http.header.Metadata = true"),
            "{e}"
        );
        server.join().unwrap();

        // A bare 403: which settings can carry what it wants.
        let (port, server) = serve(vec![("403 Forbidden", "")]);
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let e = try_once(&TestCancel::default(), &request)
            .unwrap_err()
            .to_string();
        assert!(e.contains("403 Forbidden; the service refused the request: it may want a header (plugin.provtarget.http.header.<Name>) or a token"), "{e}");
        server.join().unwrap();

        // Refused: which key names the address.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let e = try_once(&TestCancel::default(), &request)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("; nothing listens at that address: check the host and port in plugin.provtarget.http.url"),
            "{e}"
        );

        // A TLS port spoken to in clear: it answers with a TLS alert, not HTTP.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            // A TLS "protocol version" alert record, then close.
            let _ = s.write_all(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]);
        });
        let request = request_to(&format!("http://127.0.0.1:{port}/b"), "5s");
        let e = try_once(&TestCancel::default(), &request)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("if it speaks TLS (https), this plugin cannot read it"),
            "{e}"
        );
        tls.join().unwrap();
    }

    #[test]
    fn imdsv2_without_a_token_is_told_the_token_settings() {
        let hint = hint_for_status(401, "", "GET http://169.254.169.254/latest/user-data").unwrap();
        assert!(hint.starts_with("AWS IMDSv2 wants a session token: set plugin.provtarget.http.token.url = http://169.254.169.254/latest/api/token"), "{hint}");
        assert_eq!(hint_for_status(500, "", "GET http://h/"), None);
        assert_eq!(
            hint_for_status(404, "", "token: PUT http://h/t").unwrap(),
            "nothing at that path: check plugin.provtarget.http.token.url"
        );
    }
}
