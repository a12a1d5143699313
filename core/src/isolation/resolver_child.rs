//! A resolver child as the host holds it ([`Running`]: the process, its socket, its
//! replies and its log), started from the helper executable or forked from this
//! process, and kept waiting for a library ([`Spare`]).
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::BufReader,
    os::{
        fd::OwnedFd,
        unix::{net::UnixStream, process::ExitStatusExt},
    },
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use super::child_init::serve_main;
use super::command::{scrub_env, scrub_own_env, SERVE_COMMAND};
use super::relay::{pipe, read_line_bounded, Bounded, LogFlush, LogLabel};

pub(super) struct Running {
    pub(super) child: Proc,
    pub(super) requests: UnixStream,
    pub(super) replies: Replies,
    pub(super) next_id: u64,
    /// To wait for the child's last log lines when it is ended.
    log: LogFlush,
}

impl Running {
    /// Whether the child still runs.
    pub(super) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// How long ending a child waits for its last log lines to be re-logged (its stderr
/// closes as soon as the killed process is gone).
const LAST_LINES_WAIT: Duration = Duration::from_secs(1);

/// The child's lines, read by the caller itself (no thread, no hand-over): a blocking
/// read with a timeout, the part of a line read before a timeout kept for the next.
pub(super) struct Replies {
    reader: BufReader<UnixStream>,
    pending: Vec<u8>,
}

/// The longest line a child may send. The longest valid one, an answer of the most
/// targets the host accepts with every entry at its longest and escaped, is under
/// 7 MiB; a child (its plugin) sending more without end must not exhaust the host's
/// memory.
pub const MAX_LINE: usize = 16 << 20;

/// What [`Replies::next`] got.
pub(super) enum Next {
    /// A whole line, without its `\n`.
    Line(Vec<u8>),
    /// Nothing within the wait.
    Timeout,
    /// The child closed its end (it ended).
    Closed,
    /// A line over [`MAX_LINE`]: the child breaks the protocol.
    TooLong,
}

impl Replies {
    /// The next line within `wait`.
    pub(super) fn next(&mut self, wait: Duration) -> Next {
        let wait = wait.max(Duration::from_millis(1));
        if self.reader.get_ref().set_read_timeout(Some(wait)).is_err() {
            return Next::Closed;
        }
        loop {
            match read_line_bounded(&mut self.reader, &mut self.pending, MAX_LINE) {
                Ok(Bounded::Line) => {
                    let mut line = std::mem::take(&mut self.pending);
                    line.pop();
                    return Next::Line(line);
                }
                Ok(Bounded::Long) => {
                    self.pending = Vec::new();
                    return Next::TooLong;
                }
                // End of the stream (a partial last line is not a reply).
                Ok(Bounded::End) => return Next::Closed,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Next::Timeout
                }
                Err(_) => return Next::Closed,
            }
        }
    }
}

impl Drop for Running {
    /// Kills the child. It is reaped here when already gone, else by a short-lived
    /// thread, so that ending a host (or the `provtarget` command) does not wait for
    /// the kernel to tear a killed process down; a program that exits first leaves the
    /// reaping to init, the child being dead either way.
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Its last lines (often why it failed) are logged before the host goes on, or
        // ends, without waiting for the killed child to be torn down.
        self.log.flush(LAST_LINES_WAIT);
        if let Ok(None) = self.child.try_wait() {
            let mut child = std::mem::replace(&mut self.child, Proc::HandedOver);
            let spawned = thread::Builder::new()
                .name("reap child".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            if let Err(e) = spawned {
                tracing::warn!(
                    "cannot start a thread to reap a killed resolver process ({e}); it stays \
                     a zombie until this program ends"
                );
            }
        }
    }
}

/// A resolver child: started from the helper executable, or forked from this process
/// at start-up ([`Spare::fork`]).
pub(super) enum Proc {
    Spawned(Child),
    Forked {
        pid: rustix::process::Pid,
        ended: Option<ExitStatus>,
    },
    /// Handed to a thread that reaps it (see `Running`'s `drop`).
    HandedOver,
}

impl Proc {
    fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Proc::Spawned(child) => child.kill(),
            Proc::Forked { pid, ended: None } => Ok(rustix::process::kill_process(
                *pid,
                rustix::process::Signal::KILL,
            )?),
            Proc::Forked { .. } | Proc::HandedOver => Ok(()),
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.reap(rustix::process::WaitOptions::NOHANG)
    }

    pub(super) fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.reap(rustix::process::WaitOptions::empty())?
            .ok_or_else(|| std::io::Error::other("the child did not end"))
    }

    fn reap(
        &mut self,
        options: rustix::process::WaitOptions,
    ) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Proc::Spawned(child) if options.is_empty() => child.wait().map(Some),
            Proc::Spawned(child) => child.try_wait(),
            Proc::Forked {
                ended: Some(status),
                ..
            } => Ok(Some(*status)),
            Proc::HandedOver => Err(std::io::Error::other("the child was handed over")),
            Proc::Forked { pid, ended } => {
                let Some((_, status)) = rustix::process::waitpid(Some(*pid), options)? else {
                    return Ok(None);
                };
                let status = ExitStatus::from_raw(status.as_raw());
                *ended = Some(status);
                Ok(Some(status))
            }
        }
    }
}

/// A resolver child started ahead of need, waiting for its library (see
/// [`super::helper::Helper::prestart`]). Dropping it ends the child.
pub struct Spare {
    pub(super) running: Running,
    pub(super) label: LogLabel,
}

impl Spare {
    /// Starts `helper __serve`.
    pub(super) fn start(helper: &Path) -> std::io::Result<Spare> {
        let label = LogLabel::new("resolver process");
        let running = start_child(helper, &label)?;
        Ok(Spare { running, label })
    }

    /// Forks a resolver child from this process, which must have a single thread (the
    /// `provtarget` command at start-up, see [`super::helper::Helper::fork_spare`]). The copy sets
    /// its stdio (the socket, `/dev/null`, the log pipe), serves like `__serve` and
    /// exits; it never returns from here. Costs a `fork`, not an `exec` of the helper.
    pub(super) fn fork() -> std::io::Result<Spare> {
        let (ours, theirs) = UnixStream::pair()?;
        let (log_r, log_w) = pipe()?;
        let null = File::options().write(true).open("/dev/null")?;
        match provtarget_loader::process::fork_single_threaded()? {
            provtarget_loader::process::Forked::Child => {
                drop((ours, log_r));
                let code = match become_served(&theirs, &null, &log_w) {
                    Ok(()) => {
                        drop((theirs, null, log_w));
                        // The copy keeps nothing above stderr: not the host's
                        // descriptors, nor those whoever started the host left open.
                        provtarget_loader::process::close_from(3, &loader_debug_output());
                        scrub_own_env();
                        serve_main()
                    }
                    Err(_) => 2,
                };
                std::process::exit(code.into())
            }
            provtarget_loader::process::Forked::Parent(pid) => {
                drop((theirs, null));
                let pid = rustix::process::Pid::from_raw(pid as i32)
                    .ok_or_else(|| std::io::Error::other("fork gave no process id"))?;
                let label = LogLabel::new("resolver process");
                let child = Proc::Forked { pid, ended: None };
                let log = LogFlush::over(log_r, log_w, &label);
                let running = adopt(child, ours, log)?;
                Ok(Spare { running, label })
            }
        }
    }

    /// Whether the child still runs.
    pub(super) fn alive(&mut self) -> bool {
        self.running.alive()
    }
}

/// Starts `helper __serve` on a new socket pair (its end as the child's stdin), with
/// its stderr re-logged under `label`.
pub(super) fn start_child(helper: &Path, label: &LogLabel) -> std::io::Result<Running> {
    let (ours, theirs) = UnixStream::pair()?;
    let (log_theirs, log) = LogFlush::pipe(label)?;
    let mut cmd = Command::new(helper);
    cmd.arg(SERVE_COMMAND)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_theirs));
    scrub_env(&mut cmd);
    // Nothing above stderr is inherited (whoever started the host may have left
    // descriptors open).
    let spawned = provtarget_loader::process::spawn_with_fds(&mut cmd, &[]);
    // The command holds the child's ends: closed here, so the child's end of the
    // socket is the child's alone (its exit is then seen as the end of the stream).
    drop(cmd);
    adopt(Proc::Spawned(spawned?), ours, log)
}

/// The host's side of a started child: its replies read on `ours`, its stderr
/// re-logged through `log`.
pub(super) fn adopt(mut child: Proc, ours: UnixStream, log: LogFlush) -> std::io::Result<Running> {
    let lines = match ours.try_clone() {
        Ok(lines) => lines,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Running {
        child,
        requests: ours,
        replies: Replies {
            reader: BufReader::new(lines),
            pending: Vec::new(),
        },
        next_id: 1,
        log,
    })
}

/// The descriptors the dynamic loader writes `LD_DEBUG` output to (files named
/// after `LD_DEBUG_OUTPUT`), which a forked child keeps: they are glibc's, opened
/// for debugging by whoever set the variable, not the caller's secrets.
fn loader_debug_output() -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    let Some(prefix) = std::env::var_os("LD_DEBUG_OUTPUT") else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target
                .as_os_str()
                .as_bytes()
                .starts_with(prefix.as_bytes())
                .then_some(n)
        })
        .collect()
}

/// In a forked child: the socket as stdin, `/dev/null` as stdout, the log pipe as
/// stderr (each first moved above the standard numbers, in case one of them was
/// closed in the parent and the new descriptor took its number).
fn become_served(socket: &UnixStream, null: &File, log: &File) -> std::io::Result<()> {
    let socket = rustix::io::fcntl_dupfd_cloexec(socket, 3)?;
    let null = rustix::io::fcntl_dupfd_cloexec(null, 3)?;
    let log = rustix::io::fcntl_dupfd_cloexec(log, 3)?;
    rustix::stdio::dup2_stdin(&socket)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&log)?;
    Ok(())
}
