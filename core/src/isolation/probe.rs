//! Loading a library in a child first: the parent's [`probe`] and the child's
//! [`child`] (`provtarget __probe PATH`).
#![forbid(unsafe_code)]

use std::{
    io::{Read, Write},
    path::Path,
    process::ExitCode,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use provtarget_loader::{PluginFacts, Prepared, Refusal, RefusalKind, Stage, Verdict};

use super::{child_command, describe_exit, inherited, pipe, relog, wire, Helper, PROBE_COMMAND};
use crate::text::printable;

/// The descriptor a child finds the sealed copy at.
pub const IMAGE_FD: i32 = 3;
/// The descriptor a probing child writes its one report line to.
pub const REPORT_FD: i32 = 4;

/// Loads `prepared` in a child and returns the verdict the child reported (with the
/// plugin's information), or a refusal when the child crashed, exited without a report
/// or did not answer within `deadline` (then it is killed).
pub fn probe(
    prepared: &Prepared,
    helper: &Helper,
    deadline: Duration,
) -> Result<(Verdict, Option<PluginFacts>), Refusal> {
    let path = &prepared.record().path;
    let p = printable(&path.to_string_lossy());
    let refuse = |why: String| Refusal::new(Stage::Load, RefusalKind::CrashedWhileLoading, why);
    let Some(image) = prepared.sealed_fd() else {
        return Err(refuse(format!(
            "{p}: no sealed in-memory copy could be made, so it cannot be loaded in a child \
             first; allow memfd_create (seccomp or security policy)"
        )));
    };
    let cannot = |e: std::io::Error| {
        refuse(format!(
            "{p}: cannot start the helper {} to load it in a child: {e}",
            printable(&helper.path().to_string_lossy())
        ))
    };
    let (mut reports, report_w) = pipe().map_err(cannot)?;
    let mut cmd = child_command(helper, PROBE_COMMAND, path);
    let started = Instant::now();
    let mut child = provtarget_loader::process::spawn_with_fds(
        &mut cmd,
        &[
            (image, IMAGE_FD),
            (std::os::fd::AsFd::as_fd(&report_w), REPORT_FD),
        ],
    )
    .map_err(cannot)?;
    drop(report_w);
    // Ends (its sender dropped) once the child's stderr is at its end and every line
    // is logged.
    let relayed = child
        .stderr
        .take()
        .map(|stderr| relog(stderr, super::LogLabel::new(&path.to_string_lossy()), None));
    let (tx, rx) = mpsc::channel();
    let _ = thread::Builder::new()
        .name("probe report".into())
        .spawn(move || {
            let mut text = String::new();
            let _ = reports.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    let text = match rx.recv_timeout(deadline) {
        Ok(text) => text,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out(&p, deadline));
        }
    };
    // The report is in (or the pipe closed): the child ends now, or is made to.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < deadline => thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // The child's last lines are logged before its verdict is reported: its stderr
    // closed with it (a short wait; a grandchild holding it open must not stall).
    if let (Some(relayed), Some(_)) = (&relayed, status) {
        let until = Instant::now() + LAST_LINES;
        while let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) =
            relayed.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if Instant::now() >= until {
                break;
            }
        }
    }
    let parsed = text
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| wire::parse(&v));
    match (status, parsed) {
        (Some(status), Some(Ok(outcome))) if status.success() => Ok(outcome),
        (Some(status), _) => Err(ended(&p, status)),
        (None, Some(Ok(outcome))) => Ok(outcome),
        (None, _) => Err(timed_out(&p, deadline)),
    }
}

/// How long a probing child's last log lines may take to be logged after it ended.
const LAST_LINES: Duration = Duration::from_secs(1);

/// The refusal of a library (shown as `p`) whose loading child did not answer within
/// `deadline`.
pub(super) fn timed_out(p: &str, deadline: Duration) -> Refusal {
    Refusal::new(
        Stage::Load,
        RefusalKind::CrashedWhileLoading,
        format!(
            "{p}: did not answer within {}s while loading (killed); its load-time code \
             hangs: remove it or report it to its vendor",
            deadline.as_secs_f64()
        ),
    )
}

/// The refusal of a library whose loading child ended with `status` before reporting.
pub(super) fn ended(p: &str, status: std::process::ExitStatus) -> Refusal {
    let message = if super::stopped_by_signal(status) {
        format!(
            "{p}: loading was interrupted ({}): the child was stopped, it did not crash; \
             run again to check the library",
            describe_exit(status)
        )
    } else if status.signal_or_code_is_crash() {
        format!(
            "{p}: crashed while loading: {}; its load-time code would take the host down: \
             remove it or report it to its vendor",
            describe_exit(status)
        )
    } else {
        format!(
            "{p}: {} while loading; its load-time code ends the process: remove it or \
             report it to its vendor",
            describe_exit(status)
        )
    };
    Refusal::new(Stage::Load, RefusalKind::CrashedWhileLoading, message)
}

trait StatusExt {
    fn signal_or_code_is_crash(&self) -> bool;
}

impl StatusExt for std::process::ExitStatus {
    fn signal_or_code_is_crash(&self) -> bool {
        std::os::unix::process::ExitStatusExt::signal(self).is_some()
    }
}

/// The child: loads the sealed copy at [`IMAGE_FD`] and writes the verdict to
/// [`REPORT_FD`]. Exits 0 once the report is written, whatever the verdict.
pub fn child(path: &Path) -> ExitCode {
    let mut report = match inherited(REPORT_FD, true) {
        Ok(f) => f,
        Err(e) => {
            crate::logsink::line(&format!(
                "provtarget: {PROBE_COMMAND} has no report descriptor: {e}"
            ));
            return ExitCode::from(2);
        }
    };
    let (record, plugin) = match inherited(IMAGE_FD, false) {
        Ok(image) => provtarget_loader::load_sealed(image.into(), path),
        Err(e) => {
            crate::logsink::line(&format!(
                "provtarget: {PROBE_COMMAND} has no library descriptor: {e}"
            ));
            return ExitCode::from(2);
        }
    };
    let line = wire::report(&record.verdict, record.plugin.as_ref());
    let mut text = line.to_string();
    text.push('\n');
    if report.write_all(text.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    drop(report);
    // The resolver is not dropped: its drop code is not what is being judged, and the
    // process ends now.
    std::mem::forget(plugin);
    ExitCode::SUCCESS
}
