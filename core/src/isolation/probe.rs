//! Loading a library in a child first: the parent's [`probe`] and the child's
//! [`child`] (`provtarget __probe PATH`).
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::Read,
    path::Path,
    process::{Child, ExitCode, ExitStatus},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use provtarget_loader::{PluginFacts, Prepared, Refusal, RefusalKind, Stage, Verdict};

use super::command::PROBE_COMMAND;
use super::exit::ChildExit;
use super::helper::{child_command, Helper};
use super::protocol::{send, Handshake, ProtocolError};
use super::relay::{inherited, pipe, relog, LogLabel};
use super::wire;
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
    let started = Instant::now();
    let Probing {
        mut child,
        reports,
        relayed,
    } = spawn(helper, path, image).map_err(|e| {
        refuse(format!(
            "{p}: cannot start the helper {} to load it in a child: {e}",
            printable(&helper.path().to_string_lossy())
        ))
    })?;
    let Some(text) = read_report(reports, deadline) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(timed_out(&p, deadline));
    };
    // The report is in (or the pipe closed): the child ends now, or is made to.
    let status = reap(&mut child, started + deadline);
    // The child's last lines are logged before its verdict is reported: its stderr
    // closed with it (a short wait; a grandchild holding it open must not stall).
    if let (Some(relayed), Some(_)) = (&relayed, status) {
        await_last_lines(relayed);
    }
    let report = text.lines().next().map(|line| {
        let hello = Handshake::decode(line.as_bytes())?;
        wire::parse(&hello.report).map_err(ProtocolError::Report)
    });
    match (status, report) {
        (Some(status), Some(Ok(outcome))) if status.success() => Ok(outcome),
        // It exited as it should, but what it wrote is no report.
        (Some(status), Some(Err(e))) if status.success() => Err(refuse(format!("{p}: {e}"))),
        (Some(status), _) => Err(ended(&p, &status.into())),
        (None, Some(Ok(outcome))) => Ok(outcome),
        (None, _) => Err(timed_out(&p, deadline)),
    }
}

/// A started probing child: its report pipe and the end of its log relay.
struct Probing {
    child: Child,
    reports: File,
    /// Ends (its sender dropped) once the child's stderr is at its end and every line
    /// is logged.
    relayed: Option<mpsc::Receiver<()>>,
}

/// Starts `helper __probe PATH` with the sealed copy `image` at [`IMAGE_FD`] and the
/// report pipe at [`REPORT_FD`], its stderr re-logged under the library's path.
fn spawn(
    helper: &Helper,
    path: &Path,
    image: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<Probing> {
    let (reports, report_w) = pipe()?;
    let mut cmd = child_command(helper, PROBE_COMMAND, path);
    let mut child = provtarget_loader::process::spawn_with_fds(
        &mut cmd,
        &[
            (image, IMAGE_FD),
            (std::os::fd::AsFd::as_fd(&report_w), REPORT_FD),
        ],
    )?;
    drop(report_w);
    let relayed = child
        .stderr
        .take()
        .map(|stderr| relog(stderr, LogLabel::new(&path.to_string_lossy()), None));
    Ok(Probing {
        child,
        reports,
        relayed,
    })
}

/// What the child wrote on its report pipe until it closed; `None` when it was not
/// closed within `deadline`.
fn read_report(mut reports: File, deadline: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let _ = thread::Builder::new()
        .name("probe report".into())
        .spawn(move || {
            let mut text = String::new();
            let _ = reports.read_to_string(&mut text);
            let _ = tx.send(text);
        });
    rx.recv_timeout(deadline).ok()
}

/// The child's status once it ended, by `until`; past it, the child is killed and
/// `None` returned.
fn reap(child: &mut Child, until: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Waits (at most [`LAST_LINES`]) for the log relay to end.
fn await_last_lines(relayed: &mpsc::Receiver<()>) {
    let until = Instant::now() + LAST_LINES;
    while let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) =
        relayed.recv_timeout(until.saturating_duration_since(Instant::now()))
    {
        if Instant::now() >= until {
            break;
        }
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

/// The refusal of a library whose loading child ended (`exit`) before reporting.
pub(super) fn ended(p: &str, exit: &ChildExit) -> Refusal {
    let message = match exit {
        ChildExit::Timeout(deadline) => return timed_out(p, *deadline),
        ChildExit::Signal(_) if exit.is_stop() => format!(
            "{p}: loading was interrupted ({exit}): the child was stopped, it did not crash; \
             run again to check the library"
        ),
        ChildExit::Signal(_) => format!(
            "{p}: crashed while loading: {exit}; its load-time code would take the host down: \
             remove it or report it to its vendor"
        ),
        ChildExit::ProtocolBreach(_) => {
            format!("{p}: while loading, the child {exit}: remove it or report it to its vendor")
        }
        ChildExit::Code(_) | ChildExit::Other(_) => format!(
            "{p}: {exit} while loading; its load-time code ends the process: remove it or \
             report it to its vendor"
        ),
    };
    Refusal::new(Stage::Load, RefusalKind::CrashedWhileLoading, message)
}

/// The child: loads the sealed copy at [`IMAGE_FD`] and writes the verdict to
/// [`REPORT_FD`]. Exits 0 once the report is written, whatever the verdict.
pub fn child(path: &Path) -> ExitCode {
    let report = match inherited(REPORT_FD, true) {
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
    let hello = Handshake::new(wire::report(&record.verdict, record.plugin.as_ref()));
    if send(&report, &hello).is_err() {
        return ExitCode::from(2);
    }
    drop(report);
    // The resolver is not dropped: its drop code is not what is being judged, and the
    // process ends now.
    std::mem::forget(plugin);
    ExitCode::SUCCESS
}
