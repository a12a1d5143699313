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
    isolation::Helper,
    resolver::CancelToken,
    text::printable,
};
use provtarget_loader::{LoaderOptions, Verdict};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if provtarget::isolation::is_child_command(args.first()) {
        // A child of this host's crash isolation (hidden subcommands).
        return provtarget::isolation::child_main(&args);
    }
    let cli = Cli::parse();
    let log_level = cli.log_level;
    // The commands that start a host read their configuration first, so that under
    // process isolation the first resolver process starts now and its start runs
    // beside this process's own (the signal thread, scanning and checking plugins).
    let helper = this_helper();
    let job = match cli.command {
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
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            say(&e);
            return ExitCode::from(2);
        }
    };
    if let (Job::Buildinfo(config, _) | Job::Targets(config, _), Some(helper)) = (&job, &helper) {
        if provtarget::isolation::may_need_resolver_processes(
            config.isolation(),
            &config.loader_options(),
        ) {
            // While this process has one thread: a fork, not an exec (see fork_spare).
            helper.fork_spare();
        }
    }
    // Before any plugin code can run: a plugin that kills the process still leaves one
    // line naming itself and the call (not in the forked child above, which, like an
    // exec'd one, reports through its host).
    provtarget_loader::last_words::install();
    if let Err(e) = init_logging(log_level.as_deref()) {
        say(&e);
        return ExitCode::from(2);
    }
    let signals = Signals::watch();
    let result = match job {
        Job::Buildinfo(config, json) => buildinfo_cmd(config, helper, json),
        Job::Targets(config, json) => targets_cmd(config, helper, json, &signals),
        Job::Check {
            file,
            pins,
            insecure,
            json,
        } => check_cmd(&file, pins, insecure, json, helper),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say(&e);
            ExitCode::from(2)
        }
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
/// ignored: there is nowhere left to report it (`eprintln!` would panic).
fn say(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "provtarget: {message}");
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
///   stderr and the same status.
struct Signals {
    /// The first signal's number, 0 before any.
    first: AtomicI32,
    /// The resolution to cancel, while one runs.
    cancel: Mutex<Option<CancelToken>>,
}

impl Signals {
    fn watch() -> Arc<Signals> {
        let signals = Arc::new(Signals {
            first: AtomicI32::new(0),
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
        let cancel = self
            .cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match cancel {
            Some(token) if first => {
                tracing::warn!(
                    "received {name}; cancelling the resolution (send it again to exit at once)"
                );
                token.cancel();
            }
            Some(_) => {
                say(&format!(
                    "received {name} again while cancelling; exiting at once"
                ));
                std::process::exit(128 + number);
            }
            None => {
                say(&format!("interrupted by {name}; exiting"));
                std::process::exit(128 + number);
            }
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
        .with_writer(std::io::stderr)
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
    if !as_json {
        emit(&format!(
            "Attempting provisioner resolution using: {}\n",
            printable(&host.resolver_name().0)
        ));
    }
    signals.cancel_on_signal(&cancel);
    let result = runtime.block_on(host.resolve(&cancel));
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
    };
    // Inspecting a file never runs its code here: the checks that need none run in
    // this process, the rest (dlopen, constructor) in a child.
    let Some(helper) = helper else {
        return Err("cannot find this program's own executable to load the file in a child".into());
    };
    let record =
        provtarget::isolation::check_file(file, &options, &helper, env_config.probe_timeout());
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
