//! A resolver that lives in a child process for its whole life: [`ProcessResolver`]
//! (the host's side, a native [`TargetResolver`]) and [`child`]
//! (`provtarget __serve PATH`).
//!
//! Protocol (JSON lines): the child's first line on its reply pipe is the handshake,
//! [`wire::report`] (magic cookie, protocol version, verdict, plugin information).
//! Then each request `{"id": N, "call": "configure", "config": [[key, value]...]}` or
//! `{"id": N, "call": "targets"}` gets one reply `{"id": N, "ok": ...}` or
//! `{"id": N, "error": "..."}`. `{"call": "cancel"}` cancels the call in progress (the
//! resolver's context is cancelled and its answer, usually its last error, is the
//! reply); a child that does not answer within [`CANCEL_GRACE`] is killed. The child's
//! log lines go to its stderr and are re-logged by the host with the plugin's name.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Child, ExitCode},
    sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock},
    thread,
    time::{Duration, Instant},
};

use provtarget_abi::backoff;
use provtarget_loader::{PluginFacts, Prepared, Verdict};

use serde_json::{json, Value};

use super::{
    child_command, describe_exit, inherited, pipe, relog, send, wire, Helper,
    DEFAULT_PROBE_TIMEOUT, SERVE_COMMAND,
};
use crate::{
    resolver::{CancelToken, RawTargets, ResolveContext, Settings, TargetResolver},
    text::printable,
};

/// The descriptor the child reads requests from.
pub const REQUEST_FD: i32 = 4;
/// The descriptor the child writes replies to.
pub const REPLY_FD: i32 = 5;

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
    child: Child,
    requests: File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    /// `facts`); no child runs until `configure`.
    pub fn new(
        prepared: &Prepared,
        facts: &PluginFacts,
        helper: &Helper,
    ) -> std::io::Result<ProcessResolver> {
        let image = prepared
            .sealed_fd()
            .ok_or_else(|| std::io::Error::other("no sealed copy"))?
            .try_clone_to_owned()?;
        Ok(ProcessResolver {
            name: facts.info.name.clone(),
            version: facts.info.version.clone(),
            path: prepared.record().path.clone(),
            image: File::from(image),
            helper: helper.clone(),
            config: None,
            state: Mutex::default(),
        })
    }

    /// The plugin's name.
    pub fn name_str(&self) -> &str {
        &self.name
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
            &self.name,
            DEFAULT_PROBE_TIMEOUT,
        ) {
            Ok((running, hello)) => match wire::parse(&hello) {
                Ok((Verdict::Loaded, _)) => Ok(running),
                Ok((verdict, _)) => Err(format!(
                    "the resolver process could not load the plugin: {}",
                    verdict.reason().unwrap_or("refused")
                )),
                Err(e) => Err(e),
            },
            Err(Launch::Io(e)) => Err(format!("cannot start the resolver process: {e}")),
            Err(Launch::Ended(status)) => Err(ended_text(&describe_exit(status))),
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
            match running.replies.recv_timeout(Duration::from_millis(20)) {
                Ok(reply) if reply["id"] == id => {
                    return match cancelled_at {
                        Some(_) => Err(Lost::CancelledAnswered(reply)),
                        None => Ok(reply),
                    }
                }
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => match cancelled_at {
                    None if ctx.token().is_cancelled() => {
                        cancelled_at = Some(Instant::now());
                        let _ = send(&mut running.requests, &json!({"call": "cancel"}));
                    }
                    Some(at) if at.elapsed() >= CANCEL_GRACE => return Err(Lost::Cancelled),
                    _ => {}
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = running.child.wait().map(describe_exit);
                    return Err(Lost::Ended(ended_text(
                        &status.unwrap_or_else(|e| e.to_string()),
                    )));
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
        tracing::error!(plugin = self.name.as_str(), "{text}");
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

/// Starts `helper __serve path` on the sealed copy `image` and reads its handshake
/// (within `deadline`).
fn launch(
    image: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    helper: &Helper,
    log_name: &str,
    deadline: Duration,
) -> Result<(Running, Value), Launch> {
    let (req_r, requests) = pipe().map_err(Launch::Io)?;
    let (replies_r, reply_w) = pipe().map_err(Launch::Io)?;
    let mut cmd = child_command(helper, SERVE_COMMAND, path);
    let mut child = provtarget_loader::child::spawn_with_fds(
        &mut cmd,
        &[
            (image, super::probe::IMAGE_FD),
            (req_r.as_fd(), REQUEST_FD),
            (reply_w.as_fd(), REPLY_FD),
        ],
    )
    .map_err(Launch::Io)?;
    drop((req_r, reply_w));
    let label = Arc::new(OnceLock::new());
    relog(&mut child, printable(log_name), Some(Arc::clone(&label)));
    let (tx, replies) = mpsc::channel();
    let _ = thread::Builder::new()
        .name(format!("replies {log_name}"))
        .spawn(move || {
            for line in BufReader::new(replies_r).lines() {
                let Ok(line) = line else { break };
                // A line that is not JSON cannot come from the protocol (stdout is
                // /dev/null); ignore it.
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
    let mut running = Running {
        child,
        requests,
        replies,
        next_id: 1,
    };
    match running.replies.recv_timeout(deadline) {
        Ok(hello) => {
            // From now on the child's lines are tagged with the plugin's own name.
            if let Some(name) = hello["plugin"]["name"].as_str() {
                let _ = label.set(printable(name));
            }
            Ok((running, hello))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match running.child.wait() {
            Ok(status) => Err(Launch::Ended(status)),
            Err(e) => Err(Launch::Io(e)),
        },
        // Dropping `running` kills and reaps the child.
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Launch::Silent),
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
    let (running, hello) = match launch(image, path, helper, &p, deadline) {
        Ok(ok) => ok,
        Err(Launch::Io(e)) => {
            return Err(provtarget_loader::Refusal::new(
                provtarget_loader::Stage::Load,
                provtarget_loader::RefusalKind::CrashedWhileLoading,
                format!(
                    "{p}: cannot start the helper {} to load it in a child: {e}",
                    printable(&helper.0.to_string_lossy())
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
        (Verdict::Loaded, Some(facts)) => {
            let mut resolver = ProcessResolver::new(prepared, facts, helper).map_err(|e| {
                provtarget_loader::Refusal::new(
                    provtarget_loader::Stage::Load,
                    provtarget_loader::RefusalKind::Unreadable,
                    format!("{p}: cannot keep its sealed copy for the resolver process: {e}"),
                )
            })?;
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

fn ended_text(how: &str) -> String {
    if how.starts_with("killed by signal") {
        format!("the resolver process crashed: {how}")
    } else {
        format!("the resolver process {how}")
    }
}

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
    ) -> Result<Settings, String> {
        // Kept for a restarted child, which is configured again before its call.
        self.config = Some(crate::host::config_pairs(config));
        let pairs = self.config.clone().unwrap_or_default();
        let ok = self.request(ctx, json!({"call": "configure", "config": pairs}))?;
        Ok(pairs_of(&ok))
    }
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, String> {
        let ok = self.request(ctx, json!({"call": "targets"}))?;
        let list: Vec<String> = ok
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RawTargets::from(list))
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

/// The child: loads the sealed copy, sends the handshake, then answers requests until
/// the host closes the request pipe.
pub fn child(path: &Path) -> ExitCode {
    let fds = (
        inherited(REPLY_FD, true),
        inherited(REQUEST_FD, false),
        inherited(super::probe::IMAGE_FD, false),
    );
    let (Ok(mut replies), Ok(requests), Ok(image)) = fds else {
        eprintln!("provtarget: {SERVE_COMMAND} is missing its descriptors");
        return ExitCode::from(2);
    };
    let (record, plugin) = provtarget_loader::load_sealed(image.into(), path);
    if send(
        &mut replies,
        &wire::report(&record.verdict, record.plugin.as_ref()),
    )
    .is_err()
    {
        return ExitCode::from(2);
    }
    let Some(plugin) = plugin else {
        return ExitCode::SUCCESS;
    };
    let name = plugin.info.name.clone();
    let mut resolver = plugin.resolver;
    // A reader thread takes requests off the pipe so that `cancel` can reach the call
    // in progress; calls run one at a time on this thread.
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
                // The host closed the pipe (or is gone): end what runs.
                cancel_current();
            })
    };
    if reader.is_err() {
        return ExitCode::from(2);
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
                Ok(list) => json!({"ok": RawTargets::from(list).to_vec()}),
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
    ExitCode::SUCCESS
}
