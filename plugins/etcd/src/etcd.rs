//! The etcd v3 JSON API (the gRPC gateway, etcd 3.4+): range, watch and authenticate,
//! with fail-over between the cluster's members.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Mutex,
    },
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use provtarget_abi::{Cancellation, Context};
use serde_json::{json, Value};

use crate::{
    http::{Endpoint, Exchange, Fault, Http, HttpError, Post},
    refusal::{ErrorAnswer, Refusal},
};

/// Largest unary answer read (a range of up to 1,000 keys of small values).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Largest single message on a watch stream.
const MAX_WATCH_MESSAGE: usize = 1024 * 1024;
/// A watch is re-established after this long (ranging again first), so a member that
/// silently lost its cluster cannot keep the plugin waiting for ever.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_secs(30);

/// While a watch waits, its member is asked for its status this often, so a member that
/// hangs is noticed within this plus the request timeout.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What to read: one key, or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Query {
    Key(String),
    Prefix(String),
}

impl Query {
    fn range_body(&self, limit: usize) -> Value {
        match self {
            Query::Key(k) => json!({ "key": B64.encode(k) }),
            Query::Prefix(p) => json!({
                "key": B64.encode(p),
                "range_end": B64.encode(crate::values::prefix_end(p.as_bytes())),
                "limit": limit,
            }),
        }
    }

    fn watch_body(&self, start_revision: u64) -> Value {
        let mut req = json!({ "start_revision": start_revision.to_string() });
        match self {
            Query::Key(k) => req["key"] = B64.encode(k).into(),
            Query::Prefix(p) => {
                req["key"] = B64.encode(p).into();
                req["range_end"] = B64.encode(crate::values::prefix_end(p.as_bytes())).into();
            }
        }
        json!({ "create_request": req })
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Key(k) => write!(f, "key {k:?}"),
            Query::Prefix(p) => write!(f, "prefix {p:?}"),
        }
    }
}

/// Why a call to one member failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The host cancelled.
    Cancelled,
    /// This member is unreachable or unhealthy: try the next.
    Member(String),
    /// The cluster answered with an error another member would repeat (bad
    /// credentials, permission denied): stop and report it.
    Answer(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Cancelled => f.write_str("context canceled"),
            CallError::Member(e) | CallError::Answer(e) => f.write_str(e),
        }
    }
}

/// The keys and values of one range, and the store revision it was read at.
#[derive(Debug, Default)]
pub(crate) struct Range {
    pub kvs: Vec<(String, Vec<u8>)>,
    pub revision: u64,
    /// The member that answered (index into the endpoints).
    pub member: usize,
}

/// How a watch ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// The watched key was put: its new value, taken from the event itself (no second
    /// request needed). Only for [`Query::Key`].
    Put(Vec<u8>),
    /// Something else changed under the watched key(s) (or etcd cancelled the watch):
    /// range again.
    Changed,
    /// [`WATCH_PERIOD`] passed quietly.
    Quiet,
}

/// What a request needs from its caller: cancellation (polled every 50 ms while a
/// request waits) and the host's log. The host's [`Context`] is one; a [`Racer`] is another.
pub(crate) trait Io: Sync {
    /// The cancellation the request's reads poll.
    fn cancel(&self) -> &(dyn Cancellation + Sync);
    /// Logs at debug level.
    fn debug(&self, message: fmt::Arguments<'_>);
    /// Logs at info level.
    fn info(&self, message: fmt::Arguments<'_>);
}

impl Io for Context<'_> {
    fn cancel(&self) -> &(dyn Cancellation + Sync) {
        self
    }
    fn debug(&self, message: fmt::Arguments<'_>) {
        Context::debug(self, message)
    }
    fn info(&self, message: fmt::Arguments<'_>) {
        Context::info(self, message)
    }
}

/// One request of a race between members: cancelled when the host cancels or when
/// the race is over (another member answered), so the losers end within 50 ms.
struct Racer<'a, 'c> {
    ctx: &'a Context<'c>,
    over: &'a AtomicBool,
    /// Also cancelled once this passes.
    until: Option<Instant>,
}

impl Cancellation for Racer<'_, '_> {
    fn is_cancelled(&self) -> bool {
        self.over.load(Ordering::SeqCst)
            || self.ctx.is_cancelled()
            || self.until.is_some_and(|u| Instant::now() >= u)
    }
    fn sleep(&self, duration: Duration) -> Result<(), provtarget_abi::Cancelled> {
        let end = Instant::now() + duration;
        loop {
            if self.is_cancelled() {
                return Err(provtarget_abi::Cancelled);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.ctx.sleep(left.min(Duration::from_millis(50)))?;
        }
    }
}

impl Io for Racer<'_, '_> {
    fn cancel(&self) -> &(dyn Cancellation + Sync) {
        self
    }
    fn debug(&self, message: fmt::Arguments<'_>) {
        self.ctx.debug(message)
    }
    fn info(&self, message: fmt::Arguments<'_>) {
        self.ctx.info(message)
    }
}

/// One range race: who asks, until when, in which order, and who failed why.
struct Race<'a, 'c> {
    ctx: &'a Context<'c>,
    until: Option<Instant>,
    order: Vec<usize>,
    failures: Vec<(usize, String)>,
}

/// The member that answered a race first, its answer, and the members still running.
type Won = (usize, Value, Vec<usize>);

/// A client for one etcd cluster.
pub(crate) struct Client {
    pub endpoints: Vec<Endpoint>,
    /// The member tried first: the last one that answered.
    current: AtomicUsize,
    /// `(username, password)` when etcd auth is on.
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// Timeouts, TLS: what every request shares.
    http: Http,
    /// Connect and per-request timeout.
    timeout: Duration,
    /// How long a member has to answer a range before the next one is asked as well.
    failover_after: Duration,
    /// Members already reported as failed or slow this run.
    warned: Mutex<HashSet<usize>>,
}

/// The configuration keys named in authentication errors.
const CREDENTIAL_KEYS: &str = "plugin.provtarget.etcd.username / plugin.provtarget.etcd.password";

impl Client {
    pub fn new(
        endpoints: Vec<Endpoint>,
        credentials: Option<(String, String)>,
        tls: Option<crate::http::TlsSettings>,
        timeout: Duration,
        failover_after: Duration,
    ) -> Client {
        Client {
            endpoints,
            current: AtomicUsize::new(0),
            credentials,
            token: Mutex::new(None),
            http: Http::new(timeout, tls),
            timeout,
            failover_after,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Reads `query` from the members in turn, starting with the last one that
    /// answered, with a head start: when a member has not answered within
    /// `failover_after` (or as soon as it fails), the next one is asked as well; the
    /// first answer wins and the requests still running are dropped. So a hung or dead
    /// member costs about `failover_after` per call, not the whole timeout. A member
    /// that failed or was slow while another answered is logged once per run, at warn.
    /// Fails when every member failed (with each one's cause) or the cluster refused
    /// the request.
    pub fn range(&self, ctx: &Context<'_>, query: &Query) -> Result<Range, CallError> {
        self.range_until(ctx, query, None)
    }

    /// [`Client::range`], given up (as cancelled) once `until` passes.
    pub fn range_until(
        &self,
        ctx: &Context<'_>,
        query: &Query,
        until: Option<Instant>,
    ) -> Result<Range, CallError> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let body = query.range_body(crate::values::MAX_TARGETS + 1);
        let mut race = Race {
            ctx,
            until,
            order: (0..n).map(|i| (first + i) % n).collect(),
            failures: Vec::new(),
        };
        match self.race(&mut race, &body) {
            Some(Ok(won)) => self.won(ctx, &race.failures, won),
            Some(Err(e)) => Err(e),
            None => {
                // Next time start after the member tried first.
                self.current.store((first + 1) % n, Ordering::Relaxed);
                let causes: Vec<String> = race.failures.into_iter().map(|(_, e)| e).collect();
                Err(CallError::Member(if n == 1 {
                    causes.join("")
                } else {
                    format!("no etcd member answered: {}", causes.join("; "))
                }))
            }
        }
    }

    /// Runs a range race: members asked in `race.order`, each after the previous had
    /// `failover_after` (or at once when it failed). `None` when every member failed
    /// (their causes in `race.failures`).
    fn race(&self, race: &mut Race<'_, '_>, body: &Value) -> Option<Result<Won, CallError>> {
        let (ctx, until) = (race.ctx, race.until);
        let stop = || ctx.is_cancelled() || until.is_some_and(|u| Instant::now() >= u);
        let n = race.order.len();
        let over = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<Value, CallError>)>();
        std::thread::scope(|scope| {
            let (mut started, mut running) = (0usize, Vec::new());
            let mut next_at = Instant::now();
            loop {
                let now = Instant::now();
                if started < n && (running.is_empty() || now >= next_at) {
                    let member = race.order[started];
                    started += 1;
                    running.push(member);
                    next_at = now + self.failover_after;
                    let (tx, over) = (tx.clone(), &over);
                    scope.spawn(move || {
                        let racer = Racer { ctx, over, until };
                        let ep = &self.endpoints[member];
                        let _ = tx.send((member, self.call(&racer, ep, "/v3/kv/range", body)));
                    });
                    continue;
                }
                if running.is_empty() {
                    return None;
                }
                let wait = if started < n {
                    next_at.saturating_duration_since(now)
                } else {
                    Duration::from_millis(50)
                };
                let outcome = match rx.recv_timeout(wait.min(Duration::from_millis(50))) {
                    Ok((member, result)) => {
                        running.retain(|m| *m != member);
                        match result {
                            Ok(v) => Some(Ok((member, v, running.clone()))),
                            Err(CallError::Member(e)) => {
                                race.failures.push((member, e));
                                // Fail over at once rather than at the head start's end.
                                next_at = Instant::now();
                                None
                            }
                            // Only the host's cancellation: the race is not over yet.
                            Err(CallError::Cancelled) if !stop() => None,
                            Err(e) => Some(Err(e)),
                        }
                    }
                    Err(_) if stop() => Some(Err(CallError::Cancelled)),
                    Err(_) => None,
                };
                if outcome.is_some() {
                    over.store(true, Ordering::SeqCst);
                    return outcome;
                }
            }
        })
    }

    /// The winner of a race: remembered as the member to try first, the others that
    /// failed or were slow named once, its answer parsed.
    fn won(
        &self,
        ctx: &Context<'_>,
        failures: &[(usize, String)],
        (member, v, slow): Won,
    ) -> Result<Range, CallError> {
        self.current.store(member, Ordering::Relaxed);
        let ep = &self.endpoints[member];
        for (m, why) in failures {
            self.warn_once(
                ctx,
                *m,
                format_args!(
                    "etcd member {} failed ({why}); {} answered instead",
                    self.endpoints[*m].url, ep.url
                ),
            );
        }
        for m in slow {
            self.warn_once(
                ctx,
                m,
                format_args!(
                    "etcd member {} gave no answer within {} ms (plugin.provtarget.etcd.failover_after); {} answered instead",
                    self.endpoints[m].url,
                    self.failover_after.as_millis(),
                    ep.url
                ),
            );
        }
        let mut range = parse_range(&v)
            .map_err(|e| CallError::Answer(format!("etcd at {} answered garbage: {e}", ep.url)))?;
        range.member = member;
        Ok(range)
    }

    /// Logs `message` at warn, once per run for `member`.
    fn warn_once(&self, ctx: &Context<'_>, member: usize, message: fmt::Arguments<'_>) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.insert(member) {
            ctx.warn(message);
        }
    }

    /// Marks `member` as failed, so the next range starts with the member after it.
    pub fn fail_over(&self, member: usize) {
        let n = self.endpoints.len();
        let _ = self.current.compare_exchange(
            member % n,
            (member + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Watches `query` on `member` from `start_revision`, until something changes,
    /// [`WATCH_PERIOD`] passes, the member fails or the host cancels (checked every
    /// 50 ms). `on_created` runs once etcd confirms the watch.
    ///
    /// While it waits, the member is asked for its status every [`PROBE_EVERY`]: a
    /// member that stops answering without closing the connection (hung, or cut off by
    /// the network) ends the watch with an error within about `PROBE_EVERY + timeout`,
    /// so the caller moves to the next member instead of waiting for the re-watch.
    pub fn watch(
        &self,
        ctx: &Context<'_>,
        member: usize,
        query: &Query,
        start_revision: u64,
        on_created: &dyn Fn(&Endpoint),
    ) -> Result<WatchEnd, CallError> {
        let ep = &self.endpoints[member];
        let dead = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let why: Mutex<Option<String>> = Mutex::new(None);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let prober = Racer {
                    ctx,
                    over: &done,
                    until: None,
                };
                loop {
                    if prober.sleep(PROBE_EVERY).is_err() {
                        return;
                    }
                    match self.exchange(&prober, ep, "/v3/maintenance/status", None, b"{}") {
                        // Any answer, even a refusal, shows the member is alive.
                        Ok(_) => {}
                        Err(CallError::Member(e)) if !prober.is_cancelled() => {
                            *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            dead.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(_) => return,
                    }
                }
            });
            let watcher = Racer {
                ctx,
                over: &dead,
                until: None,
            };
            let result = self.watch_on(&watcher, member, query, start_revision, on_created);
            done.store(true, Ordering::SeqCst);
            if dead.load(Ordering::SeqCst) && !ctx.is_cancelled() {
                let why = why
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_default();
                return Err(CallError::Member(format!(
                    "etcd at {} stopped answering while watched ({why})",
                    ep.url
                )));
            }
            result
        })
    }

    /// The watch itself, reading with `io`'s cancellation.
    fn watch_on(
        &self,
        io: &dyn Io,
        member: usize,
        query: &Query,
        start_revision: u64,
        on_created: &dyn Fn(&Endpoint),
    ) -> Result<WatchEnd, CallError> {
        let ctx = io;
        let ep = &self.endpoints[member];
        let token = self.token(ctx, ep)?;
        let body = serde_json::to_vec(&query.watch_body(start_revision)).unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        let post = Post {
            path: "/v3/watch",
            token: token.as_deref(),
            body: &body,
            streaming: true,
        };
        let mut conn = Exchange::start(&self.http, ep, &post, ctx.cancel(), deadline)
            .map_err(|e| member_error(ep, "watch", e))?;
        if conn.status != 200 {
            let body = conn.body(MAX_ANSWER).unwrap_or_default();
            return Err(self.status_error(ep, conn.status, &body));
        }
        conn.set_deadline(Instant::now() + WATCH_PERIOD);
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let piece = match conn.next_piece(MAX_WATCH_MESSAGE) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(CallError::Member(format!(
                        "etcd at {} ended the watch stream",
                        ep.url
                    )))
                }
                Err(HttpError::Deadline) => return Ok(WatchEnd::Quiet),
                Err(e) => return Err(member_error(ep, "watch", e)),
            };
            pending.extend_from_slice(&piece);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(end) = self.watch_message(ep, query, &line, on_created)? {
                    return Ok(end);
                }
            }
            if pending.len() > MAX_WATCH_MESSAGE {
                return Err(CallError::Member(format!(
                    "etcd at {} sent a watch message larger than {MAX_WATCH_MESSAGE} bytes",
                    ep.url
                )));
            }
        }
    }

    /// One message of a watch stream: how the watch ended, or `None` to read on.
    fn watch_message(
        &self,
        ep: &Endpoint,
        query: &Query,
        line: &[u8],
        on_created: &dyn Fn(&Endpoint),
    ) -> Result<Option<WatchEnd>, CallError> {
        let msg: Value = serde_json::from_slice(line).map_err(|e| {
            CallError::Member(format!(
                "etcd at {} sent a watch message that is not JSON: {e}",
                ep.url
            ))
        })?;
        if let Some(err) = msg.get("error") {
            let answer = ErrorAnswer::of_stream(err);
            if answer.kind == Refusal::InvalidToken {
                self.forget_token();
            }
            return Err(CallError::Member(format!(
                "etcd at {} ended the watch: {}",
                ep.url, answer.text
            )));
        }
        let result = msg.get("result").unwrap_or(&Value::Null);
        if result.get("created").and_then(Value::as_bool) == Some(true) {
            on_created(ep);
        }
        let events = result.get("events").and_then(Value::as_array);
        if let (Query::Key(_), Some(last)) = (query, events.and_then(|e| e.last())) {
            // A PUT event (the type is omitted for PUT, the enum's zero) carries the
            // new value.
            let is_put = match last.get("type") {
                None => true,
                Some(t) => t == "PUT",
            };
            if is_put {
                if let Some(v) = last.pointer("/kv/value").and_then(Value::as_str) {
                    if let Ok(value) = B64.decode(v) {
                        return Ok(Some(WatchEnd::Put(value)));
                    }
                }
            }
        }
        let has_events = events.is_some_and(|e| !e.is_empty());
        if has_events || result.get("canceled").and_then(Value::as_bool) == Some(true) {
            return Ok(Some(WatchEnd::Changed));
        }
        Ok(None)
    }

    /// One unary call to `ep`, authenticating first when credentials are set, and once
    /// more when etcd says the token is no longer valid.
    fn call(
        &self,
        ctx: &dyn Io,
        ep: &Endpoint,
        path: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        for attempt in 0..2 {
            let token = self.token(ctx, ep)?;
            let (status, answer) = self.exchange(ctx, ep, path, token.as_deref(), &body)?;
            if status == 200 {
                return serde_json::from_slice(&answer).map_err(|e| {
                    CallError::Member(format!(
                        "etcd at {} answered with invalid JSON: {e}",
                        ep.url
                    ))
                });
            }
            let answer = ErrorAnswer::parse(status, &answer);
            let retry = answer.kind == Refusal::InvalidToken;
            if retry && attempt == 0 && self.credentials.is_some() {
                ctx.info(format_args!(
                    "etcd at {} no longer accepts our token; authenticating again",
                    ep.url
                ));
                self.forget_token();
                continue;
            }
            return Err(self.refused(ep, &answer));
        }
        unreachable!("the loop returns")
    }

    fn exchange(
        &self,
        ctx: &dyn Io,
        ep: &Endpoint,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), CallError> {
        let deadline = Instant::now() + self.timeout;
        let what = path.trim_start_matches("/v3/");
        let post = Post {
            path,
            token,
            body,
            streaming: false,
        };
        let mut conn = Exchange::start(&self.http, ep, &post, ctx.cancel(), deadline)
            .map_err(|e| member_error(ep, what, e))?;
        let answer = conn
            .body(MAX_ANSWER)
            .map_err(|e| member_error(ep, what, e))?;
        Ok((conn.status, answer))
    }

    /// The auth token to send to `ep`, authenticating when there is none yet.
    fn token(&self, ctx: &dyn Io, ep: &Endpoint) -> Result<Option<String>, CallError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(t));
        }
        let body =
            serde_json::to_vec(&json!({ "name": user, "password": password })).unwrap_or_default();
        let (status, answer) = self.exchange(ctx, ep, "/v3/auth/authenticate", None, &body)?;
        if status != 200 {
            let answer = ErrorAnswer::parse(status, &answer);
            if answer.kind == Refusal::AuthNotEnabled {
                ctx.debug(format_args!(
                    "etcd at {} has authentication off; sending no token",
                    ep.url
                ));
                return Ok(None);
            }
            return Err(match self.refused(ep, &answer) {
                CallError::Answer(_) => CallError::Answer(format!(
                    "etcd at {} refused user {user:?} ({CREDENTIAL_KEYS}): {}",
                    ep.url, answer.text
                )),
                other => other,
            });
        }
        let token = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(String::from))
            .filter(|t| !t.is_empty() && t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                CallError::Member(format!("etcd at {} returned no usable auth token", ep.url))
            })?;
        ctx.debug(format_args!(
            "authenticated to etcd at {} as {user:?}",
            ep.url
        ));
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A non-200 answer: see [`Client::refused`].
    fn status_error(&self, ep: &Endpoint, status: u16, body: &[u8]) -> CallError {
        self.refused(ep, &ErrorAnswer::parse(status, body))
    }

    /// An error answer as the caller's error: the member's trouble (fail over) or the
    /// cluster's answer (stop), by its kind ([`Refusal::fails_over`]), with the fix.
    fn refused(&self, ep: &Endpoint, answer: &ErrorAnswer) -> CallError {
        let text = &answer.text;
        match answer.kind {
            Refusal::TlsPort => CallError::Member(format!(
                "etcd at {} answered {text}: the member speaks TLS on this port: write https:// for it in plugin.provtarget.etcd.endpoints",
                ep.url
            )),
            kind if kind.fails_over() => {
                CallError::Member(format!("etcd at {} failed: {text}", ep.url))
            }
            Refusal::NoUser => CallError::Answer(format!(
                "etcd at {} requires authentication: set {CREDENTIAL_KEYS} ({text})",
                ep.url
            )),
            Refusal::UnknownUser if self.credentials.is_none() => CallError::Answer(format!(
                "etcd at {} requires authentication: set {CREDENTIAL_KEYS} ({text})",
                ep.url
            )),
            Refusal::PermissionDenied => {
                let user = self
                    .credentials
                    .as_ref()
                    .map(|c| c.0.as_str())
                    .unwrap_or("");
                CallError::Answer(format!(
                    "etcd at {} denied user {user:?} read access ({text}); grant it a role that may read the key (plugin.provtarget.etcd.username)",
                    ep.url
                ))
            }
            _ => CallError::Answer(format!("etcd at {} refused the request: {text}", ep.url)),
        }
    }
}

fn member_error(ep: &Endpoint, what: &str, e: HttpError) -> CallError {
    match e {
        HttpError::Cancelled => CallError::Cancelled,
        HttpError::Deadline => CallError::Member(format!(
            "etcd at {} did not answer the {what} request in time",
            ep.url
        )),
        HttpError::Io(e) => CallError::Member(format!("etcd at {} ({what}): {e}", ep.url)),
        HttpError::Failed(fault, e) => CallError::Member(match fix_for(fault, ep) {
            Some(fix) => format!("etcd at {} ({what}): {e}; {fix}", ep.url),
            None => format!("etcd at {} ({what}): {e}", ep.url),
        }),
    }
}

/// What to change for a connection or TLS failure, naming the setting.
fn fix_for(fault: Fault, ep: &Endpoint) -> Option<String> {
    const ENDPOINTS: &str = "plugin.provtarget.etcd.endpoints";
    const CLIENT_CERT: &str =
        "set plugin.provtarget.etcd.tls_cert and plugin.provtarget.etcd.tls_key";
    match fault {
        Fault::UnknownIssuer => Some(
            "the member's certificate is not signed by a CA this plugin trusts: set plugin.provtarget.etcd.tls_ca to the CA bundle that signed it"
                .into(),
        ),
        Fault::WrongName => Some(format!(
            "the member's certificate does not name {}: use a name it was issued for in {ENDPOINTS}",
            ep.host
        )),
        Fault::Expired => {
            Some("the member's certificate has expired (or this host's clock is wrong)".into())
        }
        Fault::ClientCertWanted => Some(format!(
            "the member wants a client certificate it trusts: {CLIENT_CERT}"
        )),
        // A member that wants a client certificate may close the connection after the
        // handshake, before its alert is read.
        Fault::Closed if ep.tls => Some(format!(
            "the member closed the TLS connection: if it wants a client certificate, {CLIENT_CERT}"
        )),
        Fault::NotTls if ep.tls => Some(format!(
            "the member does not speak TLS on this port: write http:// for {} in {ENDPOINTS}",
            ep.url
        )),
        Fault::NotHttp if !ep.tls => Some(format!(
            "if the member speaks TLS on this port, write https:// for {} in {ENDPOINTS}",
            ep.url
        )),
        Fault::Refused => Some(format!(
            "nothing listens at {}:{}: check {ENDPOINTS}",
            ep.host, ep.port
        )),
        _ => None,
    }
}

/// `{"header": {"revision": "7"}, "kvs": [{"key": b64, "value": b64}], "more": false}`.
fn parse_range(v: &Value) -> Result<Range, String> {
    let revision = v
        .get("header")
        .and_then(|h| h.get("revision"))
        .and_then(int64)
        .ok_or("no header.revision")?;
    let mut kvs = Vec::new();
    if let Some(list) = v.get("kvs") {
        let list = list.as_array().ok_or("kvs is not a list")?;
        for kv in list {
            let key = kv.get("key").and_then(Value::as_str).unwrap_or("");
            let key = B64
                .decode(key)
                .map_err(|e| format!("a key is not base64: {e}"))?;
            let value = kv.get("value").and_then(Value::as_str).unwrap_or("");
            let value = B64
                .decode(value)
                .map_err(|e| format!("a value is not base64: {e}"))?;
            kvs.push((String::from_utf8_lossy(&key).into_owned(), value));
        }
    }
    Ok(Range {
        kvs,
        revision,
        member: 0,
    })
}

/// etcd's JSON gives int64 as strings; accept numbers too.
fn int64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_parse() {
        let v = json!({"header": {"cluster_id": "1", "revision": "7"}, "kvs": [
            {"key": B64.encode("b/1"), "value": B64.encode("a:1"), "mod_revision": "5"}
        ], "count": "1"});
        let r = parse_range(&v).unwrap();
        assert_eq!(r.revision, 7);
        assert_eq!(r.kvs, [("b/1".to_string(), b"a:1".to_vec())]);
        let r = parse_range(&json!({"header": {"revision": 3}})).unwrap();
        assert!(r.kvs.is_empty() && r.revision == 3);
        assert!(parse_range(&json!({"kvs": []})).is_err());
        assert!(
            parse_range(&json!({"header": {"revision": "1"}, "kvs": [{"key": "!!"}]})).is_err()
        );
    }

    #[test]
    fn request_bodies() {
        let q = Query::Prefix("brokers/".into());
        let body = q.range_body(1001);
        assert_eq!(body["range_end"], B64.encode("brokers0"));
        assert_eq!(body["limit"], 1001);
        let w = Query::Key("k".into()).watch_body(8);
        assert_eq!(
            w,
            json!({"create_request": {"key": B64.encode("k"), "start_revision": "8"}})
        );
    }

    #[test]
    fn error_answers() {
        let c = Client::new(
            vec![Endpoint::parse("http://127.0.0.1:1").unwrap()],
            None,
            None,
            Duration::from_secs(1),
            Duration::from_millis(250),
        );
        let ep = &c.endpoints[0];
        assert!(matches!(
            c.status_error(ep, 503, b"{}"),
            CallError::Member(_)
        ));
        assert!(matches!(
            c.status_error(ep, 503, br#"{"code":14,"message":"etcdserver: no leader"}"#),
            CallError::Member(_)
        ));
        let e = c.status_error(
            ep,
            400,
            br#"{"code":3,"message":"etcdserver: user name is empty"}"#,
        );
        assert!(
            matches!(&e, CallError::Answer(m) if m.contains("plugin.provtarget.etcd.username")),
            "{e}"
        );
    }

    #[test]
    fn connection_and_tls_failures_name_the_setting_to_fix() {
        let http = Endpoint::parse("http://127.0.0.1:2379").unwrap();
        let https = Endpoint::parse("https://etcd1.example.net:2379").unwrap();
        let shown = |fault: Fault, e: &str, ep: &Endpoint| match member_error(
            ep,
            "kv/range",
            HttpError::Failed(fault, e.into()),
        ) {
            CallError::Member(m) => m,
            other => panic!("{other}"),
        };
        assert_eq!(
            shown(
                Fault::Refused,
                "cannot connect: Connection refused (os error 111)",
                &http
            ),
            "etcd at http://127.0.0.1:2379 (kv/range): cannot connect: Connection refused (os error 111); nothing listens at 127.0.0.1:2379: check plugin.provtarget.etcd.endpoints"
        );
        assert!(shown(
            Fault::UnknownIssuer,
            "connection failed: invalid peer certificate: UnknownIssuer",
            &https
        )
        .ends_with("set plugin.provtarget.etcd.tls_ca to the CA bundle that signed it"));
        assert!(shown(
            Fault::ClientCertWanted,
            "connection failed: received fatal alert: BadCertificate",
            &https
        )
        .ends_with("set plugin.provtarget.etcd.tls_cert and plugin.provtarget.etcd.tls_key"));
        assert!(shown(Fault::NotHttp, "connection closed mid-response", &http)
            .ends_with("if the member speaks TLS on this port, write https:// for http://127.0.0.1:2379 in plugin.provtarget.etcd.endpoints"));
        assert!(shown(Fault::NotTls, "connection failed: received corrupt message of type InvalidContentType", &https)
            .ends_with("the member does not speak TLS on this port: write http:// for https://etcd1.example.net:2379 in plugin.provtarget.etcd.endpoints"));
        assert!(shown(Fault::WrongName, "invalid peer certificate: NotValidForName", &https)
            .ends_with("does not name etcd1.example.net: use a name it was issued for in plugin.provtarget.etcd.endpoints"));
        // A member that wants a client certificate may close the connection after the
        // handshake before its alert is read: the fix is named over TLS only.
        let closed = "connection failed: Broken pipe (os error 32)";
        assert!(shown(Fault::Closed, closed, &https)
            .ends_with("if it wants a client certificate, set plugin.provtarget.etcd.tls_cert and plugin.provtarget.etcd.tls_key"));
        assert_eq!(
            shown(Fault::Closed, closed, &http),
            "etcd at http://127.0.0.1:2379 (kv/range): connection failed: Broken pipe (os error 32)"
        );
        // The fault decides, not the words.
        assert_eq!(
            shown(
                Fault::Other,
                "connection refused, UnknownIssuer, expired",
                &http
            ),
            "etcd at http://127.0.0.1:2379 (kv/range): connection refused, UnknownIssuer, expired"
        );
        let c = Client::new(
            vec![http.clone()],
            None,
            None,
            Duration::from_secs(1),
            Duration::from_millis(250),
        );
        let e = c.status_error(
            &http,
            400,
            b"Client sent an HTTP request to an HTTPS server.",
        );
        assert!(
            matches!(&e, CallError::Member(m) if m.ends_with("write https:// for it in plugin.provtarget.etcd.endpoints")),
            "{e}"
        );
    }
}
