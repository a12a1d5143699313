//! The command line of `provtarget`, as one clap definition: the binary parses it, and
//! the packaging tools generate the man pages and shell completions from it
//! ([`command`]), so the three never disagree.
//!
//! ```
//! let cmd = provtarget::cli::command();
//! assert_eq!(cmd.get_name(), "provtarget");
//! assert!(cmd.get_subcommands().any(|s| s.get_name() == "targets"));
//! ```

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{keys, ConfigBuilder, ConfigError, HostConfig, DEFAULT_CONFIG_FILE};

/// The whole command definition (for man pages and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Finds the provisioning broker of an unprovisioned Choria server through resolver
/// plugins.
#[derive(Parser)]
#[command(name = "provtarget", version, about, long_about = None)]
pub struct Cli {
    /// Log level or filter for messages on stderr (error, warn, info, debug, trace);
    /// defaults to RUST_LOG, else warn.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Show build data, the active resolver, provisioning settings and every plugin
    /// library found, loaded or refused, and why.
    Buildinfo {
        /// The host's flags.
        #[command(flatten)]
        host: HostArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resolve the provisioning brokers once, like `choria tool provisioner`.
    Targets {
        /// The host's flags.
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
        /// What to do with plugins.
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

/// The subcommands of `plugins`.
#[derive(Subcommand)]
pub enum PluginsCommand {
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

/// The flags of every command that starts a host.
#[derive(Args)]
pub struct HostArgs {
    /// Configuration file (key = value lines).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plugin directory; repeat for several. Overrides plugin.provtarget.directories.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Resolver name for the chain, in order; repeat for several (`default` is the
    /// built-in one). Overrides plugin.provtarget.resolvers.
    #[arg(long = "resolver", value_name = "NAME")]
    pub resolvers: Vec<String>,
    /// sha256sum-format pin file. Overrides plugin.provtarget.pins.
    #[arg(long, value_name = "FILE")]
    pub pins: Option<PathBuf>,
    /// Developer override: load plugins whatever their owner and mode. Never use in
    /// production.
    #[arg(long)]
    pub insecure_skip_owner_checks: bool,
    /// Set any configuration key, e.g. --set plugin.acme.dc_hint.file=/tmp/dc.json.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl HostArgs {
    /// The host configuration these flags make: the file (`--config`, else the default
    /// file when it exists), the environment, then the flags; `timeout` is `targets`' `--timeout`.
    pub fn config(&self, timeout: Option<&str>) -> Result<HostConfig, ConfigError> {
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
                    // Masked: `--set x.password:S3CRET` must not echo the password.
                    let item = crate::text::printable(&crate::text::masked_input(item));
                    return Err(ConfigError::Flag(format!(
                        "--set \"{item}\": expected KEY=VALUE, e.g. --set plugin.provtarget.timeout=30"
                    )));
                }
            }
        }
        if !self.plugin_dirs.is_empty() {
            // Typed at a shell, a relative directory would silently load nothing (the
            // loader refuses relative directories): an error naming the absolute one.
            if let Some(dir) = self.plugin_dirs.iter().find(|d| d.is_relative()) {
                let shown = crate::text::printable(&dir.display().to_string());
                let absolute = std::env::current_dir()
                    .map(|cwd| {
                        format!(
                            " such as {}",
                            crate::text::printable(&cwd.join(dir).display().to_string())
                        )
                    })
                    .unwrap_or_default();
                return Err(ConfigError::Flag(format!(
                    "--plugin-dir {shown} is a relative path; plugin directories must be absolute (they decide what code is loaded): give an absolute path{absolute}"
                )));
            }
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
            crate::config::parse_duration(t)
                .map_err(|e| ConfigError::Flag(format!("--timeout {e}")))?;
            b = b.flag(keys::TIMEOUT, t);
        }
        let config = b.build();
        // A value typed on the command line that cannot be used is an error, as a bad
        // --timeout is; in the file or the environment it is a warning.
        if let Some(e) = config.flag_errors().first() {
            return Err(ConfigError::Flag(e.clone()));
        }
        Ok(config)
    }
}
