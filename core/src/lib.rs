//! The provtarget host: finds the provisioning broker of an unprovisioned Choria
//! server through resolver plugins, or the built-in `Choria JWT Resolver`.
//!
//! [`host::Host::start`] loads the plugin libraries the configuration names (through
//! `provtarget-loader`), picks the active resolver or chain, and calls `configure` once
//! on each; [`host::Host::resolve`] then runs `targets` off the async runtime with
//! cancellation and deadlines, and validates what comes back into
//! [`targets::Server`]s.
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
//! Modules: [`config`] (file, environment, flags), [`host`] (selection, chains,
//! deadlines), [`resolver`] (the native [`resolver::TargetResolver`] trait and the
//! per-call context), [`isolation`] (plugin code in child processes: probe and
//! process modes, `plugins check`), [`default_resolver`], [`targets`] (Choria's parsing rules),
//! [`buildinfo`], [`output`] (the JSON documents' schema names and `targets`' one shape), [`text`] (making untrusted text safe to show), [`cli`] (the command line).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod broker_check;
pub mod buildinfo;
pub mod cli;
pub mod config;
pub mod default_resolver;
pub mod host;
pub mod isolation;
pub mod logsink;
pub mod output;
pub mod resolver;
pub mod selection;
pub mod targets;
pub mod text;
