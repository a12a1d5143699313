//! A child's command line and environment: the hidden subcommands it runs, and the
//! host's configuration variables it never gets.
#![forbid(unsafe_code)]

use std::process::Command;

/// The hidden subcommand a probing child runs.
pub const PROBE_COMMAND: &str = "__probe";
/// The hidden subcommand a resolver child runs.
pub const SERVE_COMMAND: &str = "__serve";

/// Whether an environment variable is one of the host's own configuration
/// (`PROVTARGET_*`, which may carry secrets: a password given as
/// `PROVTARGET_ETCD_PASSWORD`). A child never needs them: it gets its configuration
/// from the host, over its socket, for the one plugin it serves.
pub(super) fn is_host_config_var(name: &std::ffi::OsStr) -> bool {
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
