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
    last_words, load_all_gated, Gated, LibraryRecord, LoadReport, LoaderOptions, PluginFacts,
    Prepared, Refusal, RefusalKind, Stage, Verdict,
};

pub use crate::config::Isolation;
use crate::{config::HostConfig, host::RemotePlugin, text::printable};

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
pub fn load(
    config: &HostConfig,
    options: &LoaderOptions,
    helper: Option<&Helper>,
) -> (LoadReport, Vec<RemotePlugin>) {
    let mode = config.isolation();
    let helper = match (mode, helper) {
        (Isolation::None, _) => return (provtarget_loader::load_all(options), Vec::new()),
        (_, Some(helper)) => helper,
        (_, None) => {
            let mut report = provtarget_loader::load_all(options);
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
    let mut report = load_all_gated(options, &mut gate);
    // Duplicate names: the first file wins, as in-process (the child cannot know what
    // else is loaded).
    let mut plugins = Vec::new();
    let mut seen: Vec<(String, PathBuf)> = report
        .plugins
        .iter()
        .map(|p| (p.info.name.clone(), report.libraries[p.record].path.clone()))
        .collect();
    for (path, resolver) in remote {
        let Some(record) = report.libraries.iter().position(|l| l.path == path) else {
            continue;
        };
        let name = resolver.name_str().to_string();
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let reason = format!(
                "{}: plugin {} is already loaded from {}; remove one of the two files",
                printable(&path.to_string_lossy()),
                printable(&name),
                printable(&first.to_string_lossy())
            );
            report.libraries[record].verdict = Verdict::Rejected(Refusal::new(
                Stage::Duplicate,
                RefusalKind::Duplicate,
                reason,
            ));
            continue;
        }
        seen.push((name, path));
        plugins.push(RemotePlugin {
            record,
            resolver: Box::new(resolver),
        });
    }
    (report, plugins)
}

/// The verdict on `prepared` when it is already known without loading it: the hook
/// for the verdict cache (keyed by the library's identity and this host's build).
/// Until that cache exists, nothing is known and every library is probed.
pub fn known_verdict(_prepared: &Prepared) -> Option<(Verdict, Option<PluginFacts>)> {
    None
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
