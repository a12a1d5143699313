//! Where log lines go: stderr, written so that a failed write can never stop
//! provisioning.
//!
//! A full log disk, or a pipe whose reader has gone, must not cost the targets that
//! stdout still carries. Every log line of the host and of its children goes through
//! [`Stderr`]: a line that cannot be written is dropped and counted ([`dropped`]), never
//! returned as an error (on which `tracing-subscriber` would `eprintln!`, and that
//! panics on the same broken stderr). The count is reported once at exit
//! ([`dropped_summary`]).
#![forbid(unsafe_code)]

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
};

/// Log lines (writes) that could not be written to stderr so far.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The first write error, for the summary.
static FIRST_ERROR: OnceLock<String> = OnceLock::new();

/// A writer to this process's stderr that never fails: a write error drops the text
/// and counts it (see [`dropped`]). Use it as `tracing-subscriber`'s writer
/// (`with_writer(Stderr)`), or for one line ([`line`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if repeated_too_often(buf) {
            return Ok(buf.len());
        }
        let result = if buf.len() > MAX_LINE {
            // One event is one write: a 1 MB value must not become a 1 MB log line.
            let mut cut = buf[..MAX_LINE].to_vec();
            cut.extend_from_slice(
                format!(
                    " [line cut at {} KiB of {} bytes]\n",
                    MAX_LINE >> 10,
                    buf.len()
                )
                .as_bytes(),
            );
            io::stderr().lock().write_all(&cut)
        } else {
            io::stderr().lock().write_all(buf)
        };
        if let Err(e) = result {
            note_dropped(&e);
        }
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

/// The longest log line written as it is; a longer one is cut (and says so).
pub const MAX_LINE: usize = 16 * 1024;

/// How many times one line is written, lines that differ only in their digits (the
/// timestamp, a message id, a count) being the same line; later copies are counted,
/// not written (a DNS server flooding wrong-id answers made the built-in resolver log
/// thousands of warnings in seconds, each with another id). See [`suppressed`]. As
/// many as the configuration's and the loader's own caps on one kind of warning, so
/// those are never cut short.
pub const MAX_REPEATS: u32 = 10;

/// Lines not written because they repeated an earlier one too often.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// How many copies of each line were seen (by a hash of its text after the
/// timestamp), for [`MAX_REPEATS`]. Bounded: cleared when it holds too many lines.
static SEEN: std::sync::Mutex<Option<std::collections::HashMap<u64, u32>>> =
    std::sync::Mutex::new(None);

/// Whether `line` repeats an earlier line more than [`MAX_REPEATS`] times (then it is
/// counted in [`suppressed`], reported once at exit).
fn repeated_too_often(line: &[u8]) -> bool {
    use std::hash::{BuildHasher, Hasher};
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    for b in line.iter().filter(|b| !b.is_ascii_digit()) {
        hasher.write_u8(*b);
    }
    let key = hasher.finish();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(Default::default);
    if seen.len() >= 4096 {
        seen.clear();
    }
    let count = seen.entry(key).or_insert(0);
    *count = count.saturating_add(1);
    if *count > MAX_REPEATS {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}

/// How many log lines were not written because they repeated an earlier line more
/// than [`MAX_REPEATS`] times.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

fn note_dropped(e: &io::Error) {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    let _ = FIRST_ERROR.set(e.to_string());
}

/// Writes `text` and a newline to stderr as one write; dropped and counted on error.
pub fn line(text: &str) {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    let _ = Stderr.write_all(buf.as_bytes());
}

/// How many writes to stderr failed so far.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// One line saying how many log lines were lost and why (the first error), when any
/// were: `provtarget: 3 log line(s) could not be written to stderr (No space left on
/// device); ...`. `None` when none was lost.
pub fn dropped_summary() -> Option<String> {
    let n = dropped();
    (n > 0).then(|| {
        let why = FIRST_ERROR
            .get()
            .map(String::as_str)
            .unwrap_or("unknown error");
        format!(
            "provtarget: {n} log line(s) could not be written to stderr ({why}); they were \
             dropped so that provisioning could go on: free space on the log disk or fix \
             what reads stderr"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_written_at_most_max_repeats_times_whatever_its_timestamp() {
        // Another timestamp and another id: the same line.
        let line = |n: u32| {
            format!("2026-12-07T12:00:{n:02}Z  WARN ignoring response with wrong message id expected_id={n} received_id={}\n", n * 7)
        };
        let before = suppressed();
        let written = (0..20)
            .filter(|ts| !repeated_too_often(line(*ts).as_bytes()))
            .count();
        assert_eq!(written, MAX_REPEATS as usize);
        assert_eq!(suppressed() - before, 20 - u64::from(MAX_REPEATS));
        // Another line is written.
        assert!(!repeated_too_often(b"2026-12-07T12:00:00Z  WARN another\n"));
    }

    #[test]
    fn no_summary_without_a_drop_and_one_naming_the_error_after() {
        assert!(DROPPED.load(Ordering::Relaxed) == 0 || dropped_summary().is_some());
        note_dropped(&io::Error::from_raw_os_error(28));
        let s = dropped_summary().expect("a drop was counted");
        assert!(s.contains("log line(s) could not be written"), "{s}");
        assert!(s.contains("No space left on device"), "{s}");
    }
}
