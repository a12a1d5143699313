//! The `provtarget` command: `buildinfo`, `targets` and `plugins check`.
#![forbid(unsafe_code)]

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicI32, Ordering},
        Arc, Mutex,
    },
};

use clap::Parser;
use provtarget::{
    broker_check::{self, Mode as BrokerMode},
    buildinfo,
    cli::{Cli, Command, PluginsCommand},
    config::{ConfigBuilder, HostConfig},
    host::Host,
    plumbing::Helper,
    resolver::CancelToken,
    text::printable,
};
use provtarget_loader::{LoaderOptions, Verdict};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if provtarget::plumbing::is_child_command(args.first()) {
        // A child of this host's crash isolation (hidden subcommands).
        return provtarget::plumbing::child_main(&args);
    }
    if let Err(e) = stdout_is_open() {
        say(&e);
        return ExitCode::from(EXIT_OUTPUT_ERROR);
    }
    let cli = parse_cli();
    let log_level = cli.log_level;
    // The commands that start a host read their configuration first, so that under
    // process isolation the first resolver process starts now and its start runs
    // beside this process's own (the signal thread, scanning and checking plugins).
    let helper = this_helper();
    let job = job_of(cli.command);
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            say(e.as_str());
            return ExitCode::from(2);
        }
    };
    // The first library whose signature will be checked, opened now and copied and
    // hashed on a thread of its own from just after the fork (provtarget_loader's
    // `early`): that work then runs beside this process's own start.
    let mut early = None;
    if let Job::Buildinfo(config, _) | Job::Targets(config, _) = &job {
        let options = config.loader_options();
        early = provtarget_loader::process::early::pick(&options);
        if let Some(helper) = &helper {
            if provtarget::plumbing::may_need_resolver_processes(config.isolation(), &options) {
                // While this process has one thread: a fork, not an exec (see
                // fork_spare).
                helper.fork_spare();
            }
        }
    }
    if let Some(early) = early {
        early.start();
    }
    // Before any plugin code can run: a plugin that kills the process still leaves one
    // line naming itself and the call (not in the forked child above, which, like an
    // exec'd one, reports through its host).
    provtarget_loader::process::last_words::install();
    if let Err(e) = init_logging(log_level.as_deref()) {
        say(&e);
        return ExitCode::from(2);
    }
    let signals = Signals::watch();
    let text_output = match &job {
        Job::Buildinfo(_, json) | Job::Targets(_, json) => !json,
        Job::Check { json, .. } => !json,
    };
    let result = run(job, helper, &signals);
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            say(&e);
            ExitCode::from(2)
        }
    };
    report_dropped_log_lines(text_output);
    code
}

/// The job a command asks for, with the host configuration it reads (an error is the
/// one line for exit 2).
fn job_of(command: Command) -> Result<Job, provtarget::config::ConfigError> {
    match command {
        Command::Buildinfo { host, json } => host.config(None).map(|c| Job::Buildinfo(c, json)),
        Command::Targets {
            host,
            timeout,
            json,
        } => host
            .config(timeout.as_deref())
            .map(|c| Job::Targets(c, json)),
        Command::Plugins {
            command:
                PluginsCommand::Check {
                    file,
                    pins,
                    insecure_skip_owner_checks,
                    json,
                },
        } => Ok(Job::Check {
            file,
            pins,
            insecure: insecure_skip_owner_checks,
            json,
        }),
    }
}

/// Runs the job: its exit status, or the one line for exit 2.
fn run(job: Job, helper: Option<Helper>, signals: &Signals) -> Result<ExitCode, String> {
    match job {
        Job::Buildinfo(config, json) => buildinfo_cmd(config, helper, json),
        Job::Targets(config, json) => targets_cmd(config, helper, json, signals),
        Job::Check {
            file,
            pins,
            insecure,
            json,
        } => check_cmd(&file, pins, insecure, json, helper),
    }
}

/// The command line, parsed. `--help` and `--version` are printed through [`emit`], so
/// they follow the exit-code table (141 for a closed pipe, 74 for a full disk) instead
/// of exiting 0 with nothing printed; a usage error is exit 2 with clap's text on
/// stderr.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                if e.exit_code() == 0 =>
            {
                emit(&e.render().to_string());
                std::process::exit(0)
            }
            _ => {
                // Usage errors go to stderr (dropped, not fatal, if it is broken).
                let text = e.render().to_string();
                provtarget::plumbing::logsink::line(text.trim_end());
                std::process::exit(e.exit_code())
            }
        },
    }
}

/// Whether descriptor 1 was open when this process started. A closed stdout is an
/// error, not a silent success: Rust's start-up code puts `/dev/null` on a closed
/// descriptor 0–2 (opened read-write), so everything printed would be lost while the
/// exit status says 0. A `/dev/null` opened read-write on descriptor 1 is taken for
/// that (a shell's `>/dev/null` opens it write-only). Err: the one-line message.
fn stdout_is_open() -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return Ok(());
    };
    // /dev/null is character device 1:3 on Linux.
    let is_null = meta.file_type().is_char_device() && meta.rdev() == (1 << 8 | 3);
    let read_write = std::fs::read_to_string("/proc/self/fdinfo/1").is_ok_and(|info| {
        info.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|flags| flags & 0o3 == 0o2)
    });
    if is_null && read_write {
        return Err(
            "stdout (descriptor 1) was closed when provtarget started; nothing \
                    could be printed: run it with its output sent somewhere (a file, a pipe \
                    or >/dev/null)"
                .to_string(),
        );
    }
    Ok(())
}

/// Log lines that could not be written to stderr are reported once at the end: on
/// stderr if it works again, else (text output only, never inside JSON) as the last
/// line of stdout, the one channel left.
fn report_dropped_log_lines(text_output: bool) {
    let repeated = provtarget::plumbing::logsink::suppressed();
    if repeated > 0 {
        say(&format!(
            "{repeated} repeated log line(s) were not written (each line is written at most \
             {} times)",
            provtarget::plumbing::logsink::MAX_REPEATS
        ));
    }
    let Some(summary) = provtarget::plumbing::logsink::dropped_summary() else {
        return;
    };
    let before = provtarget::plumbing::logsink::dropped();
    provtarget::plumbing::logsink::line(&summary);
    if provtarget::plumbing::logsink::dropped() > before && text_output {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{summary}").and_then(|()| out.flush());
    }
}

/// What to do, its configuration read.
enum Job {
    Buildinfo(HostConfig, bool),
    Targets(HostConfig, bool),
    Check {
        file: PathBuf,
        pins: Option<PathBuf>,
        insecure: bool,
        json: bool,
    },
}

/// Exit status when stdout is a closed pipe (`provtarget buildinfo | head -1`): what a
/// shell reports for a process killed by SIGPIPE (128 + 13), so `set -o pipefail`
/// scripts see the output was cut short. Nothing is written to stderr.
const EXIT_BROKEN_PIPE: u8 = 141;

/// Exit status when stdout cannot be written for another reason (a full disk,
/// `> /dev/full`): sysexits' EX_IOERR, with one line on stderr.
const EXIT_OUTPUT_ERROR: u8 = 74;

/// One line on stderr, `provtarget: ` first. A stderr that cannot be written is
/// dropped and counted ([`provtarget::plumbing::logsink`]; `eprintln!` would panic).
fn say(message: &str) {
    provtarget::plumbing::logsink::line(&format!("provtarget: {message}"));
}

/// Writes `text` to stdout and flushes it. A closed pipe ends the process quietly
/// with [`EXIT_BROKEN_PIPE`]; any other write error with one line and
/// [`EXIT_OUTPUT_ERROR`] (`print!` would panic with a backtrace instead).
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE.into());
        }
        say(&format!(
            "cannot write the output to stdout: {e}; free space on its disk or send it elsewhere"
        ));
        std::process::exit(EXIT_OUTPUT_ERROR.into());
    }
}

/// SIGINT and SIGTERM, handled alike on a thread of their own from start-up to exit.
///
/// - While a resolution runs (a cancel token is registered), the first signal cancels
///   it (the resolver gets the cancellation, up to its grace period, and the failure
///   is reported) and the process exits with 128 + the signal's number (130 for
///   SIGINT, 143 for SIGTERM).
/// - Any other time (loading plugins, `configure`, `buildinfo`), or for a second
///   signal during the cancellation, the process exits at once with one line on
///   stderr and the same status. That exit takes no lock at all
///   ([`provtarget_loader::process::exit_now`]: a fixed message, `write` and `_exit`): a
///   plugin stuck in its constructor holds the dynamic loader's lock, which
///   `std::process::exit` would wait for (it runs `_dl_fini`), and it may hold
///   stderr's lock or the allocator's.
/// - The same signal arriving again within [`SAME_SIGNAL`] of the first is one signal
///   delivered twice (GNU `timeout` and other supervisors signal the process and then
///   its group): it is not a second request, so the cancellation it started still
///   reports the failure reason.
struct Signals {
    /// The first signal's number, 0 before any.
    first: AtomicI32,
    /// When the first signal arrived.
    first_at: std::sync::OnceLock<std::time::Instant>,
    /// The thread logging that the first signal cancels the resolution (see
    /// [`Signals::settle`]).
    logging: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The resolution to cancel, while one runs.
    cancel: Mutex<Option<CancelToken>>,
}

impl Signals {
    fn watch() -> Arc<Signals> {
        let signals = Arc::new(Signals {
            first: AtomicI32::new(0),
            first_at: std::sync::OnceLock::new(),
            logging: Mutex::new(None),
            cancel: Mutex::new(None),
        });
        // Registered here, before this returns, so no signal falls between the default
        // disposition and the handler; handled on a thread of their own.
        let registered = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]);
        let mut incoming = match registered {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::warn!(
                    "cannot handle SIGINT/SIGTERM ({e}); they end provtarget without a report"
                );
                return signals;
            }
        };
        let state = Arc::clone(&signals);
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for number in incoming.forever() {
                    let name = if number == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    state.received(name, number);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "cannot start the signal thread ({e}); SIGINT/SIGTERM are caught but not \
                 handled: stop provtarget with SIGKILL"
            );
        }
        signals
    }

    fn received(&self, name: &str, number: i32) {
        let first = self
            .first
            .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            let _ = self.first_at.set(std::time::Instant::now());
        } else if self.first.load(Ordering::SeqCst) == number
            && self
                .first_at
                .get()
                .is_some_and(|at| at.elapsed() < SAME_SIGNAL)
        {
            // The same signal sent to the process and to its group.
            return;
        }
        let cancel = self
            .cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match cancel {
            Some(token) if first => {
                token.cancel();
                // Logged from another thread: this one must stay free for a second
                // signal even when stderr blocks (a pipe nobody reads).
                let name = name.to_string();
                let spawned =
                    std::thread::Builder::new()
                        .name("signal log".into())
                        .spawn(move || {
                            tracing::warn!(
                            "received {name}; cancelling the resolution (send it again to exit \
                             at once)"
                        )
                        });
                *self.logging.lock().unwrap_or_else(|e| e.into_inner()) = spawned.ok();
            }
            Some(_) => {
                let message: &[u8] = if number == SIGTERM {
                    b"provtarget: received SIGTERM again while cancelling; exiting at once\n"
                } else {
                    b"provtarget: received SIGINT again while cancelling; exiting at once\n"
                };
                provtarget_loader::process::exit_now(message, 128 + number);
            }
            None => {
                let message: &[u8] = if number == SIGTERM {
                    b"provtarget: interrupted by SIGTERM; exiting\n"
                } else {
                    b"provtarget: interrupted by SIGINT; exiting\n"
                };
                provtarget_loader::process::exit_now(message, 128 + number);
            }
        }
    }

    /// Waits until the first signal's warning is written (before the failure it caused
    /// is reported, so the two lines come in order).
    fn settle(&self) {
        let logging = self
            .logging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(logging) = logging {
            let _ = logging.join();
        }
    }

    /// Makes the first signal cancel `token` instead of exiting.
    fn cancel_on_signal(&self, token: &CancelToken) {
        *self.cancel.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
    }

    /// The exit status after a signal cancelled the resolution (128 + its number).
    fn exit_status(&self) -> Option<u8> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            n => u8::try_from(128 + n).ok(),
        }
    }
}

/// A second signal this soon after the first is the same one delivered twice (to the
/// process and to its group); a person pressing Ctrl-C twice is far slower.
const SAME_SIGNAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The level names a filter directive may use (`tracing`'s, case-insensitive).
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `--log-level` or `RUST_LOG` filter before `EnvFilter` sees it: `EnvFilter`
/// reads a bare unknown word (`warning`, `verbose`) as a *target* name and an empty
/// directive (`,`) as nothing, both of which silently log nothing at all, security
/// warnings included. Every directive must be a level, `target=level`, or a span
/// filter (`[...]`). When no directive sets a bare level, `warn` is added, so naming
/// one target (`provtarget_loader=debug`) never silences the warnings of the others.
/// Err: why, for a one-line message.
fn checked_filter(text: &str) -> Result<EnvFilter, String> {
    let is_level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    let mut has_level = false;
    let mut directives = Vec::new();
    for directive in text.split(',') {
        let d = directive.trim();
        directives.push(d);
        if d.is_empty() {
            return Err("has an empty directive".to_string());
        }
        if d.contains('[') {
            continue;
        }
        match d.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() && is_level(level) => {}
            Some(_) => {
                return Err(format!(
                    "has {:?}, which is not target=level",
                    provtarget::text::printable(d)
                ))
            }
            None if is_level(d) => has_level = true,
            None => {
                return Err(format!(
                    "has {:?}, which is not a level",
                    provtarget::text::printable(d)
                ))
            }
        }
    }
    if !has_level {
        directives.push("warn");
    }
    let full = directives.join(",");
    EnvFilter::try_new(&full).map_err(|e| format!("does not parse: {e}"))
}

fn init_logging(level: Option<&str>) -> Result<(), String> {
    const USE: &str = "use error, warn, info, debug or trace, or target=level pairs";
    // A bad RUST_LOG is not fatal (it may be set for other programs) but must not
    // silence warnings: it is reported once logging is up, and `warn` is used.
    let mut rust_log_problem = None;
    let filter = match level {
        Some(l) => Some(checked_filter(l).map_err(|why| {
            format!(
                "--log-level {:?} is not a level or filter (it {why}); {USE}",
                provtarget::text::printable(l)
            )
        })?),
        None => match std::env::var_os("RUST_LOG") {
            None => None,
            Some(v) => match v.to_str() {
                Some(s) if s.trim().is_empty() => None,
                Some(s) => match checked_filter(s) {
                    Ok(filter) => Some(filter),
                    Err(why) => {
                        rust_log_problem = Some(format!(
                            "RUST_LOG={:?} is not a level or filter (it {why}); logging at warn instead; {USE}",
                            provtarget::text::printable(s)
                        ));
                        None
                    }
                },
                None => {
                    rust_log_problem =
                        Some("RUST_LOG is not valid UTF-8; logging at warn instead".to_string());
                    None
                }
            },
        },
    };
    let builder = tracing_subscriber::fmt()
        // A line stderr cannot take is dropped and counted, never an error (on which
        // tracing-subscriber would `eprintln!`, a panic on the same broken stderr).
        .with_writer(provtarget::plumbing::logsink::Stderr)
        .log_internal_errors(false)
        // Colour only on a terminal: stderr usually ends up in a journal or log file.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    match filter {
        Some(filter) => builder.with_env_filter(filter).init(),
        // The plain level `warn`: a `LevelFilter` does what `EnvFilter::new("warn")`
        // does without parsing directives at every start.
        None => builder.with_max_level(LevelFilter::WARN).init(),
    }
    if let Some(problem) = rust_log_problem {
        tracing::warn!("{problem}");
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        // One write: the text and its last line are not written apart.
        Ok(mut s) => {
            s.push('\n');
            emit(&s);
        }
        Err(e) => say(&format!("cannot render JSON: {e}")),
    }
}

fn buildinfo_cmd(
    config: HostConfig,
    helper: Option<Helper>,
    as_json: bool,
) -> Result<ExitCode, String> {
    // The inventory reports every library's SHA-256 (what a pin file needs), not
    // only when pinning is on.
    // With a warm verdict cache, unchanged libraries are reported from it and only
    // the chain's plugins are loaded (under the configured isolation).
    let options = LoaderOptions {
        always_hash: true,
        ..config.loader_options()
    };
    let host = Host::start_isolated(config, Some(options), helper);
    if as_json {
        print_json(&buildinfo::json(&host));
    } else {
        emit(&buildinfo::text(&host));
    }
    Ok(ExitCode::SUCCESS)
}

fn targets_cmd(
    config: HostConfig,
    helper: Option<Helper>,
    as_json: bool,
    signals: &Signals,
) -> Result<ExitCode, String> {
    let broker_mode = config.broker_check().mode;
    let host = Host::start_isolated(config, None, helper);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let cancel = CancelToken::new();
    // Before the first line: a signal after it always cancels the resolution (and
    // its failure is reported), never the "exit at once" of start-up.
    signals.cancel_on_signal(&cancel);
    if !as_json {
        emit(&format!(
            "Attempting provisioner resolution using: {}\n",
            printable(&host.resolver_name().0)
        ));
    }
    let result = runtime.block_on(host.resolve(&cancel));
    signals.settle();
    // One JSON shape for success and failure (provtarget::output, schemas/).
    if as_json {
        let mut doc = provtarget::output::targets_json(&result);
        if broker_mode != BrokerMode::Off {
            let brokers = match &result {
                Ok(res) => &res.brokers,
                Err(e) => &e.brokers,
            };
            doc["brokers"] = broker_check::json(brokers);
        }
        print_json(&doc);
    }
    match result {
        Ok(res) => {
            if !as_json {
                let mut text = String::new();
                if res.resolver != host.resolver_name().0 {
                    text.push_str(&format!("Resolved by: {}\n", printable(&res.resolver)));
                }
                text.push_str(&provtarget::output::chain_text(&res.chain));
                text.push_str(&format!(
                    "Provisioning using {} broker(s):\n",
                    res.servers.len()
                ));
                for s in &res.servers {
                    text.push_str(&format!("   {s}\n"));
                }
                if broker_mode != BrokerMode::Off {
                    text.push_str(&broker_check::text(
                        broker_mode,
                        &res.resolver,
                        &res.brokers,
                    ));
                }
                text.push_str(&provtarget::output::provenance_text(&res));
                emit(&text);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if !as_json {
                emit(&provtarget::output::chain_text(&e.chain));
            }
            say(&e.to_string());
            // Cancelled by SIGINT/SIGTERM: 128 + its number, as documented.
            Ok(ExitCode::from(signals.exit_status().unwrap_or(1)))
        }
    }
}

/// This executable, the child process of crash isolation.
fn this_helper() -> Option<Helper> {
    std::env::current_exe().ok().map(Helper::new)
}

fn check_cmd(
    file: &Path,
    pins: Option<PathBuf>,
    insecure: bool,
    as_json: bool,
    helper: Option<Helper>,
) -> Result<ExitCode, String> {
    // The record printed is the verdict: it is not logged as well.
    provtarget_loader::log_verdicts(false);
    // The same rule as the other commands: the override comes from the flag or from
    // PROVTARGET_INSECURE_SKIP_OWNER_CHECKS (never from a file).
    let env_config = ConfigBuilder::new().env(std::env::vars_os()).build();
    for w in env_config.warnings() {
        tracing::warn!("{}", provtarget::text::shown(w));
    }
    let options = LoaderOptions {
        directories: Vec::new(),
        pin_file: pins,
        insecure_skip_owner_checks: insecure || env_config.insecure_skip_owner_checks(),
        always_hash: true,
        // Inspecting a file always checks it in full.
        cache_dir: None,
        // Signatures: as PROVTARGET_SIGNATURES, _TRUSTED_KEYS and _REVOKED say (else
        // automatic: checked and reported once a key is trusted).
        signatures: env_config.signature_policy(),
    };
    // Inspecting a file never runs its code here: the checks that need none run in
    // this process, the rest (dlopen, constructor) in a child.
    let Some(helper) = helper else {
        return Err("cannot find this program's own executable to load the file in a child".into());
    };
    let record =
        provtarget::plumbing::check_file(file, &options, &helper, env_config.probe_timeout());
    if as_json {
        let mut doc = buildinfo::record_json(&record);
        doc["schema"] = provtarget::output::PLUGINS_CHECK_SCHEMA.into();
        print_json(&doc);
    } else {
        emit(&buildinfo::record_text(&record, None, ""));
    }
    Ok(if record.verdict == Verdict::Loaded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
