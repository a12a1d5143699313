//! Crash isolation: plugin code that crashes, aborts, exits or hangs never takes the
//! host down (`plugin.provtarget.isolation`, see [`Isolation`]).
//!
//! - **Probe** ([`probe`]): every library that passed the checks made from its bytes
//!   is loaded first by a child process (the helper executable, normally `provtarget`
//!   itself, run as `provtarget __probe PATH`), handed the sealed in-memory copy as
//!   descriptor 3; the child runs the remaining checks, `dlopen` and the constructor
//!   and writes one JSON line (verdict and plugin information) on the dedicated pipe
//!   at descriptor 4. Its stdin is `/dev/null`, its stdout `/dev/null` (a plugin's
//!   prints cannot corrupt the protocol), its stderr is re-logged by the host. A
//!   child that dies by a signal, exits without answering or stays silent past the
//!   deadline marks the library refused with that reason.
//! - **Process** ([`process`]): the active resolvers live in child processes
//!   (`provtarget __serve PATH`) for their whole life; `configure` and `targets` are
//!   typed JSON-line requests over a socket after a handshake (magic cookie and
//!   protocol version, see `protocol`), answered by the child's `server`. A
//!   crash, exit or hang (a `exit::ChildExit`) is an error naming the plugin, the
//!   chain moves on, and the next call restarts the child after Choria's backoff.
//! - **None**: plugins run in this process; a plugin that kills it leaves last words
//!   (`provtarget_loader::process::last_words`).
//!
//! Children end with the host: the host kills and reaps them when the resolver is
//! dropped, and each child watches its parent and exits as soon as it is gone (the
//! Linux parent-death signal is not used: it fires when the *thread* that started the
//! child ends, and children are started from short-lived call threads).
#![forbid(unsafe_code)]

mod exit;
pub mod probe;
pub mod process;
mod protocol;
mod server;
pub mod wire;

use std::{
    ffi::OsString,
    fs::File,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use provtarget_loader::{
    load_with_gated, Gated, LibraryRecord, LoadReport, LoaderOptions, PluginFacts, Prepared,
    Verdict,
};

pub use crate::config::Isolation;
use crate::{config::HostConfig, resolver::TargetResolver, text::printable};

/// The hidden subcommand a probing child runs.
pub const PROBE_COMMAND: &str = "__probe";
/// The hidden subcommand a resolver child runs.
pub const SERVE_COMMAND: &str = "__serve";
/// How long a probing child may take when `plugin.provtarget.probe_timeout` is unset.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The executable run as a child (it must be a `provtarget` binary of the same build,
/// or a program that calls [`child_main`] for the hidden subcommands), with the resolver
/// children started ahead of need ([`Helper::prestart`]). Clones share those children;
/// they end when the last clone is dropped.
#[derive(Clone)]
pub struct Helper {
    path: PathBuf,
    spares: Arc<Mutex<Vec<Waiting>>>,
}

/// A child started ahead of need: still being started (on a thread of its own, so
/// the caller does not wait for the `exec`), or started.
enum Waiting {
    Starting(std::sync::mpsc::Receiver<Option<process::Spare>>),
    Started(process::Spare),
}

impl Waiting {
    /// The started child, waiting for its start to finish if need be; `None` when it
    /// could not be started or has ended since.
    fn settle(self) -> Option<process::Spare> {
        let mut spare = match self {
            Waiting::Starting(started) => started.recv().ok().flatten()?,
            Waiting::Started(spare) => spare,
        };
        spare.alive().then_some(spare)
    }

    /// Whether it may still serve (a child being started counts).
    fn may_serve(&mut self) -> bool {
        match self {
            Waiting::Starting(_) => true,
            Waiting::Started(spare) => spare.alive(),
        }
    }
}

impl Helper {
    /// The helper executable at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Helper {
        Helper {
            path: path.into(),
            spares: Arc::default(),
        }
    }

    /// This executable, when it is the `provtarget` binary (an embedding program must
    /// name its helper: see the host's `Host::start_with_helper`).
    pub fn this_binary() -> Option<Helper> {
        let exe = std::env::current_exe().ok()?;
        let name = exe.file_name()?.to_str()?;
        (name == "provtarget").then(|| Helper::new(exe))
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts resolver children now, until `count` wait for a library, so that their
    /// start (an `exec` of the helper, the larger part of a child's cost) runs beside
    /// the host's own work (reading its configuration, scanning directories, checking
    /// libraries) instead of after it; each is started on a short-lived thread, so
    /// this returns at once. A waiting child knows nothing yet: it is handed its
    /// sealed copy of a library ([`process`]) only once that library passed every
    /// check here. Failing to start one is not an error: a child is then started when
    /// needed, as without this.
    pub fn prestart(&self, count: usize) {
        let mut spares = self.lock_spares();
        spares.retain_mut(Waiting::may_serve);
        while spares.len() < count {
            let (tx, rx) = std::sync::mpsc::channel();
            let helper = Helper::new(self.path.clone());
            let spawned = thread::Builder::new()
                .name("start child".into())
                .spawn(move || {
                    let spare = process::Spare::start(&helper)
                        .map_err(|e| {
                            tracing::debug!("cannot start a resolver process ahead of need: {e}")
                        })
                        .ok();
                    // Nobody waits any more (discarded): dropping it ends the child.
                    let _ = tx.send(spare);
                });
            if spawned.is_err() {
                break;
            }
            spares.push(Waiting::Starting(rx));
        }
    }

    /// Forks a resolver child from this process now, to wait for a library; for a
    /// program that is this helper (the `provtarget` command), early in `main`, while
    /// it has a single thread: a fork costs far less than starting the helper. Returns
    /// whether it did; without a fork (another thread runs, or it failed) it starts
    /// one the usual way ([`Helper::prestart`]). The copy never returns here: it
    /// serves and exits.
    ///
    /// A copy keeps this process's environment block as it was at `exec` (removing a
    /// variable does not erase it from `/proc/self/environ`), so when a `PROVTARGET_*`
    /// variable names a secret ([`crate::text::is_secret_key`]:
    /// `PROVTARGET_ETCD_PASSWORD`...) no copy is forked: the child is started the
    /// usual way, its environment cut to what it needs.
    pub fn fork_spare(&self) -> bool {
        let secret_in_env = std::env::vars_os().any(|(name, _)| {
            is_host_config_var(&name) && crate::text::is_secret_key(&name.to_string_lossy())
        });
        if secret_in_env {
            self.prestart(1);
            return false;
        }
        match process::Spare::fork() {
            Ok(spare) => {
                self.lock_spares().push(Waiting::Started(spare));
                true
            }
            Err(_) => {
                self.prestart(1);
                false
            }
        }
    }

    /// How many children wait for a library or are being started for one (without
    /// waiting for those being started).
    fn waiting(&self) -> usize {
        let mut spares = self.lock_spares();
        spares.retain_mut(Waiting::may_serve);
        spares.len()
    }

    /// How many started children wait for a library (waiting for those being started).
    pub fn spares(&self) -> usize {
        let mut spares = self.lock_spares();
        let settled: Vec<Waiting> = spares
            .drain(..)
            .filter_map(Waiting::settle)
            .map(Waiting::Started)
            .collect();
        *spares = settled;
        spares.len()
    }

    /// Ends the children that still wait for a library (none is needed any more).
    pub fn discard_spares(&self) {
        self.lock_spares().clear();
    }

    /// A waiting child that is still alive, if any.
    fn take_spare(&self) -> Option<process::Spare> {
        let mut spares = self.lock_spares();
        while let Some(waiting) = spares.pop() {
            if let Some(spare) = waiting.settle() {
                return Some(spare);
            }
        }
        None
    }

    fn lock_spares(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").field("path", &self.path).finish()
    }
}

impl PartialEq for Helper {
    /// The same executable (whatever children each has waiting).
    fn eq(&self, other: &Helper) -> bool {
        self.path == other.path
    }
}

impl Eq for Helper {}

/// A plugin whose resolver runs outside this process, reached through its adapter.
pub struct RemotePlugin {
    /// Its library's index in [`LoadReport::libraries`].
    pub record: usize,
    /// The adapter that reaches it.
    pub resolver: Box<dyn TargetResolver>,
}

/// The chain's plan, handed down by the host: given the accepted plugins' names in
/// scan order, the indices of those the chain would run (what the loader must load).
pub type ChainPlan<'a> = &'a dyn Fn(&[&str]) -> Vec<usize>;

/// Loads plugins as `config` says, under its isolation mode: `none` loads every
/// library here; `probe` loads here only what a child loaded first and survived;
/// `process` loads nothing here, and returns an adapter per library a child
/// approved. Without a helper, isolation cannot be had: plugins load here, with a
/// warning. `chain` is the selection's plan ([`ChainPlan`]).
///
/// With the verdict cache (`plugin.provtarget.cache_dir`) the loader answers for
/// unchanged files without reading them, so no child is started for them; only new
/// or changed files, and the plugins the chain will run, reach the gate. A library
/// the chain will run is always read, sealed, pinned and checked from its bytes
/// first; when the cache already holds its verdict ([`known_verdict`]) it is not
/// loaded in a child to learn it: probe mode loads it here, process mode gives it a
/// resolver whose child starts only when it is configured.
pub fn load(
    config: &HostConfig,
    options: &LoaderOptions,
    helper: Option<&Helper>,
    chain: ChainPlan<'_>,
) -> (LoadReport, Vec<RemotePlugin>) {
    let mode = config.isolation();
    let helper = match (mode, helper) {
        (Isolation::None, _) => return (provtarget_loader::load_with(options, chain), Vec::new()),
        (_, Some(helper)) => helper,
        (_, None) => return (load_without_helper(mode, options, chain), Vec::new()),
    };
    let mut gate = Gate {
        mode,
        helper,
        options,
        deadline: config.probe_timeout().unwrap_or(DEFAULT_PROBE_TIMEOUT),
        chosen: config.resolvers(),
        remote: Vec::new(),
    };
    // The chain's first resolver process starts now, beside the loader's work, unless
    // one already waits (the `provtarget` command forks one at start-up).
    if helper.waiting() == 0 && may_need_resolver_processes(mode, options) {
        helper.prestart(1);
    }
    let report = load_with_gated(options, chain, &mut |prepared| gate.judge(prepared));
    let plugins = approved(&report, gate.remote);
    if mode == Isolation::Process {
        prestart_chain(helper, &report, &plugins, chain);
    }
    let plugins = plugins
        .into_iter()
        .map(|p| RemotePlugin {
            record: p.record,
            resolver: Box::new(p.resolver),
        })
        .collect();
    (report, plugins)
}

/// [`load`] when isolation is asked for but this program names no helper: plugins
/// load here, with a warning (none when no plugin loaded).
fn load_without_helper(
    mode: Isolation,
    options: &LoaderOptions,
    chain: ChainPlan<'_>,
) -> LoadReport {
    let mut report = provtarget_loader::load_with(options, chain);
    if report.plugins.is_empty() {
        // Nothing of a plugin's runs here: nothing to warn about.
        return report;
    }
    let w = format!(
        "plugin.provtarget.isolation = {mode} needs a helper executable, and this \
         program names none; plugins run in this process (name one with \
         Host::start_with_helper)"
    );
    tracing::warn!("{w}");
    report.warnings.push(w);
    report
}

/// The loader's gate under `probe` or `process` isolation: each library that passed
/// the checks made from its bytes is judged by a child (or by its cached verdict);
/// `remote` collects the process mode's adapters.
struct Gate<'a> {
    mode: Isolation,
    helper: &'a Helper,
    options: &'a LoaderOptions,
    deadline: Duration,
    /// The resolvers the configuration names (`plugin.provtarget.resolvers`).
    chosen: &'a [String],
    remote: Vec<(PathBuf, process::ProcessResolver)>,
}

impl Gate<'_> {
    /// The verdict on `prepared`: known from the cache, or from a child.
    fn judge(&mut self, prepared: Prepared) -> Gated {
        if let Some((verdict, facts)) = known_verdict(&prepared) {
            return self.known(prepared, verdict, facts);
        }
        match self.mode {
            Isolation::Process => self.in_resolver_child(prepared),
            _ => match probe::probe(&prepared, self.helper, self.deadline) {
                Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
                Ok((Verdict::Loaded, _)) => Gated::Load(prepared),
                Ok((verdict, facts)) => Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
            },
        }
    }

    /// A library whose verdict the cache holds: probe mode loads an approved one
    /// here; process mode gives it a resolver whose child starts when configured.
    fn known(&mut self, prepared: Prepared, verdict: Verdict, facts: Option<PluginFacts>) -> Gated {
        let facts_ref = match (self.mode, &verdict, &facts) {
            (Isolation::Probe, Verdict::Loaded, _) => return Gated::Load(prepared),
            (Isolation::Process, Verdict::Loaded, Some(facts)) => facts,
            _ => return Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
        };
        match process::ProcessResolver::new(&prepared, facts_ref, self.helper) {
            Ok(mut resolver) => {
                // Facts from the cache: the first child checks them.
                resolver.described_by_cache(
                    self.options.cache_dir.clone(),
                    self.options.insecure_skip_owner_checks,
                );
                self.remote.push((prepared.record().path.clone(), resolver));
                Gated::Decided(prepared.decided_elsewhere(Verdict::Loaded, facts))
            }
            // Never "loaded" without a resolver: the operator must see why the plugin
            // does not run.
            Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
        }
    }

    /// Process mode: loads `prepared` in a resolver child, which is kept to serve it
    /// when it will likely be used: named in the chain, or the first plugin when none
    /// is named.
    fn in_resolver_child(&mut self, prepared: Prepared) -> Gated {
        let first = self.remote.is_empty();
        let chosen = self.chosen;
        let keep = |name: &str| {
            if chosen.is_empty() {
                first
            } else {
                chosen.iter().any(|c| c == name)
            }
        };
        match process::start(&prepared, self.helper, self.deadline, keep) {
            Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
            Ok((verdict, facts, resolver)) => {
                if let Some(resolver) = resolver {
                    self.remote.push((prepared.record().path.clone(), resolver));
                }
                Gated::Decided(prepared.decided_elsewhere(verdict, facts))
            }
        }
    }
}

/// The adapters whose library's record says loaded; a duplicate name (the first file
/// wins, as in-process: the loader refused the later record) has its child ended
/// here, when its adapter is dropped.
fn approved(
    report: &LoadReport,
    remote: Vec<(PathBuf, process::ProcessResolver)>,
) -> Vec<Approved> {
    remote
        .into_iter()
        .filter_map(|(path, resolver)| {
            let record = report.libraries.iter().position(|l| l.path == path)?;
            (report.libraries[record].verdict == Verdict::Loaded).then(|| Approved {
                record,
                name: resolver.name_str().to_string(),
                has_child: resolver.has_child(),
                resolver,
            })
        })
        .collect()
}

/// Each of the chain's resolvers with no process yet gets one now, all started side
/// by side rather than one after another as each is configured.
fn prestart_chain(
    helper: &Helper,
    report: &LoadReport,
    plugins: &[Approved],
    chain: ChainPlan<'_>,
) {
    let names: Vec<&str> = report
        .libraries
        .iter()
        .filter(|l| l.verdict == Verdict::Loaded)
        .filter_map(|l| Some(l.plugin.as_ref()?.info.name.as_str()))
        .collect();
    let chain: Vec<&str> = chain(&names)
        .into_iter()
        .filter_map(|i| names.get(i).copied())
        .collect();
    let waiting = plugins
        .iter()
        .filter(|p| !p.has_child && chain.contains(&p.name.as_str()))
        .count();
    helper.prestart(waiting);
}

/// Whether resolver processes may be needed: `process` isolation and a plugin
/// directory that may hold a plugin ([`may_hold_plugins`]); else none is started
/// ahead of need.
pub fn may_need_resolver_processes(mode: Isolation, options: &LoaderOptions) -> bool {
    mode == Isolation::Process && may_hold_plugins(options)
}

/// Whether any plugin directory of `options` may hold a plugin: it exists and lists a
/// library file name. A directory with more entries than are worth listing twice
/// counts as holding one.
pub fn may_hold_plugins(options: &LoaderOptions) -> bool {
    const LOOK_AT: usize = 1_000;
    options.directories.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.take(LOOK_AT + 1).enumerate().any(|(i, e)| {
                i == LOOK_AT
                    || e.is_ok_and(|e| provtarget_loader::is_candidate_name(&e.file_name()))
            })
        })
    })
}

/// A library approved for a resolver process, before it joins the host.
struct Approved {
    record: usize,
    name: String,
    has_child: bool,
    resolver: process::ProcessResolver,
}

/// The verdict on `prepared` when it is already known without loading it: what the
/// verdict cache recorded for this unchanged file (same identity, and the same
/// SHA-256 when both the cache and this run hashed it) under this host's build.
/// `None` for a new or changed file, or without a cache: it must be loaded in a
/// child to be judged.
pub fn known_verdict(prepared: &Prepared) -> Option<(Verdict, Option<PluginFacts>)> {
    let cached = prepared.cached_verdict()?;
    let hashed_now = prepared.record().file.as_ref()?.sha256.as_ref();
    if let (Some(now), Some(then)) = (hashed_now, cached.sha256.as_ref()) {
        if now != then {
            return None;
        }
    }
    let verdict = match &cached.refusal {
        None if cached.plugin.is_some() => Verdict::Loaded,
        None => return None,
        Some(refusal) => Verdict::Rejected(refusal.clone()),
    };
    Some((verdict, cached.plugin.clone()))
}

/// `plugins check`: every check on one file, the code-running ones in a child (the
/// inspector never runs the file's code), which gets `deadline` (default
/// [`DEFAULT_PROBE_TIMEOUT`]).
pub fn check_file(
    path: &Path,
    options: &LoaderOptions,
    helper: &Helper,
    deadline: Option<Duration>,
) -> LibraryRecord {
    let prepared = match provtarget_loader::prepare_file(path, options) {
        Ok(prepared) => prepared,
        Err(record) => return *record,
    };
    match probe::probe(&prepared, helper, deadline.unwrap_or(DEFAULT_PROBE_TIMEOUT)) {
        Ok((verdict, facts)) => prepared.decided_elsewhere(verdict, facts),
        Err(refusal) => prepared.refuse(refusal),
    }
}

/// The entry point of a child (`__probe PATH` or `__serve`, after the program name):
/// call it first thing in `main` when the first argument is one of the hidden
/// subcommands.
pub fn child_main(args: &[OsString]) -> ExitCode {
    init_child_logging();
    // The host logs each verdict this child reports, once.
    provtarget_loader::log_verdicts(false);
    watch_parent();
    match (args.first().and_then(|c| c.to_str()), args.get(1)) {
        (Some(PROBE_COMMAND), Some(path)) => probe::child(Path::new(path)),
        (Some(SERVE_COMMAND), None) => server::child(),
        _ => {
            crate::logsink::line(&format!(
                "provtarget: {PROBE_COMMAND} needs a path and {SERVE_COMMAND} none; they are \
                 run by provtarget itself"
            ));
            ExitCode::from(2)
        }
    }
}

/// A `__serve` child's work after its stdio is set (by `exec` or by a fork): logging,
/// the parent watch, then serving; its exit status.
fn serve_main() -> u8 {
    init_child_logging();
    provtarget_loader::log_verdicts(false);
    watch_parent();
    server::serve()
}

/// Whether the first argument names a child's hidden subcommand.
pub fn is_child_command(first: Option<&OsString>) -> bool {
    first.is_some_and(|a| a == PROBE_COMMAND || a == SERVE_COMMAND)
}

/// A child's log lines: plain, one per event, `LEVEL message fields`, re-logged by the
/// host with the plugin's name.
/// Every level is written: the host's own filter decides what is shown.
fn init_child_logging() {
    tracing_subscriber::fmt()
        // Never an error, never a panic: see `crate::logsink`.
        .with_writer(crate::logsink::Stderr)
        .log_internal_errors(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .init();
}

/// Ends this child as soon as its parent is gone (the host crashed or was killed).
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    let _ = thread::Builder::new()
        .name("watch parent".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        });
}

/// Opens descriptor `n` this process inherited (through `/proc/self/fd`, so no unsafe
/// code is needed to adopt a raw descriptor).
fn inherited(n: i32, write: bool) -> std::io::Result<File> {
    let path = format!("/proc/self/fd/{n}");
    if write {
        std::fs::OpenOptions::new().write(true).open(path)
    } else {
        File::open(path)
    }
}

/// A pipe whose both ends are close-on-exec.
fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// The probing child's command: `helper __probe <path>`, stdin and stdout `/dev/null`,
/// stderr piped (re-logged).
fn child_command(helper: &Helper, sub: &str, path: &Path) -> Command {
    let mut cmd = Command::new(&helper.path);
    cmd.arg(sub)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    scrub_env(&mut cmd);
    cmd
}

/// Whether an environment variable is one of the host's own configuration
/// (`PROVTARGET_*`, which may carry secrets: a password given as
/// `PROVTARGET_ETCD_PASSWORD`). A child never needs them: it gets its configuration
/// from the host, over its socket, for the one plugin it serves.
fn is_host_config_var(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().starts_with(b"PROVTARGET_")
}

/// A child's environment: this process's, without its configuration variables
/// ([`is_host_config_var`]).
pub(crate) fn scrub_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if is_host_config_var(&name) {
            cmd.env_remove(name);
        }
    }
}

/// [`scrub_env`] for a forked child, in its own environment (while it has a single
/// thread).
pub(crate) fn scrub_own_env() {
    for (name, _) in std::env::vars_os() {
        if is_host_config_var(&name) {
            std::env::remove_var(name);
        }
    }
}

/// The name a child's log lines are tagged with, changed as it becomes known (a
/// library's path when the child is handed it, then the plugin's own name from the
/// handshake). Shared by the host's side of the child and its log thread.
#[derive(Clone, Default)]
pub(crate) struct LogLabel(Arc<Mutex<String>>);

impl LogLabel {
    fn new(text: &str) -> LogLabel {
        LogLabel(Arc::new(Mutex::new(printable(text))))
    }

    /// From now on lines are tagged `text` (escaped).
    fn set(&self, text: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = printable(text);
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Re-logs a child's stderr (`stderr`, the read end of its pipe) through this process's `tracing`, each line tagged with
/// `label` as it is when the line arrives, and escaped, at the level the child's line
/// starts with.
///
/// With a `flush` marker: a line ending with it is not logged (what precedes the
/// marker is) and answers on the returned channel: the host writes the marker into
/// the pipe itself (it keeps a write end) to learn that every line the child wrote
/// before is logged (see [`LogFlush`]).
fn relog(
    stderr: impl std::io::Read + Send + 'static,
    label: LogLabel,
    flush: Option<Vec<u8>>,
) -> std::sync::mpsc::Receiver<()> {
    let (flushed, acks) = std::sync::mpsc::channel::<()>();
    let _ = thread::Builder::new()
        .name("child log".into())
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let cut = match read_line_bounded(&mut reader, &mut line, MAX_LOG_LINE) {
                    Ok(Bounded::Line) => {
                        line.pop();
                        false
                    }
                    Ok(Bounded::Long) => {
                        line.truncate(MAX_LOG_LINE);
                        // The rest of that line is read and dropped.
                        let mut rest = Vec::new();
                        while let Ok(Bounded::Long) =
                            read_line_bounded(&mut reader, &mut rest, MAX_LOG_LINE)
                        {
                            rest.clear();
                        }
                        true
                    }
                    Ok(Bounded::End) if !line.is_empty() => false,
                    Ok(Bounded::End) | Err(_) => break,
                };
                if let Some(marker) = &flush {
                    if !cut && line.ends_with(marker) {
                        line.truncate(line.len() - marker.len());
                        let _ = flushed.send(());
                        if line.is_empty() {
                            continue;
                        }
                    }
                }
                if cut {
                    line.extend_from_slice(b" [line cut at 64 KiB]");
                }
                let text = String::from_utf8_lossy(&line);
                let trimmed = text.trim_start();
                let (level, rest) = trimmed.split_once(' ').unwrap_or(("", trimmed));
                let mut rest = rest.trim_start();
                // The child's own `plugin="..."` field: the host adds its own.
                if let Some(at) = rest.rfind(" plugin=\"") {
                    if rest.ends_with('"') {
                        rest = &rest[..at];
                    }
                }
                let message = printable(rest);
                let plugin = label.get();
                let plugin = plugin.as_str();
                match level {
                    "ERROR" => tracing::error!(plugin, "{message}"),
                    "WARN" => tracing::warn!(plugin, "{message}"),
                    "INFO" => tracing::info!(plugin, "{message}"),
                    "DEBUG" => tracing::debug!(plugin, "{message}"),
                    "TRACE" => tracing::trace!(plugin, "{message}"),
                    _ => {
                        let message = printable(&text);
                        tracing::warn!(plugin, "plugin output: {message}")
                    }
                }
            }
        });
    acks
}

/// The host's way to wait for a child's last log lines without waiting for the child
/// to be torn down: it keeps a write end of the child's stderr pipe and writes a
/// marker line into it; the log thread answers once it reaches the marker, every
/// line the child wrote before having been logged.
pub(crate) struct LogFlush {
    write_end: File,
    /// The read end too (the log thread owns another descriptor of it): how much
    /// waits in the pipe, so the marker is written only when it cannot block.
    read_end: Option<File>,
    marker: Vec<u8>,
    acks: std::sync::mpsc::Receiver<()>,
}

impl LogFlush {
    /// A pipe for a child's stderr (both ends close-on-exec here): the write end to
    /// give the child, the read end re-logged under `label`, and the flush.
    pub(crate) fn pipe(label: &LogLabel) -> std::io::Result<(File, LogFlush)> {
        let (read_end, write_end) = pipe()?;
        let theirs = write_end.try_clone()?;
        Ok((theirs, LogFlush::over(read_end, write_end, label)))
    }

    /// Re-logs `read_end` under `label`, keeping `write_end` for the flush.
    pub(crate) fn over(read_end: File, write_end: File, label: &LogLabel) -> LogFlush {
        use std::hash::{BuildHasher, Hasher};
        let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
        nonce.write_u32(std::process::id());
        let marker = format!("\u{1b}provtarget log flush {:016x}", nonce.finish()).into_bytes();
        let probe = read_end.try_clone().ok();
        let acks = relog(read_end, label.clone(), Some(marker.clone()));
        LogFlush {
            write_end,
            read_end: probe,
            marker,
            acks,
        }
    }

    /// Waits (at most `wait`) until every line written to the pipe so far is logged.
    /// Does not wait when the pipe is too full to take the marker without blocking
    /// (the log thread is stuck, e.g. on a stderr nobody reads).
    pub(crate) fn flush(&mut self, wait: std::time::Duration) {
        let mut line = self.marker.clone();
        line.push(b'\n');
        let room = self.read_end.as_ref().and_then(|r| {
            let size = rustix::pipe::fcntl_getpipe_size(r).ok()?;
            let queued = rustix::io::ioctl_fionread(r).ok()?;
            Some(size.saturating_sub(usize::try_from(queued).ok()?))
        });
        if room.is_some_and(|room| room > line.len()) && self.write_end.write_all(&line).is_ok() {
            let _ = self.acks.recv_timeout(wait);
        }
    }
}

/// The longest line of a child's stderr re-logged as it is; a longer one is cut
/// (a plugin printing without end must not exhaust the host's memory).
const MAX_LOG_LINE: usize = 64 * 1024;

/// How [`read_line_bounded`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bounded {
    /// A whole line, its `\n` included, is in the buffer.
    Line,
    /// More than the bound and no `\n` yet: the buffer holds `max + 1` bytes.
    Long,
    /// The end of the stream (the buffer holds what came after the last `\n`).
    End,
}

/// Appends the next line of `reader` to `buf`, never holding more than `max + 1` bytes
/// of it: a line must fit in `max` bytes, its `\n` excluded. A read error (a timeout)
/// leaves what was read in `buf`, so a later call completes the line.
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Bounded> {
    use std::io::Read;
    let room = (max + 1).saturating_sub(buf.len()) as u64;
    reader.by_ref().take(room).read_until(b'\n', buf)?;
    Ok(if buf.last() == Some(&b'\n') {
        Bounded::Line
    } else if buf.len() > max {
        Bounded::Long
    } else {
        Bounded::End
    })
}
