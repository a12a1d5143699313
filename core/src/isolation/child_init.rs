//! How every child starts: its log lines on stderr, the watch on its parent, and a
//! resolver child's work once its stdio is set ([`serve_main`]).
#![forbid(unsafe_code)]

use std::{thread, time::Duration};

use super::server;

/// A `__serve` child's work after its stdio is set (by `exec` or by a fork): logging,
/// the parent watch, then serving; its exit status.
pub(super) fn serve_main() -> u8 {
    init_child_logging();
    provtarget_loader::log_verdicts(false);
    watch_parent();
    server::serve()
}

/// A child's log lines: plain, one per event, `LEVEL message fields`, re-logged by the
/// host with the plugin's name.
/// Every level is written: the host's own filter decides what is shown.
pub(super) fn init_child_logging() {
    tracing_subscriber::fmt()
        // Never an error, never a panic: see `crate::logsink`.
        .with_writer(crate::logsink::Stderr)
        .log_internal_errors(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .init();
}

/// Ends this child as soon as its parent is gone (the host crashed or was killed).
pub(super) fn watch_parent() {
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
