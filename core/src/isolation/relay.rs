//! The pipes between the host and a child: inherited descriptors, a child's stderr
//! re-logged by the host ([`LogLabel`], [`LogFlush`]), and bounded line reads.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    sync::{Arc, Mutex},
    thread,
};

use crate::text::printable;

/// Opens descriptor `n` this process inherited (through `/proc/self/fd`, so no unsafe
/// code is needed to adopt a raw descriptor).
pub(super) fn inherited(n: i32, write: bool) -> std::io::Result<File> {
    let path = format!("/proc/self/fd/{n}");
    if write {
        std::fs::OpenOptions::new().write(true).open(path)
    } else {
        File::open(path)
    }
}

/// A pipe whose both ends are close-on-exec.
pub(super) fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// The name a child's log lines are tagged with, changed as it becomes known (a
/// library's path when the child is handed it, then the plugin's own name from the
/// handshake). Shared by the host's side of the child and its log thread.
#[derive(Clone, Default)]
pub(crate) struct LogLabel(Arc<Mutex<String>>);

impl LogLabel {
    pub(super) fn new(text: &str) -> LogLabel {
        LogLabel(Arc::new(Mutex::new(printable(text))))
    }

    /// From now on lines are tagged `text` (escaped).
    pub(super) fn set(&self, text: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = printable(text);
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Re-logs a child's stderr (`stderr`, the read end of its pipe) through this process's `tracing`, each line tagged with
/// `label` as it is when the line arrives, and escaped, at the level the child's line
/// starts with.
///
/// With a `flush` marker: a line ending with it is not logged (what precedes the
/// marker is) and answers on the returned channel: the host writes the marker into
/// the pipe itself (it keeps a write end) to learn that every line the child wrote
/// before is logged (see [`LogFlush`]).
pub(super) fn relog(
    stderr: impl std::io::Read + Send + 'static,
    label: LogLabel,
    flush: Option<Vec<u8>>,
) -> std::sync::mpsc::Receiver<()> {
    let (flushed, acks) = std::sync::mpsc::channel::<()>();
    let _ = thread::Builder::new()
        .name("child log".into())
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let cut = match read_line_bounded(&mut reader, &mut line, MAX_LOG_LINE) {
                    Ok(Bounded::Line) => {
                        line.pop();
                        false
                    }
                    Ok(Bounded::Long) => {
                        line.truncate(MAX_LOG_LINE);
                        // The rest of that line is read and dropped.
                        let mut rest = Vec::new();
                        while let Ok(Bounded::Long) =
                            read_line_bounded(&mut reader, &mut rest, MAX_LOG_LINE)
                        {
                            rest.clear();
                        }
                        true
                    }
                    Ok(Bounded::End) if !line.is_empty() => false,
                    Ok(Bounded::End) | Err(_) => break,
                };
                if let Some(marker) = &flush {
                    if !cut && line.ends_with(marker) {
                        line.truncate(line.len() - marker.len());
                        let _ = flushed.send(());
                        if line.is_empty() {
                            continue;
                        }
                    }
                }
                if cut {
                    line.extend_from_slice(b" [line cut at 64 KiB]");
                }
                let text = String::from_utf8_lossy(&line);
                let trimmed = text.trim_start();
                let (level, rest) = trimmed.split_once(' ').unwrap_or(("", trimmed));
                let mut rest = rest.trim_start();
                // The child's own `plugin="..."` field: the host adds its own.
                if let Some(at) = rest.rfind(" plugin=\"") {
                    if rest.ends_with('"') {
                        rest = &rest[..at];
                    }
                }
                let message = printable(rest);
                let plugin = label.get();
                let plugin = plugin.as_str();
                match level {
                    "ERROR" => tracing::error!(plugin, "{message}"),
                    "WARN" => tracing::warn!(plugin, "{message}"),
                    "INFO" => tracing::info!(plugin, "{message}"),
                    "DEBUG" => tracing::debug!(plugin, "{message}"),
                    "TRACE" => tracing::trace!(plugin, "{message}"),
                    _ => {
                        let message = printable(&text);
                        tracing::warn!(plugin, "plugin output: {message}")
                    }
                }
            }
        });
    acks
}

/// The host's way to wait for a child's last log lines without waiting for the child
/// to be torn down: it keeps a write end of the child's stderr pipe and writes a
/// marker line into it; the log thread answers once it reaches the marker, every
/// line the child wrote before having been logged.
pub(crate) struct LogFlush {
    write_end: File,
    /// The read end too (the log thread owns another descriptor of it): how much
    /// waits in the pipe, so the marker is written only when it cannot block.
    read_end: Option<File>,
    marker: Vec<u8>,
    acks: std::sync::mpsc::Receiver<()>,
}

impl LogFlush {
    /// A pipe for a child's stderr (both ends close-on-exec here): the write end to
    /// give the child, the read end re-logged under `label`, and the flush.
    pub(crate) fn pipe(label: &LogLabel) -> std::io::Result<(File, LogFlush)> {
        let (read_end, write_end) = pipe()?;
        let theirs = write_end.try_clone()?;
        Ok((theirs, LogFlush::over(read_end, write_end, label)))
    }

    /// Re-logs `read_end` under `label`, keeping `write_end` for the flush.
    pub(crate) fn over(read_end: File, write_end: File, label: &LogLabel) -> LogFlush {
        use std::hash::{BuildHasher, Hasher};
        let mut nonce = std::collections::hash_map::RandomState::new().build_hasher();
        nonce.write_u32(std::process::id());
        let marker = format!("\u{1b}provtarget log flush {:016x}", nonce.finish()).into_bytes();
        let probe = read_end.try_clone().ok();
        let acks = relog(read_end, label.clone(), Some(marker.clone()));
        LogFlush {
            write_end,
            read_end: probe,
            marker,
            acks,
        }
    }

    /// Waits (at most `wait`) until every line written to the pipe so far is logged.
    /// Does not wait when the pipe is too full to take the marker without blocking
    /// (the log thread is stuck, e.g. on a stderr nobody reads).
    pub(crate) fn flush(&mut self, wait: std::time::Duration) {
        let mut line = self.marker.clone();
        line.push(b'\n');
        let room = self.read_end.as_ref().and_then(|r| {
            let size = rustix::pipe::fcntl_getpipe_size(r).ok()?;
            let queued = rustix::io::ioctl_fionread(r).ok()?;
            Some(size.saturating_sub(usize::try_from(queued).ok()?))
        });
        if room.is_some_and(|room| room > line.len()) && self.write_end.write_all(&line).is_ok() {
            let _ = self.acks.recv_timeout(wait);
        }
    }
}

/// The longest line of a child's stderr re-logged as it is; a longer one is cut
/// (a plugin printing without end must not exhaust the host's memory).
const MAX_LOG_LINE: usize = 64 * 1024;

/// How [`read_line_bounded`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bounded {
    /// A whole line, its `\n` included, is in the buffer.
    Line,
    /// More than the bound and no `\n` yet: the buffer holds `max + 1` bytes.
    Long,
    /// The end of the stream (the buffer holds what came after the last `\n`).
    End,
}

/// Appends the next line of `reader` to `buf`, never holding more than `max + 1` bytes
/// of it: a line must fit in `max` bytes, its `\n` excluded. A read error (a timeout)
/// leaves what was read in `buf`, so a later call completes the line.
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Bounded> {
    use std::io::Read;
    let room = (max + 1).saturating_sub(buf.len()) as u64;
    reader.by_ref().take(room).read_until(b'\n', buf)?;
    Ok(if buf.last() == Some(&b'\n') {
        Bounded::Line
    } else if buf.len() > max {
        Bounded::Long
    } else {
        Bounded::End
    })
}
