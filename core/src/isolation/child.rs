//! A child's entry point (`provtarget __probe PATH`, `provtarget __serve`).
#![forbid(unsafe_code)]

use std::{ffi::OsString, path::Path, process::ExitCode};

use super::child_init::{init_child_logging, watch_parent};
use super::command::{PROBE_COMMAND, SERVE_COMMAND};
use super::probe;
use super::server;

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

/// Whether the first argument names a child's hidden subcommand.
pub fn is_child_command(first: Option<&OsString>) -> bool {
    first.is_some_and(|a| a == PROBE_COMMAND || a == SERVE_COMMAND)
}
