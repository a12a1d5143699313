//! The `provtarget` command: `buildinfo`, `targets` and `plugins check`.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand};
use provtarget::{
    buildinfo,
    config::{keys, ConfigBuilder, HostConfig, DEFAULT_CONFIG_FILE},
    host::{Failure, Host},
    resolver::CancelToken,
};
use provtarget_loader::{LoaderOptions, Verdict};
use serde_json::json;
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

/// Finds the provisioning broker of an unprovisioned Choria server through resolver
/// plugins.
#[derive(Parser)]
#[command(name = "provtarget", version, about, long_about = None)]
struct Cli {
    /// Log level or filter for messages on stderr (error, warn, info, debug, trace);
    /// defaults to RUST_LOG, else warn.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show build data, the active resolver, provisioning settings and every plugin
    /// library found, loaded or refused, and why.
    Buildinfo {
        #[command(flatten)]
        host: HostArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve the provisioning brokers once, like `choria tool provisioner`.
    Targets {
        #[command(flatten)]
        host: HostArgs,
        /// Deadline for each resolver of the chain (and for its configure): 30, 30s,
        /// 500ms, 2m. A resolver past it is cancelled and the next one tried, so a
        /// chain of N may take up to N x (deadline + 2s grace). Overrides
        /// plugin.provtarget.timeout.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect plugin libraries.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Run every loader check on one library (for vendor CI): exit 0 and print its
    /// information, or exit 1 with the reason it would be refused.
    Check {
        /// The library file.
        file: PathBuf,
        /// A sha256sum-format pin file to check the library against.
        #[arg(long, value_name = "FILE")]
        pins: Option<PathBuf>,
        /// Developer override: skip the owner/mode rule.
        #[arg(long)]
        insecure_skip_owner_checks: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct HostArgs {
    /// Configuration file (key = value lines).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plugin directory; repeat for several. Overrides plugin.provtarget.directories.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    /// Resolver name for the chain, in order; repeat for several (`default` is the
    /// built-in one). Overrides plugin.provtarget.resolvers.
    #[arg(long = "resolver", value_name = "NAME")]
    resolvers: Vec<String>,
    /// sha256sum-format pin file. Overrides plugin.provtarget.pins.
    #[arg(long, value_name = "FILE")]
    pins: Option<PathBuf>,
    /// Developer override: load plugins whatever their owner and mode. Never use in
    /// production.
    #[arg(long)]
    insecure_skip_owner_checks: bool,
    /// Set any configuration key, e.g. --set plugin.acme.dc_hint.file=/tmp/dc.json.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl HostArgs {
    fn config(&self, timeout: Option<&str>) -> Result<HostConfig, String> {
        let (path, required) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let mut b = ConfigBuilder::new()
            .file(&path, required)?
            .env(std::env::vars_os());
        for item in &self.set {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => b = b.flag(k, v),
                _ => {
                    return Err(format!(
                    "--set {item:?}: expected KEY=VALUE, e.g. --set plugin.provtarget.timeout=30"
                ))
                }
            }
        }
        if !self.plugin_dirs.is_empty() {
            b = b.directories_flag(self.plugin_dirs.clone());
        }
        if !self.resolvers.is_empty() {
            b = b.resolvers_flag(self.resolvers.clone());
        }
        if let Some(p) = &self.pins {
            b = b.pins_flag(p.clone());
        }
        if self.insecure_skip_owner_checks {
            b = b.flag(keys::INSECURE_SKIP_OWNER_CHECKS, "true");
        }
        if let Some(t) = timeout {
            provtarget::config::parse_duration(t).map_err(|e| format!("--timeout {e}"))?;
            b = b.flag(keys::TIMEOUT, t);
        }
        Ok(b.build())
    }
}

fn main() -> ExitCode {
    // Before any plugin code can run: a plugin that kills the process still leaves one
    // line naming itself and the call.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if provtarget::isolation::is_child_command(args.first()) {
        // A child of this host's crash isolation (hidden subcommands).
        return provtarget::isolation::child_main(&args);
    }
    provtarget_loader::last_words::install();
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_level.as_deref()) {
        eprintln!("provtarget: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Buildinfo { host, json } => buildinfo_cmd(&host, json),
        Command::Targets {
            host,
            timeout,
            json,
        } => targets_cmd(&host, timeout.as_deref(), json),
        Command::Plugins {
            command:
                PluginsCommand::Check {
                    file,
                    pins,
                    insecure_skip_owner_checks,
                    json,
                },
        } => check_cmd(&file, pins, insecure_skip_owner_checks, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("provtarget: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: Option<&str>) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let filter = match level {
        // A bare word would parse as a target name ("loud" = everything from target
        // `loud`), silently logging nothing: only level names may stand alone.
        Some(l)
            if !l.contains(['=', ',', '['])
                && !LEVELS.contains(&l.trim().to_ascii_lowercase().as_str()) =>
        {
            return Err(format!(
                "--log-level {l:?} is not a level or filter; use error, warn, info, debug or trace"
            ));
        }
        Some(l) => Some(EnvFilter::try_new(l).map_err(|e| {
            format!("--log-level {l:?} is not a level or filter ({e}); use error, warn, info, debug or trace")
        })?),
        // Without RUST_LOG the filter is the plain level `warn`: a `LevelFilter` does
        // what `EnvFilter::new("warn")` does without parsing directives at every start.
        None if std::env::var_os("RUST_LOG").is_none() => None,
        None => Some(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"))),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: stderr usually ends up in a journal or log file.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    match filter {
        Some(filter) => builder.with_env_filter(filter).init(),
        None => builder.with_max_level(LevelFilter::WARN).init(),
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        // One write: `println!` would write the text and then its last line apart.
        Ok(mut s) => {
            s.push('\n');
            print!("{s}");
        }
        Err(e) => eprintln!("provtarget: cannot render JSON: {e}"),
    }
}

fn buildinfo_cmd(args: &HostArgs, as_json: bool) -> Result<ExitCode, String> {
    // The inventory reports every library's SHA-256 (what a pin file needs), not
    // only when pinning is on.
    let config = args.config(None)?;
    let options = LoaderOptions {
        always_hash: true,
        ..config.loader_options()
    };
    let host = Host::start_isolated(config, Some(options), this_helper());
    if as_json {
        print_json(&buildinfo::json(&host));
    } else {
        print!("{}", buildinfo::text(&host));
    }
    Ok(ExitCode::SUCCESS)
}

fn targets_cmd(args: &HostArgs, timeout: Option<&str>, as_json: bool) -> Result<ExitCode, String> {
    let host = Host::start(args.config(timeout)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let cancel = CancelToken::new();
    if !as_json {
        println!(
            "Attempting provisioner resolution using: {}",
            host.resolver_name().0
        );
    }
    let result = runtime.block_on(async {
        let interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("interrupted; cancelling the resolver");
                interrupt.cancel();
            }
        });
        host.resolve(&cancel).await
    });
    let failed = |f: &[Failure]| {
        f.iter()
            .map(|f| json!({"resolver": f.resolver(), "kind": failure_kind(f), "error": f.to_string()}))
            .collect::<Vec<_>>()
    };
    match result {
        Ok(res) => {
            if as_json {
                print_json(&json!({
                    "resolver": res.resolver,
                    "servers": res.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    "failed": failed(&res.failed),
                }));
            } else {
                if res.resolver != host.resolver_name().0 {
                    println!("Resolved by: {}", res.resolver);
                }
                println!("Provisioning using {} broker(s):", res.servers.len());
                for s in &res.servers {
                    println!("   {s}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if as_json {
                print_json(&json!({
                    "error": e.to_string(),
                    "kind": failure_kind(&e.failure),
                    "failed": failed(&e.failed),
                }));
            }
            eprintln!("provtarget: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// This executable, the child process of crash isolation.
fn this_helper() -> Option<provtarget::isolation::Helper> {
    std::env::current_exe()
        .ok()
        .map(provtarget::isolation::Helper)
}

/// A stable name for a failure's kind, for JSON consumers.
fn failure_kind(f: &Failure) -> &'static str {
    match f {
        Failure::NoResolver => "no-resolver",
        Failure::Cancelled { .. } => "cancelled",
        Failure::DeadlineExceeded { .. } => "deadline-exceeded",
        Failure::NoServers { .. } => "no-servers",
        Failure::Failed { .. } => "failed",
    }
}

fn check_cmd(
    file: &Path,
    pins: Option<PathBuf>,
    insecure: bool,
    as_json: bool,
) -> Result<ExitCode, String> {
    // The same rule as the other commands: the override comes from the flag or from
    // PROVTARGET_INSECURE_SKIP_OWNER_CHECKS (never from a file).
    let env_config = ConfigBuilder::new().env(std::env::vars_os()).build();
    for w in env_config.warnings() {
        tracing::warn!("{w}");
    }
    let options = LoaderOptions {
        directories: Vec::new(),
        pin_file: pins,
        insecure_skip_owner_checks: insecure || env_config.insecure_skip_owner_checks(),
        always_hash: true,
    };
    // Inspecting a file never runs its code here: the checks that need none run in
    // this process, the rest (dlopen, constructor) in a child.
    let Some(helper) = this_helper() else {
        return Err("cannot find this program's own executable to load the file in a child".into());
    };
    let record =
        provtarget::isolation::check_file(file, &options, &helper, env_config.probe_timeout());
    if as_json {
        print_json(&buildinfo::record_json(&record));
    } else {
        print!("{}", buildinfo::record_text(&record, None, ""));
    }
    Ok(if record.verdict == Verdict::Loaded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
