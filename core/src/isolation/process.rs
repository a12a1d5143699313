//! A resolver that lives in a child process for its whole life: [`ProcessResolver`]
//! (the host's side, a native [`TargetResolver`]) and [`child`] (`provtarget __serve`).
//!
//! Transport: one Unix stream socket, the child's stdin (the child moves it to a
//! descriptor of its own and puts `/dev/null` at 0 before any plugin code runs, so a
//! plugin that reads stdin or prints cannot touch the protocol). A child starts
//! knowing nothing, so it can be started ahead of need ([`Spare`],
//! [`Helper::prestart`]): the host hands it the sealed in-memory copy of a library
//! that passed every check as an `SCM_RIGHTS` descriptor with the first line,
//! `{"call": "load", "path": "..."}`.
//!
//! Protocol (JSON lines): the child's first line is the handshake, [`wire::report`]
//! (magic cookie, protocol version, verdict, plugin information). Then each request
//! `{"id": N, "call": "configure", "config": [[key, value]...]}` or
//! `{"id": N, "call": "targets"}` gets one reply `{"id": N, "ok": ...}` (for `targets`,
//! `{"targets": [...], "provenance": "..."|null}`) or
//! `{"id": N, "error": "..."}`. `{"call": "cancel"}` cancels the call in progress (the
//! resolver's context is cancelled and its answer, usually its last error, is the
//! reply); a child that does not answer within [`CANCEL_GRACE`] is killed. The child's
//! log lines go to its stderr and are re-logged by the host with the plugin's name.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{BufRead, BufReader, Cursor, IoSlice, IoSliceMut, Read, Write},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::{net::UnixStream, process::ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use provtarget_abi::backoff;
use provtarget_loader::{PluginFacts, Prepared, Verdict};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde_json::{json, Value};

use super::{describe_exit, send, wire, Helper, LogLabel, DEFAULT_PROBE_TIMEOUT, SERVE_COMMAND};
use crate::{
    resolver::{CancelToken, RawTargets, ResolveContext, ResolverError, Settings, TargetResolver},
    text::printable,
};

/// The longest first line (`load`) a child accepts.
const MAX_LOAD_LINE: usize = 64 * 1024;

/// How long a cancelled call may take to answer before its child is killed: a little
/// less than the host's own grace for a cancelled resolver
/// ([`crate::host::CANCEL_GRACE`]), so the answer (the resolver's last error) still
/// reaches the deadline report.
pub const CANCEL_GRACE: Duration = Duration::from_millis(1_800);

/// A plugin's resolver running in a child process, seen as a native resolver.
pub struct ProcessResolver {
    name: String,
    version: String,
    path: PathBuf,
    /// The sealed copy every (re)started child loads.
    image: File,
    helper: Helper,
    config: Option<Vec<(String, String)>>,
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
    last_end: Option<String>,
}

struct Running {
    child: Proc,
    requests: UnixStream,
    replies: Replies,
    next_id: u64,
    /// To wait for the child's last log lines when it is ended.
    log: super::LogFlush,
}

impl Running {
    /// Whether the child still runs.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// How long ending a child waits for its last log lines to be re-logged (its stderr
/// closes as soon as the killed process is gone).
const LAST_LINES_WAIT: Duration = Duration::from_secs(1);

/// The child's lines, read by the caller itself (no thread, no hand-over): a blocking
/// read with a timeout, the part of a line read before a timeout kept for the next.
struct Replies {
    reader: BufReader<UnixStream>,
    pending: Vec<u8>,
}

/// The longest line a child may send. The longest valid one, an answer of the most
/// targets the host accepts with every entry at its longest and escaped, is under
/// 7 MiB; a child (its plugin) sending more without end must not exhaust the host's
/// memory.
pub const MAX_LINE: usize = 16 << 20;

/// What [`Replies::next`] got.
enum Next {
    Line(Value),
    /// Nothing within the wait.
    Timeout,
    /// The child closed its end (it ended).
    Closed,
    /// A line over [`MAX_LINE`]: the child breaks the protocol.
    TooLong,
}

impl Replies {
    /// The next JSON line within `wait` (a line that is not JSON cannot come from the
    /// protocol, and is skipped).
    fn next(&mut self, wait: Duration) -> Next {
        let wait = wait.max(Duration::from_millis(1));
        if self.reader.get_ref().set_read_timeout(Some(wait)).is_err() {
            return Next::Closed;
        }
        loop {
            match super::read_line_bounded(&mut self.reader, &mut self.pending, MAX_LINE) {
                Ok(super::Bounded::Line) => {
                    let line = std::mem::take(&mut self.pending);
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        return Next::Line(v);
                    }
                }
                Ok(super::Bounded::Long) => {
                    self.pending = Vec::new();
                    return Next::TooLong;
                }
                // End of the stream (a partial last line is not a reply).
                Ok(super::Bounded::End) => return Next::Closed,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Next::Timeout
                }
                Err(_) => return Next::Closed,
            }
        }
    }
}

impl Drop for Running {
    /// Kills the child. It is reaped here when already gone, else by a short-lived
    /// thread, so that ending a host (or the `provtarget` command) does not wait for
    /// the kernel to tear a killed process down; a program that exits first leaves the
    /// reaping to init, the child being dead either way.
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Its last lines (often why it failed) are logged before the host goes on, or
        // ends, without waiting for the killed child to be torn down.
        self.log.flush(LAST_LINES_WAIT);
        if let Ok(None) = self.child.try_wait() {
            let mut child = std::mem::replace(&mut self.child, Proc::HandedOver);
            let spawned = thread::Builder::new()
                .name("reap child".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            if let Err(e) = spawned {
                tracing::warn!(
                    "cannot start a thread to reap a killed resolver process ({e}); it stays \
                     a zombie until this program ends"
                );
            }
        }
    }
}

/// A resolver child: started from the helper executable, or forked from this process
/// at start-up ([`Spare::fork`]).
enum Proc {
    Spawned(Child),
    Forked {
        pid: rustix::process::Pid,
        ended: Option<ExitStatus>,
    },
    /// Handed to a thread that reaps it (see `Running`'s `drop`).
    HandedOver,
}

impl Proc {
    fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Proc::Spawned(child) => child.kill(),
            Proc::Forked { pid, ended: None } => Ok(rustix::process::kill_process(
                *pid,
                rustix::process::Signal::KILL,
            )?),
            Proc::Forked { .. } | Proc::HandedOver => Ok(()),
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.reap(rustix::process::WaitOptions::NOHANG)
    }

    fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.reap(rustix::process::WaitOptions::empty())?
            .ok_or_else(|| std::io::Error::other("the child did not end"))
    }

    fn reap(
        &mut self,
        options: rustix::process::WaitOptions,
    ) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Proc::Spawned(child) if options.is_empty() => child.wait().map(Some),
            Proc::Spawned(child) => child.try_wait(),
            Proc::Forked {
                ended: Some(status),
                ..
            } => Ok(Some(*status)),
            Proc::HandedOver => Err(std::io::Error::other("the child was handed over")),
            Proc::Forked { pid, ended } => {
                let Some((_, status)) = rustix::process::waitpid(Some(*pid), options)? else {
                    return Ok(None);
                };
                let status = ExitStatus::from_raw(status.as_raw());
                *ended = Some(status);
                Ok(Some(status))
            }
        }
    }
}

/// A resolver child started ahead of need, waiting for its library (see
/// [`Helper::prestart`]). Dropping it ends the child.
pub struct Spare {
    running: Running,
    label: LogLabel,
}

impl Spare {
    /// Starts `helper __serve`.
    pub(super) fn start(helper: &Helper) -> std::io::Result<Spare> {
        let label = LogLabel::new("resolver process");
        let running = start_child(helper, &label)?;
        Ok(Spare { running, label })
    }

    /// Forks a resolver child from this process, which must have a single thread (the
    /// `provtarget` command at start-up, see [`Helper::fork_spare`]). The copy sets
    /// its stdio (the socket, `/dev/null`, the log pipe), serves like `__serve` and
    /// exits; it never returns from here. Costs a `fork`, not an `exec` of the helper.
    pub(super) fn fork() -> std::io::Result<Spare> {
        let (ours, theirs) = UnixStream::pair()?;
        let (log_r, log_w) = super::pipe()?;
        let null = File::options().write(true).open("/dev/null")?;
        match provtarget_loader::child::fork_single_threaded()? {
            provtarget_loader::child::Forked::Child => {
                drop((ours, log_r));
                let code = match become_served(&theirs, &null, &log_w) {
                    Ok(()) => {
                        drop((theirs, null, log_w));
                        // The copy keeps nothing above stderr: not the host's
                        // descriptors, nor those whoever started the host left open.
                        provtarget_loader::child::close_from(3, &loader_debug_output());
                        super::scrub_own_env();
                        super::serve_main()
                    }
                    Err(_) => 2,
                };
                std::process::exit(code.into())
            }
            provtarget_loader::child::Forked::Parent(pid) => {
                drop((theirs, null));
                let pid = rustix::process::Pid::from_raw(pid as i32)
                    .ok_or_else(|| std::io::Error::other("fork gave no process id"))?;
                let label = LogLabel::new("resolver process");
                let child = Proc::Forked { pid, ended: None };
                let log = super::LogFlush::over(log_r, log_w, &label);
                let running = adopt(child, ours, log)?;
                Ok(Spare { running, label })
            }
        }
    }

    /// Whether the child still runs.
    pub(super) fn alive(&mut self) -> bool {
        self.running.alive()
    }
}

/// How one request ended without a normal reply.
enum Lost {
    /// Cancelled; the child answered in time (its reply, usually the resolver's
    /// last error) and keeps running.
    CancelledAnswered(Value),
    /// Cancelled, and the child did not answer within [`CANCEL_GRACE`]: killed.
    Cancelled,
    Ended(String),
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

    /// Starts a child and reads its handshake.
    fn spawn(&self) -> Result<Running, String> {
        match launch(
            self.image.as_fd(),
            &self.path,
            &self.helper,
            DEFAULT_PROBE_TIMEOUT,
        ) {
            Ok((running, hello)) => match wire::parse(&hello) {
                Ok((Verdict::Loaded, actual)) => {
                    // The cache (or an earlier child) is a hint: what this child loaded
                    // must be the plugin the selection used.
                    let differences = match &actual {
                        Some(actual) => provtarget_loader::cache_mismatch(&self.expected, actual),
                        None => Some("no plugin information".to_string()),
                    };
                    match differences {
                        None => Ok(running),
                        Some(differences) => {
                            self.forget_cache_entry();
                            Err(
                                provtarget_loader::cache_mismatch_refusal(&self.path, &differences)
                                    .message,
                            )
                        }
                    }
                }
                Ok((verdict, _)) => {
                    let why = verdict.reason().unwrap_or("refused");
                    if self.from_cache.is_some() {
                        // A cached "loaded" the library's own checks contradict.
                        self.forget_cache_entry();
                        Err(format!(
                            "the resolver process refused the plugin its verdict cache \
                             accepted: {why}; the cache entry is dropped"
                        ))
                    } else {
                        Err(format!(
                            "the resolver process could not load the plugin: {why}"
                        ))
                    }
                }
                Err(e) => Err(e),
            },
            Err(Launch::Io(e)) => Err(format!("cannot start the resolver process: {e}")),
            Err(Launch::Ended(status)) => Err(ended_text(status)),
            Err(Launch::Silent) => Err(format!(
                "the resolver process did not answer within {}s (killed)",
                DEFAULT_PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    /// Sends one request and waits for its reply. On cancellation the child is told
    /// to cancel the call and gets [`CANCEL_GRACE`] to answer; past it, the caller
    /// drops (kills) it.
    fn call(
        running: &mut Running,
        ctx: &ResolveContext,
        mut request: Value,
    ) -> Result<Value, Lost> {
        let id = running.next_id;
        running.next_id += 1;
        request["id"] = id.into();
        if send(&mut running.requests, &request).is_err() {
            // The child is gone; its status says why.
        }
        let mut cancelled_at: Option<Instant> = None;
        loop {
            match running.replies.next(Duration::from_millis(20)) {
                Next::Line(reply) if reply["id"] == id => {
                    return match cancelled_at {
                        Some(_) => Err(Lost::CancelledAnswered(reply)),
                        None => Ok(reply),
                    }
                }
                Next::Line(_) => continue,
                Next::Timeout => match cancelled_at {
                    None if ctx.token().is_cancelled() => {
                        cancelled_at = Some(Instant::now());
                        let _ = send(&mut running.requests, &json!({"call": "cancel"}));
                    }
                    Some(at) if at.elapsed() >= CANCEL_GRACE => return Err(Lost::Cancelled),
                    _ => {}
                },
                Next::TooLong => {
                    return Err(Lost::Ended(format!(
                        "the resolver process sent a line over {} MiB, breaking the protocol; it was killed",
                        MAX_LINE >> 20
                    )))
                }
                Next::Closed => {
                    return Err(Lost::Ended(match running.child.wait() {
                        Ok(status) => {
                            if super::stopped_by_signal(status) {
                                // Stopped with its process group (Ctrl-C, `timeout`,
                                // systemd), this host got the signal too: let its
                                // signal handler cancel the call first, so the run
                                // ends as the cancellation it is.
                                let settle = Instant::now();
                                while !ctx.token().is_cancelled()
                                    && settle.elapsed() < STOP_SETTLE
                                {
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                            }
                            ended_text(status)
                        }
                        Err(e) => format!("the resolver process ended: {e}"),
                    }));
                }
            }
        }
    }

    /// Makes sure a configured child runs, then sends `request`. A child that ended
    /// is restarted after Choria's backoff (until then, the call fails at once).
    fn request(&self, ctx: &ResolveContext, request: Value) -> Result<Value, String> {
        let mut state = self.state();
        if state.running.is_none() {
            if let (Some(at), Some(last)) = (state.retry_at, &state.last_end) {
                let now = Instant::now();
                if now < at {
                    return Err(format!(
                        "{last}; restarting it in {}ms",
                        (at - now).as_millis()
                    ));
                }
            }
            let mut running = match self.spawn() {
                Ok(running) => running,
                Err(e) => return Err(self.ended(&mut state, e)),
            };
            if let Some(config) = &self.config {
                if request["call"] != "configure" {
                    let configure = json!({"call": "configure", "config": config});
                    match ProcessResolver::call(&mut running, ctx, configure) {
                        Ok(reply) if reply.get("ok").is_some() => {}
                        Ok(reply) => {
                            return Err(format!(
                                "configure failed in the restarted resolver process: {}",
                                reply["error"].as_str().unwrap_or("no answer")
                            ))
                        }
                        Err(Lost::Cancelled | Lost::CancelledAnswered(_)) => {
                            return Err("context canceled".into())
                        }
                        Err(Lost::Ended(e)) => return Err(self.ended(&mut state, e)),
                    }
                }
            }
            state.running = Some(running);
        }
        let running = state.running.as_mut().expect("started above");
        match ProcessResolver::call(running, ctx, request) {
            Ok(reply) => {
                state.crashes = 0;
                state.retry_at = None;
                match reply.get("ok") {
                    Some(ok) => Ok(ok.clone()),
                    None => Err(reply["error"].as_str().unwrap_or("no answer").to_string()),
                }
            }
            Err(Lost::CancelledAnswered(reply)) => {
                // The resolver ended when told: its answer (typically "context
                // canceled after N tries; last error: ...") is the call's error.
                Err(reply["error"]
                    .as_str()
                    .unwrap_or("context canceled")
                    .to_string())
            }
            Err(Lost::Cancelled) => {
                // A resolver that ignores cancellation cannot outlive the call: its
                // child is killed, and the next call starts a new one.
                state.running = None;
                Err(format!(
                    "context canceled; the resolver process ignored cancellation for {}ms and was killed",
                    CANCEL_GRACE.as_millis()
                ))
            }
            Err(Lost::Ended(e)) => {
                state.running = None;
                Err(self.ended(&mut state, e))
            }
        }
    }

    /// Records a child's end for the restart backoff; returns the error text.
    fn ended(&self, state: &mut State, text: String) -> String {
        let delay = backoff::FIVE_SEC.duration(state.crashes);
        state.crashes += 1;
        state.retry_at = Some(Instant::now() + delay);
        state.last_end = Some(text.clone());
        if text.starts_with(INTERRUPTED) {
            // A stop is not the plugin's fault: no ERROR line for it.
            tracing::warn!(plugin = self.name.as_str(), "{text}");
        } else {
            tracing::error!(plugin = self.name.as_str(), "{text}");
        }
        text
    }
}

/// Why [`launch`] gave no handshake.
enum Launch {
    Io(std::io::Error),
    /// The child ended first.
    Ended(std::process::ExitStatus),
    /// No handshake within the deadline (the child was killed).
    Silent,
}

/// Starts `helper __serve` on a new socket pair (its end as the child's stdin), with
/// its stderr re-logged under `label`.
fn start_child(helper: &Helper, label: &LogLabel) -> std::io::Result<Running> {
    let (ours, theirs) = UnixStream::pair()?;
    let (log_theirs, log) = super::LogFlush::pipe(label)?;
    let mut cmd = Command::new(helper.path());
    cmd.arg(SERVE_COMMAND)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_theirs));
    super::scrub_env(&mut cmd);
    // Nothing above stderr is inherited (whoever started the host may have left
    // descriptors open).
    let spawned = provtarget_loader::child::spawn_with_fds(&mut cmd, &[]);
    // The command holds the child's ends: closed here, so the child's end of the
    // socket is the child's alone (its exit is then seen as the end of the stream).
    drop(cmd);
    adopt(Proc::Spawned(spawned?), ours, log)
}

/// The host's side of a started child: its replies read on `ours`, its stderr
/// re-logged through `log`.
fn adopt(mut child: Proc, ours: UnixStream, log: super::LogFlush) -> std::io::Result<Running> {
    let lines = match ours.try_clone() {
        Ok(lines) => lines,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Running {
        child,
        requests: ours,
        replies: Replies {
            reader: BufReader::new(lines),
            pending: Vec::new(),
        },
        next_id: 1,
        log,
    })
}

/// The descriptors the dynamic loader writes `LD_DEBUG` output to (files named
/// after `LD_DEBUG_OUTPUT`), which a forked child keeps: they are glibc's, opened
/// for debugging by whoever set the variable, not the caller's secrets.
fn loader_debug_output() -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let Some(prefix) = std::env::var_os("LD_DEBUG_OUTPUT") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target
                .as_os_str()
                .as_bytes()
                .starts_with(prefix.as_bytes())
                .then_some(n)
        })
        .collect()
}

/// In a forked child: the socket as stdin, `/dev/null` as stdout, the log pipe as
/// stderr (each first moved above the standard numbers, in case one of them was
/// closed in the parent and the new descriptor took its number).
fn become_served(socket: &UnixStream, null: &File, log: &File) -> std::io::Result<()> {
    let socket = rustix::io::fcntl_dupfd_cloexec(socket, 3)?;
    let null = rustix::io::fcntl_dupfd_cloexec(null, 3)?;
    let log = rustix::io::fcntl_dupfd_cloexec(log, 3)?;
    rustix::stdio::dup2_stdin(&socket)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&log)?;
    Ok(())
}

/// Sends the `load` line with `image` attached (`SCM_RIGHTS`).
fn send_load(to: &UnixStream, path: &Path, image: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut line = json!({"call": "load", "path": path.to_string_lossy()}).to_string();
    line.push('\n');
    let fds = [image];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    let sent = rustix::net::sendmsg(
        to,
        &[IoSlice::new(line.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    // The descriptor went with the first byte; the rest of a long line follows.
    let mut to = to;
    to.write_all(&line.as_bytes()[sent..])
}

/// Hands the sealed copy `image` of the library at `path` to a resolver child (one
/// started ahead of need when `helper` has one waiting, else a new one) and reads its
/// handshake (within `deadline`).
fn launch(
    image: BorrowedFd<'_>,
    path: &Path,
    helper: &Helper,
    deadline: Duration,
) -> Result<(Running, Value), Launch> {
    let shown = path.to_string_lossy();
    let (mut running, label) = loop {
        let (mut running, label, waited) = match helper.take_spare() {
            Some(spare) => (spare.running, spare.label, true),
            None => {
                let label = LogLabel::new(&shown);
                (
                    start_child(helper, &label).map_err(Launch::Io)?,
                    label,
                    false,
                )
            }
        };
        label.set(&shown);
        match send_load(&running.requests, path, image) {
            Ok(()) => break (running, label),
            // A waiting child that died meanwhile: the next one (or a new one) is asked.
            Err(_) if waited && !running.alive() => continue,
            Err(e) => return Err(Launch::Io(e)),
        }
    };
    match running.replies.next(deadline) {
        Next::Line(hello) => {
            // From now on the child's lines are tagged with the plugin's own name.
            if let Some(name) = hello["plugin"]["name"].as_str() {
                label.set(name);
            }
            Ok((running, hello))
        }
        Next::Closed => match running.child.wait() {
            Ok(status) => Err(Launch::Ended(status)),
            Err(e) => Err(Launch::Io(e)),
        },
        // Dropping `running` kills and reaps the child.
        Next::Timeout => Err(Launch::Silent),
        Next::TooLong => Err(Launch::Io(std::io::Error::other(format!(
            "its handshake was over {} MiB (killed)",
            MAX_LINE >> 20
        )))),
    }
}

/// Process mode's probe: loads `prepared` in a resolver child (the same child then
/// serves it, if `keep` says it will be used, saving a second start) and returns the
/// child's verdict, the plugin's information and, when approved, its adapter.
pub fn start(
    prepared: &Prepared,
    helper: &Helper,
    deadline: Duration,
    keep: impl FnOnce(&str) -> bool,
) -> Result<(Verdict, Option<PluginFacts>, Option<ProcessResolver>), provtarget_loader::Refusal> {
    let path = &prepared.record().path;
    let p = printable(&path.to_string_lossy());
    let Some(image) = prepared.sealed_fd() else {
        // Without a sealed copy there is nothing to hand over: the probe says why.
        return super::probe::probe(prepared, helper, deadline).map(|(v, f)| (v, f, None));
    };
    let (running, hello) = match launch(image, path, helper, deadline) {
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
        Err(Launch::Ended(status)) => return Err(super::probe::ended(&p, status)),
        Err(Launch::Silent) => return Err(super::probe::timed_out(&p, deadline)),
    };
    let (verdict, facts) = wire::parse(&hello).map_err(|e| {
        provtarget_loader::Refusal::new(
            provtarget_loader::Stage::Load,
            provtarget_loader::RefusalKind::CrashedWhileLoading,
            format!("{p}: {e}"),
        )
    })?;
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

/// How a resolver child's end is told: a crash (`the resolver process crashed:
/// killed by signal 11 (SIGSEGV)`), an exit, or, for a stop signal sent to the
/// process group (Ctrl-C, `timeout`, systemd), an interruption.
fn ended_text(status: std::process::ExitStatus) -> String {
    let how = describe_exit(status);
    if super::stopped_by_signal(status) {
        // `killed by signal 15 (SIGTERM)` -> `by signal 15 (SIGTERM)`
        let by = how.strip_prefix("killed ").unwrap_or(&how);
        format!("{INTERRUPTED} {by}")
    } else if how.starts_with("killed by signal") {
        format!("the resolver process crashed: {how}")
    } else {
        format!("the resolver process {how}")
    }
}

/// How long a call whose child was stopped by SIGINT, SIGTERM or SIGHUP waits for
/// the host's own cancellation (the signal usually went to the whole group).
const STOP_SETTLE: Duration = Duration::from_millis(500);

/// The start of the text of a resolver child stopped by SIGINT, SIGTERM or SIGHUP.
const INTERRUPTED: &str = "the resolver process was interrupted";

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
        self.config = Some(crate::host::config_pairs(config));
        let pairs = self.config.clone().unwrap_or_default();
        let ok = self.request(ctx, json!({"call": "configure", "config": pairs}))?;
        Ok(pairs_of(&ok))
    }
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, ResolverError> {
        let ok = self.request(ctx, json!({"call": "targets"}))?;
        // `{"targets": [...], "provenance": "..."|null}` (interface 1.2's provenance).
        let provenance = ok["provenance"].as_str().map(String::from);
        let list: Vec<String> = ok["targets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RawTargets::from(list).with_provenance(provenance))
    }
}

fn pairs_of(v: &Value) -> Settings {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The child: takes its socket off stdin, waits for its library (the `load` line and
/// the sealed copy), loads it, sends the handshake, then answers requests until the
/// host closes the socket.
pub fn child() -> ExitCode {
    ExitCode::from(serve())
}

/// [`child`]'s work; its exit status.
pub(super) fn serve() -> u8 {
    let socket = match take_socket() {
        Ok(socket) => socket,
        Err(e) => {
            crate::logsink::line(&format!(
                "provtarget: {SERVE_COMMAND} needs the socket provtarget gives it as stdin: {e}"
            ));
            return 2;
        }
    };
    let (line, rest, image) = match receive_load(&socket) {
        Ok(got) => got,
        // The host ended (or discarded this child) before handing it a library.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return 0,
        Err(e) => {
            crate::logsink::line(&format!("provtarget: {SERVE_COMMAND} got no library: {e}"));
            return 2;
        }
    };
    let request: Value = serde_json::from_slice(&line).unwrap_or_default();
    let (Some("load"), Some(path), Some(image)) =
        (request["call"].as_str(), request["path"].as_str(), image)
    else {
        crate::logsink::line(&format!(
            "provtarget: {SERVE_COMMAND}: the first request must be a load with a descriptor"
        ));
        return 2;
    };
    let (record, plugin) = provtarget_loader::load_sealed(image, Path::new(path));
    let mut replies = &socket;
    if send(
        &mut replies,
        &wire::report(&record.verdict, record.plugin.as_ref()),
    )
    .is_err()
    {
        return 2;
    }
    let requests = match socket.try_clone() {
        Ok(s) => Cursor::new(rest).chain(s),
        Err(_) => return 2,
    };
    let Some(plugin) = plugin else {
        return 0;
    };
    let name = plugin.info.name.clone();
    let mut resolver = plugin.resolver;
    // A reader thread takes requests off the socket so that `cancel` can reach the
    // call in progress; calls run one at a time on this thread.
    let current: Arc<Mutex<Option<CancelToken>>> = Arc::default();
    let (calls, queue) = mpsc::channel::<Value>();
    let reader = {
        let current = Arc::clone(&current);
        thread::Builder::new()
            .name("requests".into())
            .spawn(move || {
                let cancel_current = || {
                    if let Some(token) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
                    {
                        token.cancel();
                    }
                };
                for line in BufReader::new(requests).lines() {
                    let Ok(line) = line else { break };
                    let Ok(request) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if request["call"] == "cancel" {
                        cancel_current();
                    } else if calls.send(request).is_err() {
                        break;
                    }
                }
                // The host closed the socket (or is gone): end what runs.
                cancel_current();
            })
    };
    if reader.is_err() {
        return 2;
    }
    for request in queue {
        let token = CancelToken::new();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        let ctx = ResolveContext::new(&name, token);
        let reply = match request["call"].as_str() {
            Some("configure") => {
                let pairs = pairs_of(&request["config"]);
                match resolver.configure(&ctx, &pairs) {
                    Ok(settings) => json!({"ok": settings}),
                    Err(e) => json!({"error": e}),
                }
            }
            Some("targets") => match resolver.targets(&ctx) {
                // An answer over the host's bounds is refused here, with the host's
                // own words, rather than sent (a million targets would be a line of
                // many MiB); the host reads (parses) every answer it gets, so one
                // within the bounds is sent as it is.
                Ok(list) => {
                    let list = RawTargets::from(list);
                    let refused = if crate::targets::within_bounds(&list) {
                        None
                    } else {
                        crate::targets::read_answer(&list).err()
                    };
                    match refused {
                        Some(crate::targets::AnswerError::Invalid(e)) => json!({"error": e}),
                        // The provenance goes bounded and escaped (the host's
                        // `provenance_shown` leaves such a text as it is).
                        _ => json!({"ok": {
                            "targets": list.to_vec(),
                            "provenance": list.provenance().map(crate::resolver::provenance_shown),
                        }}),
                    }
                }
                Err(e) => json!({"error": e}),
            },
            _ => json!({"error": "unknown request"}),
        };
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut reply = reply;
        reply["id"] = request["id"].clone();
        if send(&mut replies, &reply).is_err() {
            break;
        }
    }
    0
}

/// The socket the host gave as stdin, moved to a descriptor of its own, with
/// `/dev/null` put at 0 instead (before any plugin code runs here).
fn take_socket() -> std::io::Result<UnixStream> {
    use std::os::unix::fs::FileTypeExt;
    let socket = File::from(rustix::io::fcntl_dupfd_cloexec(
        std::io::stdin().as_fd(),
        3,
    )?);
    if !socket.metadata()?.file_type().is_socket() {
        return Err(std::io::Error::other("stdin is not a socket"));
    }
    let null = File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// Reads the first line and the descriptor sent with it; returns the line, any bytes
/// read past it, and the descriptor. `UnexpectedEof` when the host closed the socket
/// first.
fn receive_load(socket: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<u8>, Option<OwnedFd>)> {
    let mut got = Vec::new();
    let mut image = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // The first descriptor is the library; any other is closed here.
                for fd in fds {
                    image.get_or_insert(fd);
                }
            }
        }
        if received.bytes == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..received.bytes]);
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            let rest = got.split_off(end + 1);
            return Ok((got, rest, image));
        }
        if got.len() > MAX_LOAD_LINE {
            return Err(std::io::Error::other("the first line is too long"));
        }
    }
}
