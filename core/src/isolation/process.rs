//! A resolver that lives in a child process for its whole life: [`ProcessResolver`]
//! (the host's side, a native [`TargetResolver`], with its restart policy) and the
//! start of its children; the child's side is `super::server` (`provtarget
//! __serve`).
//!
//! Transport: one Unix stream socket, the child's stdin (the child moves it to a
//! descriptor of its own and puts `/dev/null` at 0 before any plugin code runs, so a
//! plugin that reads stdin or prints cannot touch the protocol). A child starts
//! knowing nothing, so it can be started ahead of need ([`Spare`](super::resolver_child::Spare),
//! [`Helper::prestart`]): the host hands it the sealed in-memory copy of a library
//! that passed every check as an `SCM_RIGHTS` descriptor with the first line,
//! `Request::Load`.
//!
//! Protocol (typed JSON lines, `super::protocol`): the child's first line is the
//! `super::protocol::Handshake` (magic cookie, protocol version, and the report of
//! verdict and plugin information). Then each `Request::Configure` or
//! `Request::Targets` gets one `Reply` with its id; `Request::Cancel` cancels
//! the call in progress (the resolver's context is cancelled and its answer, usually
//! its last error, is the reply); a child that does not answer within
//! [`CANCEL_GRACE`] is killed. A line that is not the reply expected breaks the
//! protocol: the child is killed. How a child ended is a `ChildExit`, which the
//! restart policy and the messages read. The child's log lines go to its stderr and
//! are re-logged by the host with the plugin's name.
#![forbid(unsafe_code)]

use std::{
    fmt,
    fs::File,
    io::{IoSlice, Write},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use provtarget_abi::backoff;
use provtarget_loader::{PluginFacts, Prepared, Verdict};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::exit::{Breach, ChildExit};
use super::helper::Helper;
use super::protocol::{send, Answer, Handshake, ProtocolError, Reply, Request};
use super::relay::LogLabel;
use super::resolver_child::{start_child, Next, Running, MAX_LINE};
use super::wire;
use crate::{
    config::DEFAULT_PROBE_TIMEOUT,
    resolver::{config_pairs, RawTargets, ResolveContext, ResolverError, Settings, TargetResolver},
    text::printable,
};

/// How long a cancelled call may take to answer before its child is killed: a little
/// less than the host's own grace for a cancelled resolver (the host's
/// `CANCEL_GRACE`, 2 s), so the answer (the resolver's last error) still reaches the
/// deadline report.
pub const CANCEL_GRACE: Duration = Duration::from_millis(1_800);

/// A plugin's resolver running in a child process, seen as a native resolver.
pub struct ProcessResolver {
    name: String,
    version: String,
    path: PathBuf,
    /// The sealed copy every (re)started child loads.
    image: File,
    helper: Helper,
    config: Option<Settings>,
    state: Mutex<State>,
    /// What the selection took the library to be: every child's handshake must say
    /// the same (name, version, type, interface).
    expected: PluginFacts,
    /// When `expected` came from the verdict cache (no child has loaded it this run):
    /// the cache directory and the developer override, to drop the entry if a child
    /// finds otherwise.
    from_cache: Option<(PathBuf, bool)>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    /// Crashes since the last successful call (for the restart backoff).
    crashes: usize,
    /// No restart before this.
    retry_at: Option<Instant>,
    /// How the last child ended.
    last_end: Option<Down>,
}

/// How one request ended without a normal reply.
enum Lost {
    /// Cancelled; the child answered in time (its reply, usually the resolver's
    /// last error) and keeps running.
    CancelledAnswered(Answer),
    /// Cancelled, and the child did not answer within [`CANCEL_GRACE`]: killed.
    Cancelled,
    /// The child ended, or broke the protocol and was killed.
    Ended(Down),
}

/// Why a resolver process cannot serve: its `Display` is the call's error, logged
/// once by [`ProcessResolver::ended`] (a stop at WARN, anything else at ERROR) and
/// repeated during the restart backoff.
#[derive(Debug)]
enum Down {
    /// No child could be started, or handed its library.
    Start(std::io::Error),
    /// The child ended, or was ended (its breach of the protocol, its silence).
    Exit(ChildExit),
    /// Waiting for the ended child failed.
    Unreaped(std::io::Error),
    /// Its handshake was refused (not a helper, another protocol, no verdict).
    Handshake(ProtocolError),
    /// The plugin it loaded is not the one the selection used: the refusal's words.
    Mismatch(String),
    /// It refused the library (`why`); `cached` when the verdict cache had said
    /// loaded (its entry is dropped).
    Refused {
        /// The child's reason.
        why: String,
        /// Whether the verdict cache had accepted it.
        cached: bool,
    },
}

/// The start of the text of a resolver child stopped by SIGINT, SIGTERM or SIGHUP.
const INTERRUPTED: &str = "the resolver process was interrupted";

impl Down {
    /// Whether it is a stop sent to the process group (Ctrl-C, `timeout`, systemd):
    /// not the plugin's fault.
    fn is_interruption(&self) -> bool {
        matches!(self, Down::Exit(exit) if exit.is_stop())
    }
}

impl fmt::Display for Down {
    /// A crash (`the resolver process crashed: killed by signal 11 (SIGSEGV)`), an
    /// exit, or, for a stop signal, an interruption.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Down::Start(e) => write!(f, "cannot start the resolver process: {e}"),
            Down::Exit(ChildExit::Signal(signal)) if signal.is_stop() => {
                write!(f, "{INTERRUPTED} by {signal}")
            }
            Down::Exit(exit) if exit.is_crash() => {
                write!(f, "the resolver process crashed: {exit}")
            }
            Down::Exit(exit) => write!(f, "the resolver process {exit}"),
            Down::Unreaped(e) => write!(f, "the resolver process ended: {e}"),
            Down::Handshake(e) => write!(f, "{e}"),
            Down::Mismatch(refusal) => f.write_str(refusal),
            Down::Refused { why, cached: true } => write!(
                f,
                "the resolver process refused the plugin its verdict cache accepted: {why}; \
                 the cache entry is dropped"
            ),
            Down::Refused { why, cached: false } => {
                write!(f, "the resolver process could not load the plugin: {why}")
            }
        }
    }
}
impl ProcessResolver {
    /// An adapter for the library `prepared` (approved by a probe that reported
    /// `facts`); no child runs until `configure`. Refused, saying why, without a
    /// sealed copy to hand a child (or a descriptor to keep it).
    pub fn new(
        prepared: &Prepared,
        facts: &PluginFacts,
        helper: &Helper,
    ) -> Result<ProcessResolver, provtarget_loader::Refusal> {
        let p = || printable(&prepared.record().path.to_string_lossy());
        let refuse = |kind, why: String| {
            provtarget_loader::Refusal::new(provtarget_loader::Stage::Load, kind, why)
        };
        let sealed = prepared.sealed_fd().ok_or_else(|| {
            refuse(
                provtarget_loader::RefusalKind::CrashedWhileLoading,
                format!(
                    "{}: cannot run in a resolver process without a sealed in-memory copy; \
                     allow memfd_create and memfd sealing (seccomp or security policy), or \
                     set plugin.provtarget.isolation = none",
                    p()
                ),
            )
        })?;
        let image = sealed.try_clone_to_owned().map_err(|e| {
            refuse(
                provtarget_loader::RefusalKind::Unreadable,
                format!(
                    "{}: cannot keep its sealed copy for the resolver process: {e}",
                    p()
                ),
            )
        })?;
        Ok(ProcessResolver {
            name: facts.info.name.clone(),
            version: facts.info.version.clone(),
            path: prepared.record().path.clone(),
            image: File::from(image),
            helper: helper.clone(),
            config: None,
            state: Mutex::default(),
            expected: facts.clone(),
            from_cache: None,
        })
    }

    /// Marks this adapter's plugin facts as taken from the verdict cache in
    /// `cache_dir` (`insecure`: the developer override), unchecked by any child this
    /// run: the first child's handshake is compared with them, and on a mismatch the
    /// library is refused and its cache entry dropped.
    pub fn described_by_cache(&mut self, cache_dir: Option<PathBuf>, insecure: bool) {
        self.from_cache = cache_dir.map(|dir| (dir, insecure));
    }

    /// Drops the verdict-cache entry of this library (its facts proved wrong).
    fn forget_cache_entry(&self) {
        let Some((dir, insecure)) = &self.from_cache else {
            return;
        };
        let euid = rustix::process::geteuid().as_raw();
        let (cache, _warnings) = provtarget_loader::VerdictCache::open(dir, euid, *insecure);
        if let Some(mut cache) = cache {
            cache.forget(&self.path);
            if let Err(w) = cache.save() {
                tracing::warn!("{w}");
            }
        }
    }

    /// The plugin's name.
    pub fn name_str(&self) -> &str {
        &self.name
    }

    /// Whether a child serves it now (kept from the load that approved it).
    pub fn has_child(&self) -> bool {
        self.state().running.is_some()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a child and reads its handshake: the plugin it loaded must be the one
    /// the selection used.
    fn spawn(&self) -> Result<Running, Down> {
        let launched = launch(
            self.image.as_fd(),
            &self.path,
            &self.helper,
            DEFAULT_PROBE_TIMEOUT,
            None,
        );
        let (running, verdict, actual) = match launched {
            Ok(launched) => launched,
            Err(Launch::Io(e)) => return Err(Down::Start(e)),
            Err(Launch::Exit(exit)) => return Err(Down::Exit(exit)),
            Err(Launch::Refused(e)) => return Err(Down::Handshake(e)),
        };
        if verdict != Verdict::Loaded {
            let cached = self.from_cache.is_some();
            if cached {
                // A cached "loaded" the library's own checks contradict.
                self.forget_cache_entry();
            }
            let why = verdict.reason().unwrap_or("refused").to_string();
            return Err(Down::Refused { why, cached });
        }
        // The cache (or an earlier child) is a hint: what this child loaded must be
        // the plugin the selection used.
        let differences = match &actual {
            Some(actual) => provtarget_loader::cache_mismatch(&self.expected, actual),
            None => Some("no plugin information".to_string()),
        };
        match differences {
            None => Ok(running),
            Some(differences) => {
                self.forget_cache_entry();
                let refusal = provtarget_loader::cache_mismatch_refusal(&self.path, &differences);
                Err(Down::Mismatch(refusal.message))
            }
        }
    }

    /// Sends `request` (made with the next id) and waits for its reply. On
    /// cancellation the child is told to cancel the call and gets [`CANCEL_GRACE`]
    /// to answer; past it, the caller drops (kills) it.
    fn call(
        running: &mut Running,
        ctx: &ResolveContext,
        request: impl FnOnce(u64) -> Request,
    ) -> Result<Answer, Lost> {
        let id = running.next_id;
        running.next_id += 1;
        let request = request(id);
        if send(&running.requests, &request).is_err() {
            // The child is gone; its status says why.
        }
        let mut cancelled_at: Option<Instant> = None;
        loop {
            let line = match running.replies.next(Duration::from_millis(20)) {
                Next::Line(line) => line,
                Next::Timeout => {
                    match cancelled_at {
                        None if ctx.token().is_cancelled() => {
                            cancelled_at = Some(Instant::now());
                            let _ = send(&running.requests, &Request::Cancel);
                        }
                        Some(at) if at.elapsed() >= CANCEL_GRACE => return Err(Lost::Cancelled),
                        _ => {}
                    }
                    continue;
                }
                Next::TooLong => {
                    return Err(breach(Breach::TooLong {
                        what: "a line",
                        max: MAX_LINE,
                    }))
                }
                Next::Closed => return Err(Lost::Ended(ProcessResolver::ended_by(running, ctx))),
            };
            let reply = Reply::decode(&line).map_err(|e| breach(Breach::Malformed(e)))?;
            if reply.id != id {
                // A late answer to an earlier call.
                continue;
            }
            if !request.answered_by(&reply.answer) {
                return Err(breach(Breach::WrongAnswer {
                    asked: request.kind(),
                    got: reply.answer.kind(),
                }));
            }
            return match cancelled_at {
                Some(_) => Err(Lost::CancelledAnswered(reply.answer)),
                None => Ok(reply.answer),
            };
        }
    }

    /// How the child behind `running` ended, once its end of the socket closed.
    fn ended_by(running: &mut Running, ctx: &ResolveContext) -> Down {
        let status = match running.child.wait() {
            Ok(status) => ChildExit::from(status),
            Err(e) => return Down::Unreaped(e),
        };
        if status.is_stop() {
            // Stopped with its process group (Ctrl-C, `timeout`, systemd), this host
            // got the signal too: let its signal handler cancel the call first, so
            // the run ends as the cancellation it is.
            let settle = Instant::now();
            while !ctx.token().is_cancelled() && settle.elapsed() < STOP_SETTLE {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Down::Exit(status)
    }

    /// A child started (or restarted) for a call: a restarted one is configured
    /// again first, unless the call is `configure`. A child that ended is restarted
    /// after Choria's backoff (until then, the call fails at once).
    fn running<'s>(
        &self,
        state: &'s mut MutexGuard<'_, State>,
        ctx: &ResolveContext,
        configuring: bool,
    ) -> Result<&'s mut Running, CallError> {
        if state.running.is_none() {
            if let (Some(at), Some(last)) = (state.retry_at, &state.last_end) {
                let now = Instant::now();
                if now < at {
                    return Err(CallError::BackingOff {
                        last: last.to_string(),
                        wait: at - now,
                    });
                }
            }
            let mut running = self
                .spawn()
                .map_err(|e| CallError::Down(self.ended(state, e)))?;
            if let (Some(config), false) = (&self.config, configuring) {
                let configure = |id| Request::Configure {
                    id,
                    config: config.clone(),
                };
                match ProcessResolver::call(&mut running, ctx, configure) {
                    Ok(Answer::Error(e)) => return Err(CallError::Reconfigure(e)),
                    Ok(_) => {}
                    Err(Lost::Cancelled | Lost::CancelledAnswered(_)) => {
                        return Err(CallError::Cancelled)
                    }
                    Err(Lost::Ended(down)) => return Err(CallError::Down(self.ended(state, down))),
                }
            }
            state.running = Some(running);
        }
        Ok(state.running.as_mut().expect("started above"))
    }

    /// Makes sure a configured child runs, then sends the request `request` makes
    /// for an id; the call's answer (never [`Answer::Error`], which is the `Err`).
    fn request(
        &self,
        ctx: &ResolveContext,
        request: impl Fn(u64) -> Request,
    ) -> Result<Answer, CallError> {
        let mut state = self.state();
        // A restarted child is configured first, unless this is the `configure`.
        let configuring = matches!(request(0), Request::Configure { .. });
        let running = self.running(&mut state, ctx, configuring)?;
        match ProcessResolver::call(running, ctx, &request) {
            Ok(answer) => {
                state.crashes = 0;
                state.retry_at = None;
                match answer {
                    Answer::Error(e) => Err(CallError::Plugin(e)),
                    answer => Ok(answer),
                }
            }
            // The resolver ended when told: its answer (typically "context canceled
            // after N tries; last error: ...") is the call's error.
            Err(Lost::CancelledAnswered(Answer::Error(e))) => Err(CallError::Plugin(e)),
            Err(Lost::CancelledAnswered(_)) => Err(CallError::Cancelled),
            Err(Lost::Cancelled) => {
                // A resolver that ignores cancellation cannot outlive the call: its
                // child is killed, and the next call starts a new one.
                state.running = None;
                Err(CallError::IgnoredCancel)
            }
            Err(Lost::Ended(down)) => {
                state.running = None;
                Err(CallError::Down(self.ended(&mut state, down)))
            }
        }
    }

    /// Records a child's end for the restart backoff; returns the error text.
    fn ended(&self, state: &mut State, down: Down) -> String {
        let delay = backoff::FIVE_SEC.duration(state.crashes);
        state.crashes += 1;
        state.retry_at = Some(Instant::now() + delay);
        let text = down.to_string();
        if down.is_interruption() {
            // A stop is not the plugin's fault: no ERROR line for it.
            tracing::warn!(plugin = self.name.as_str(), "{text}");
        } else {
            tracing::error!(plugin = self.name.as_str(), "{text}");
        }
        state.last_end = Some(down);
        text
    }
}

/// A child that broke the protocol (it is killed when its `Running` is dropped).
fn breach(breach: Breach) -> Lost {
    Lost::Ended(Down::Exit(ChildExit::ProtocolBreach(breach)))
}

/// Why [`launch`] gave no handshake.
enum Launch {
    Io(std::io::Error),
    /// The child ended first, was silent past the deadline, or sent a handshake over
    /// the bound (killed).
    Exit(ChildExit),
    /// Its handshake was refused.
    Refused(ProtocolError),
}
/// Sends `first` (a `load` or `hold` request) with `image` attached (`SCM_RIGHTS`).
fn send_first(to: &UnixStream, first: &Request, image: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(first)?;
    line.push(b'\n');
    let fds = [image];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    let sent = rustix::net::sendmsg(
        to,
        &[IoSlice::new(&line)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    // The descriptor went with the first byte; the rest of a long line follows.
    let mut to = to;
    to.write_all(&line[sent..])
}

/// A resolver child to hand a library: one started ahead of need when `helper` has
/// one waiting and it takes the first request (`image` attached: `load`, or `hold`
/// when `hold`), else a new one.
fn handed(
    image: BorrowedFd<'_>,
    path: &Path,
    helper: &Helper,
    hold: bool,
) -> std::io::Result<(Running, LogLabel)> {
    let shown = path.to_string_lossy();
    let path = shown.clone().into_owned();
    let first = match hold {
        true => Request::Hold { path },
        false => Request::Load { path },
    };
    loop {
        let (running, label, waited) = match helper.take_spare() {
            Some(spare) => (spare.running, spare.label, true),
            None => {
                let label = LogLabel::new(&shown);
                (start_child(helper.path(), &label)?, label, false)
            }
        };
        label.set(&shown);
        let mut running = running;
        match send_first(&running.requests, &first, image) {
            Ok(()) => return Ok((running, label)),
            // A waiting child that died meanwhile: the next one (or a new one) is asked.
            Err(_) if waited && !running.alive() => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A resolver child handed a library whose signature the host is still verifying
/// ([`Request::Hold`]): it has checked the sealed copy and waits for
/// [`Request::Go`], having run none of the library's code. Dropped unused (the
/// library was refused, or another one reached the gate), it is killed unloaded.
pub struct Held {
    running: Running,
    label: LogLabel,
    path: PathBuf,
    /// The `(device, inode)` of the sealed copy handed over.
    copy: (u64, u64),
}

/// The `(device, inode)` of a sealed copy.
fn copy_identity(image: BorrowedFd<'_>) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::fstat(image)?;
    Ok((stat.st_dev, stat.st_ino))
}

impl Held {
    /// Hands `library` (its sealed copy) to a resolver child to check and hold. `None`
    /// when no child could take it: the library is handed over as usual once
    /// verified.
    pub fn start(library: &provtarget_loader::Verifying<'_>, helper: &Helper) -> Option<Held> {
        let image = library.sealed_fd();
        let copy = copy_identity(image).ok()?;
        let (running, label) = handed(image, library.path(), helper, true).ok()?;
        Some(Held {
            running,
            label,
            path: library.path().to_path_buf(),
            copy,
        })
    }

    /// The library was refused: the child is told ([`Request::Cancel`]) and ends
    /// unloaded; it is waited for (up to [`CANCEL_GRACE`], then killed), so that it is
    /// gone when the refusal is reported.
    pub fn withdraw(mut self) {
        // A child that sends anything instead, or ignores the cancellation, is killed
        // as the held child is dropped.
        if send(&self.running.requests, &Request::Cancel).is_ok()
            && matches!(self.running.replies.next(CANCEL_GRACE), Next::Closed)
        {
            let _ = self.running.child.wait();
        }
    }

    /// Whether it holds `prepared`: the same path and the same sealed copy.
    pub fn holds(&self, prepared: &Prepared) -> bool {
        prepared.record().path == self.path
            && prepared
                .sealed_fd()
                .is_some_and(|fd| copy_identity(fd).is_ok_and(|copy| copy == self.copy))
    }
}

/// Hands the sealed copy `image` of the library at `path` to a resolver child (see
/// [`handed`]), or tells the child `held` that holds it to load it, and reads its
/// handshake (within `deadline`): the child's verdict and the plugin's information.
fn launch(
    image: BorrowedFd<'_>,
    path: &Path,
    helper: &Helper,
    deadline: Duration,
    held: Option<Held>,
) -> Result<(Running, Verdict, Option<PluginFacts>), Launch> {
    let (mut running, label) = match held {
        Some(Held { running, label, .. }) => {
            // A child gone meanwhile shows below, as any child that ends first.
            let _ = send(&running.requests, &Request::Go);
            (running, label)
        }
        None => handed(image, path, helper, false).map_err(Launch::Io)?,
    };
    match running.replies.next(deadline) {
        Next::Line(line) => {
            let hello = Handshake::decode(&line).map_err(Launch::Refused)?;
            let (verdict, facts) = wire::parse(&hello.report)
                .map_err(|e| Launch::Refused(ProtocolError::Report(e)))?;
            // From now on the child's lines are tagged with the plugin's own name.
            if let Some(facts) = &facts {
                label.set(&facts.info.name);
            }
            Ok((running, verdict, facts))
        }
        Next::Closed => match running.child.wait() {
            Ok(status) => Err(Launch::Exit(status.into())),
            Err(e) => Err(Launch::Io(e)),
        },
        // Dropping `running` kills and reaps the child.
        Next::Timeout => Err(Launch::Exit(ChildExit::Timeout(deadline))),
        Next::TooLong => Err(Launch::Exit(ChildExit::ProtocolBreach(Breach::TooLong {
            what: "a handshake",
            max: MAX_LINE,
        }))),
    }
}

/// Process mode's probe: loads `prepared` in a resolver child (the same child then
/// serves it, if `keep` says it will be used, saving a second start) and returns the
/// child's verdict, the plugin's information and, when approved, its adapter. `held`:
/// a child already holding it ([`Held::holds`]), told to load it.
pub fn start(
    prepared: &Prepared,
    helper: &Helper,
    deadline: Duration,
    keep: impl FnOnce(&str) -> bool,
    held: Option<Held>,
) -> Result<(Verdict, Option<PluginFacts>, Option<ProcessResolver>), provtarget_loader::Refusal> {
    let path = &prepared.record().path;
    let p = printable(&path.to_string_lossy());
    let Some(image) = prepared.sealed_fd() else {
        // Without a sealed copy there is nothing to hand over: the probe says why.
        return super::probe::probe(prepared, helper, deadline).map(|(v, f)| (v, f, None));
    };
    let (running, verdict, facts) = match launch(image, path, helper, deadline, held) {
        Ok(ok) => ok,
        Err(Launch::Io(e)) => {
            return Err(provtarget_loader::Refusal::new(
                provtarget_loader::Stage::Load,
                provtarget_loader::RefusalKind::CrashedWhileLoading,
                format!(
                    "{p}: cannot start the helper {} to load it in a child: {e}",
                    printable(&helper.path().to_string_lossy())
                ),
            ))
        }
        Err(Launch::Exit(exit)) => return Err(super::probe::ended(&p, &exit)),
        Err(Launch::Refused(e)) => {
            return Err(provtarget_loader::Refusal::new(
                provtarget_loader::Stage::Load,
                provtarget_loader::RefusalKind::CrashedWhileLoading,
                format!("{p}: {e}"),
            ))
        }
    };
    let resolver = match (&verdict, &facts) {
        // A duplicate (the loader refuses it by name): its child and its copy are let
        // go now rather than held until every library is judged.
        (Verdict::Loaded, Some(facts)) if prepared.name_taken(&facts.info.name) => None,
        (Verdict::Loaded, Some(facts)) => {
            let mut resolver = ProcessResolver::new(prepared, facts, helper)?;
            if keep(&facts.info.name) {
                resolver
                    .state
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .running = Some(running);
            }
            Some(resolver)
        }
        _ => None,
    };
    Ok((verdict, facts, resolver))
}

/// How long a call whose child was stopped by SIGINT, SIGTERM or SIGHUP waits for
/// the host's own cancellation (the signal usually went to the whole group).
const STOP_SETTLE: Duration = Duration::from_millis(500);

impl TargetResolver for ProcessResolver {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn configure(
        &mut self,
        ctx: &ResolveContext,
        config: &provtarget_abi::Config,
    ) -> Result<Settings, ResolverError> {
        // Kept for a restarted child, which is configured again before its call.
        let config = config_pairs(config);
        self.config = Some(config.clone());
        let request = |id| Request::Configure {
            id,
            config: config.clone(),
        };
        match self.request(ctx, request) {
            Ok(Answer::Configured(settings)) => Ok(settings),
            Ok(other) => Err(CallError::Unexpected(other.kind()).to_string().into()),
            Err(e) => Err(e.to_string().into()),
        }
    }
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, ResolverError> {
        match self.request(ctx, |id| Request::Targets { id }) {
            Ok(Answer::Targets { list, answer }) => Ok(RawTargets::from(list).with_answer(answer)),
            Ok(other) => Err(CallError::Unexpected(other.kind()).to_string().into()),
            Err(e) => Err(e.to_string().into()),
        }
    }
}

/// Why a call to a resolver process failed; its `Display` is the resolver's error.
#[derive(Debug)]
enum CallError {
    /// The plugin's own error (or, cancelled, its answer when told).
    Plugin(String),
    /// The child ended or could not start: the words of its end (logged once, by
    /// [`ProcessResolver::ended`]).
    Down(String),
    /// The last child ended, and its restart waits for the backoff.
    BackingOff {
        /// How it ended.
        last: String,
        /// What is left of the backoff.
        wait: Duration,
    },
    /// A restarted child's `configure` failed: the plugin's error.
    Reconfigure(String),
    /// The call was cancelled.
    Cancelled,
    /// The call was cancelled and the child ignored it for [`CANCEL_GRACE`]: killed.
    IgnoredCancel,
    /// An answer [`ProcessResolver::call`] let through though it does not answer the
    /// request (it checks: never seen): its kind.
    Unexpected(&'static str),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Plugin(e) | CallError::Down(e) => f.write_str(e),
            CallError::BackingOff { last, wait } => {
                write!(f, "{last}; restarting it in {}ms", wait.as_millis())
            }
            CallError::Reconfigure(e) => {
                write!(f, "configure failed in the restarted resolver process: {e}")
            }
            CallError::Cancelled => f.write_str("context canceled"),
            CallError::IgnoredCancel => write!(
                f,
                "context canceled; the resolver process ignored cancellation for {}ms and was \
                 killed",
                CANCEL_GRACE.as_millis()
            ),
            CallError::Unexpected(kind) => {
                write!(f, "the resolver process answered with a {kind} reply")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, Write},
        os::unix::process::ExitStatusExt,
        process::{Command, ExitStatus, Stdio},
        thread,
    };

    use super::super::resolver_child::{adopt, Proc};
    use super::*;
    use crate::resolver::CancelToken;

    /// A `Running` whose "child" is a `sleep` (killed when dropped) and whose other
    /// end of the socket is returned: the test plays the child.
    fn fake_child() -> (Running, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_, log) = super::super::relay::LogFlush::pipe(&LogLabel::new("test")).unwrap();
        let sleep = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        (adopt(Proc::Spawned(sleep), ours, log).unwrap(), theirs)
    }

    /// Plays the child: reads one request, answers it with `reply` (given the
    /// request's id), returns the request.
    fn answer_with(theirs: UnixStream, reply: fn(u64) -> String) -> thread::JoinHandle<Request> {
        thread::spawn(move || {
            let mut line = Vec::new();
            std::io::BufReader::new(&theirs)
                .read_until(b'\n', &mut line)
                .unwrap();
            let request = Request::decode(&line[..line.len() - 1]).unwrap();
            let id = match request {
                Request::Configure { id, .. } | Request::Targets { id } => id,
                _ => 0,
            };
            (&theirs)
                .write_all(format!("{}\n", reply(id)).as_bytes())
                .unwrap();
            // Held open until the host has read the line.
            thread::sleep(Duration::from_millis(200));
            request
        })
    }

    fn call(reply: fn(u64) -> String) -> (Request, Result<Answer, Lost>) {
        let (mut running, theirs) = fake_child();
        let child = answer_with(theirs, reply);
        let ctx = ResolveContext::new("test", CancelToken::new());
        let got = ProcessResolver::call(&mut running, &ctx, |id| Request::Targets { id });
        (child.join().unwrap(), got)
    }

    #[test]
    fn a_typed_reply_answers_its_request() {
        let (request, got) = call(|id| {
            format!(
                r#"{{"id":{id},"answer":{{"targets":{{"list":["b:4222"],"answer":{{"provenance":"here"}}}}}}}}"#
            )
        });
        assert_eq!(request, Request::Targets { id: 1 });
        match got {
            Ok(Answer::Targets { list, answer }) => {
                assert_eq!(list, ["b:4222"]);
                assert_eq!(answer.provenance.as_deref(), Some("here"));
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!("lost"),
        }
    }

    /// A reply that is not one, or answers another kind of request, is never read
    /// as a default (an empty list): the child broke the protocol and is killed.
    #[test]
    fn a_malformed_or_mismatched_reply_is_a_breach_naming_it() {
        let breach = |reply: fn(u64) -> String| match call(reply).1 {
            Err(Lost::Ended(down)) => {
                assert!(matches!(down, Down::Exit(ChildExit::ProtocolBreach(_))));
                assert!(!down.is_interruption());
                down.to_string()
            }
            Err(_) => panic!("not a breach"),
            Ok(answer) => panic!("read as {answer:?}"),
        };
        let text =
            breach(|id| format!(r#"{{"id":{id},"answer":{{"targets":{{"list":"b:4222"}}}}}}"#));
        assert!(
            text.starts_with("the resolver process sent a malformed reply: field `answer.targets.list`: invalid type"),
            "{text}"
        );
        assert!(
            text.ends_with(", breaking the protocol; it was killed"),
            "{text}"
        );
        let text = breach(|id| format!(r#"{{"id":{id},"answer":{{"configured":[]}}}}"#));
        assert_eq!(
            text,
            "the resolver process answered a targets request with a configured reply, \
             breaking the protocol; it was killed"
        );
        let text = breach(|_| "not JSON at all".into());
        assert!(text.contains("a malformed reply: field `.`"), "{text}");
    }

    /// How a resolver process's end is told, from its typed value: a stop is an
    /// interruption (logged as a warning), any other signal a crash.
    #[test]
    fn a_childs_end_is_told_from_its_typed_value() {
        let end = |raw| Down::Exit(ChildExit::from(ExitStatus::from_raw(raw)));
        let term = end(15);
        assert!(term.is_interruption());
        assert_eq!(
            term.to_string(),
            "the resolver process was interrupted by signal 15 (SIGTERM)"
        );
        let segv = end(11);
        assert!(!segv.is_interruption());
        assert_eq!(
            segv.to_string(),
            "the resolver process crashed: killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            end(3 << 8).to_string(),
            "the resolver process exited with status 3"
        );
        assert_eq!(
            Down::Exit(ChildExit::Timeout(DEFAULT_PROBE_TIMEOUT)).to_string(),
            "the resolver process did not answer within 10s (killed)"
        );
    }
}
