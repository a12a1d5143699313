//! The provtarget host: finds the provisioning broker of an unprovisioned Choria
//! server through resolver plugins, or the built-in `Choria JWT Resolver`.
//!
//! [`host::Host::start`] loads the plugin libraries the configuration names (through
//! `provtarget-loader`), picks the active resolver or chain, and calls `configure` once
//! on each; [`host::Host::resolve`] then runs `targets` off the async runtime with
//! cancellation and deadlines, and validates what comes back into
//! [`servers::Server`]s.
//!
//! ```
//! use provtarget::{config::{keys, ConfigBuilder}, host::Host, resolver::CancelToken};
//!
//! // No plugin directory: the built-in resolver, here with static broker URLs.
//! let config = ConfigBuilder::new()
//!     .flag(keys::DIRECTORIES, "/nonexistent/provtarget")
//!     .flag(keys::JWT_FILE, "")
//!     .flag(keys::BROKER_URLS, "prov1.example.net:4222, tls://prov2.example.net:4223")
//!     .build();
//! let host = Host::start(config);
//! assert_eq!(host.resolver_name().0, "Choria JWT Resolver");
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let found = runtime.block_on(host.resolve(&CancelToken::new())).unwrap();
//! let servers: Vec<String> = found.servers.iter().map(|s| s.to_string()).collect();
//! assert_eq!(servers, ["nats://prov1.example.net:4222", "tls://prov2.example.net:4223"]);
//! ```
//!
//! # Public API
//!
//! What an embedder needs, in the order a request flows:
//! - [`config`]: [`config::ConfigBuilder`] (file, environment, flags) makes a
//!   [`config::HostConfig`]; its problems are typed ([`config::ConfigWarning`],
//!   [`config::ConfigError`], [`config::ValueError`]);
//! - [`host`]: [`host::Host`] loads the plugins, plans and configures the chain, and
//!   answers [`host::Resolution`] (or [`host::ResolveError`]);
//! - [`resolver`]: the [`resolver::TargetResolver`] trait every resolver implements,
//!   its [`resolver::ResolverError`], cancellation; [`default_resolver`] the built-in one;
//! - [`servers`]: the answer's [`servers::Server`]s and Choria's parsing rules
//!   ([`servers::ServerError`], [`servers::TargetsError`]); [`broker_check`] the
//!   brokers' check carried in the answer;
//! - rendering: [`buildinfo`], [`output`] (the JSON documents' schema names and
//!   `targets`' one shape), [`text`] (making untrusted text safe to show);
//! - [`cli`]: the command line ([`cli::command`] for packaging and docs).
//!
//! Crash isolation (plugin code in child processes) is private: it is reached through
//! [`host::Host`], and the binary's child subcommands through the hidden `plumbing`
//! entry point.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod broker_check;
pub mod buildinfo;
pub mod cli;
pub mod config;
pub mod default_resolver;
pub mod host;
mod isolation;
mod logsink;
pub mod output;
pub mod resolver;
mod selection;
pub mod servers;
pub mod text;

/// The binary's plumbing (`provtarget`'s `main.rs` is a crate of its own): the hidden
/// child subcommands, the helper executable children are started from, `plugins
/// check`'s one-file check, and the bounded stderr log sink. Not an API.
#[doc(hidden)]
pub mod plumbing {
    pub use crate::isolation::{
        check_file, child_main, is_child_command, may_hold_plugins, may_need_resolver_processes,
        Helper,
    };
    /// The stderr sink every log line and message goes through.
    pub mod logsink {
        pub use crate::logsink::{dropped, dropped_summary, line, suppressed, Stderr, MAX_REPEATS};
    }
}
