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
//!   JSON-line requests over pipes after a handshake (magic cookie and protocol
//!   version, see [`wire`]). A crash, exit or hang is an error naming the plugin, the
//!   chain moves on, and the next call restarts the child after Choria's backoff.
//! - **None**: plugins run in this process; a plugin that kills it leaves last words
//!   (`provtarget_loader::last_words`).
//!
//! Children end with the host: the host kills and reaps them when the resolver is
//! dropped, and each child watches its parent and exits as soon as it is gone (the
//! Linux parent-death signal is not used: it fires when the *thread* that started the
//! child ends, and children are started from short-lived call threads).
#![forbid(unsafe_code)]

pub mod probe;
pub mod process;
pub mod wire;

use std::{
    ffi::OsString,
    fs::File,
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    sync::{Arc, OnceLock},
    thread,
    time::Duration,
};

use provtarget_loader::{
    last_words, load_with_gated, Gated, LibraryRecord, LoadReport, LoaderOptions, PluginFacts,
    Prepared, Verdict,
};

pub use crate::config::Isolation;
use crate::{
    config::HostConfig,
    host::{chain_plugins, load_for_chain, RemotePlugin},
    text::printable,
};

/// The hidden subcommand a probing child runs.
pub const PROBE_COMMAND: &str = "__probe";
/// The hidden subcommand a resolver child runs.
pub const SERVE_COMMAND: &str = "__serve";
/// How long a probing child may take when `plugin.provtarget.probe_timeout` is unset.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The executable run as a child (it must be a `provtarget` binary of the same build,
/// or a program that calls [`child_main`] for the hidden subcommands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper(pub PathBuf);

impl Helper {
    /// This executable, when it is the `provtarget` binary (an embedding program must
    /// name its helper: see [`crate::host::Host::start_with_helper`]).
    pub fn this_binary() -> Option<Helper> {
        let exe = std::env::current_exe().ok()?;
        let name = exe.file_name()?.to_str()?;
        (name == "provtarget").then_some(Helper(exe))
    }
}

/// Loads plugins as `config` says, under its isolation mode: `none` loads every
/// library here; `probe` loads here only what a child loaded first and survived;
/// `process` loads nothing here, and returns an adapter per library a child
/// approved. Without a helper, isolation cannot be had: plugins load here, with a
/// warning.
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
) -> (LoadReport, Vec<RemotePlugin>) {
    let mode = config.isolation();
    let helper = match (mode, helper) {
        (Isolation::None, _) => return (load_for_chain(config, options), Vec::new()),
        (_, Some(helper)) => helper,
        (_, None) => {
            let mut report = load_for_chain(config, options);
            if report.plugins.is_empty() {
                // Nothing of a plugin's runs here: nothing to warn about.
                return (report, Vec::new());
            }
            let w = format!(
                "plugin.provtarget.isolation = {mode} needs a helper executable, and this \
                 program names none; plugins run in this process (name one with \
                 Host::start_with_helper)"
            );
            tracing::warn!("{w}");
            report.warnings.push(w);
            return (report, Vec::new());
        }
    };
    let deadline = config.probe_timeout().unwrap_or(DEFAULT_PROBE_TIMEOUT);
    let mut remote = Vec::new();
    let chosen = config.resolvers();
    let mut gate = |prepared: Prepared| -> Gated {
        if let Some((verdict, facts)) = known_verdict(&prepared) {
            return match (mode, verdict) {
                (Isolation::Probe, Verdict::Loaded) => Gated::Load(prepared),
                (Isolation::Process, Verdict::Loaded) => match facts
                    .as_ref()
                    .map(|f| process::ProcessResolver::new(&prepared, f, helper))
                {
                    Some(Ok(resolver)) => {
                        remote.push((prepared.record().path.clone(), resolver));
                        Gated::Decided(prepared.decided_elsewhere(Verdict::Loaded, facts))
                    }
                    _ => Gated::Decided(prepared.decided_elsewhere(Verdict::Loaded, facts)),
                },
                (_, verdict) => Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
            };
        }
        match mode {
            Isolation::Process => {
                // The child that loads it is kept to serve it when it will likely be
                // used: named in the chain, or the first plugin when none is named.
                let first = remote.is_empty();
                let keep = |name: &str| {
                    if chosen.is_empty() {
                        first
                    } else {
                        chosen.iter().any(|c| c == name)
                    }
                };
                match process::start(&prepared, helper, deadline, keep) {
                    Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
                    Ok((verdict, facts, resolver)) => {
                        if let Some(resolver) = resolver {
                            remote.push((prepared.record().path.clone(), resolver));
                        }
                        Gated::Decided(prepared.decided_elsewhere(verdict, facts))
                    }
                }
            }
            _ => match probe::probe(&prepared, helper, deadline) {
                Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
                Ok((Verdict::Loaded, _)) => Gated::Load(prepared),
                Ok((verdict, facts)) => Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
            },
        }
    };
    let report = load_with_gated(options, |names| chain_plugins(config, names), &mut gate);
    // Adapters for the libraries whose record says loaded; a duplicate name (the first
    // file wins, as in-process: the loader refused the later record) has its child
    // ended here, when its adapter is dropped.
    let plugins = remote
        .into_iter()
        .filter_map(|(path, resolver)| {
            let record = report.libraries.iter().position(|l| l.path == path)?;
            (report.libraries[record].verdict == Verdict::Loaded).then(|| RemotePlugin {
                record,
                resolver: Box::new(resolver),
            })
        })
        .collect();
    (report, plugins)
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

/// The entry point of a child (`__probe PATH` or `__serve PATH`, after the program
/// name): call it first thing in `main` when the first argument is one of the hidden
/// subcommands.
pub fn child_main(args: &[OsString]) -> ExitCode {
    init_child_logging();
    let (Some(command), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("provtarget: {PROBE_COMMAND} and {SERVE_COMMAND} need a path");
        return ExitCode::from(2);
    };
    let path = PathBuf::from(path);
    watch_parent();
    match command.to_str() {
        Some(PROBE_COMMAND) => probe::child(&path),
        Some(SERVE_COMMAND) => process::child(&path),
        _ => {
            eprintln!("provtarget: unknown child command");
            ExitCode::from(2)
        }
    }
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
        .with_writer(std::io::stderr)
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

/// The child command: `helper <sub> <path>`, stdin and stdout `/dev/null`, stderr
/// piped (re-logged).
fn child_command(helper: &Helper, sub: &str, path: &Path) -> Command {
    let mut cmd = Command::new(&helper.0);
    cmd.arg(sub)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Re-logs a child's stderr through this process's `tracing`, each line tagged with
/// `plugin` (or `label`, once set: the plugin's name from the handshake) and escaped,
/// at the level the child's line starts with.
fn relog(child: &mut Child, plugin: String, label: Option<Arc<OnceLock<String>>>) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    let _ = thread::Builder::new()
        .name(format!("log {plugin}"))
        .spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
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
                let plugin = label
                    .as_ref()
                    .and_then(|l| l.get())
                    .unwrap_or(&plugin)
                    .as_str();
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
}

/// How a child ended, in words: `killed by signal 11 (SIGSEGV)`, `exited with status 3`.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => last_words::signal_text(signal),
        (None, Some(code)) => format!("exited with status {code}"),
        _ => format!("ended ({status})"),
    }
}

/// Writes one JSON line.
fn send(to: &mut File, value: &serde_json::Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    to.write_all(line.as_bytes())
}
