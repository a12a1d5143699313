//! Starting a child process with chosen descriptors at chosen numbers (the sealed copy
//! of a library, a reply pipe), which `std::process::Command` cannot do by itself.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::{
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Child, Command},
};

/// The most descriptors [`spawn_with_fds`] can place.
const MAX_FDS: usize = 16;

/// Spawns `command` with each `(descriptor, number)` of `fds` duplicated to `number`
/// in the child, and nothing else above stderr: every other descriptor (whoever
/// opened it: this process, or whoever started it, e.g. `7<secret.txt`) is made
/// close-on-exec in the child before the `exec`, so the child starts with only stdin,
/// stdout, stderr and `fds`. Numbers should be 3 and above (0–2 are set by
/// `command`'s stdio); at most 16. The descriptors stay open in this process.
pub fn spawn_with_fds(command: &mut Command, fds: &[(BorrowedFd<'_>, RawFd)]) -> io::Result<Child> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many descriptors for a child"));
    }
    // First move every source out of the way of every target number, so that a
    // source equal to another target is not overwritten before it is copied.
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(fd, to)| (fd.as_raw_fd(), *to)).collect();
    // The numbers to keep, sorted, in a fixed array (no allocation after the fork).
    let mut keep = [RawFd::MAX; MAX_FDS];
    for (slot, (_, to)) in keep.iter_mut().zip(&pairs) {
        *slot = *to;
    }
    keep.sort_unstable();
    let kept = pairs.len();
    let limit = descriptor_limit();
    // SAFETY: the closure runs in the forked child before exec, and calls only
    // async-signal-safe functions (fcntl, dup2, close_range) on descriptor numbers,
    // with no allocation (`pairs` and `keep` were made before the fork and are only
    // read).
    unsafe {
        command.pre_exec(move || {
            let mut moved = [0 as RawFd; 16];
            for (i, (from, _)) in pairs.iter().enumerate().take(16) {
                let high = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 64);
                if high < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for (i, (_, to)) in pairs.iter().enumerate().take(16) {
                // dup2 clears close-on-exec on the new number.
                if libc::dup2(moved[i], *to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Everything else above stderr closes at the exec: the gaps between the
            // kept numbers, then all above the last.
            let mut from: RawFd = 3;
            for &k in &keep[..kept] {
                if k >= from {
                    cloexec_range(from, k - 1, limit);
                    from = k + 1;
                }
            }
            cloexec_range(from, RawFd::MAX, limit);
            Ok(())
        })
    };
    command.spawn()
}

/// The highest descriptor number worth visiting one by one when `close_range` is
/// missing (kernels before 5.11): the soft `RLIMIT_NOFILE`, at most 65,536.
fn descriptor_limit() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return 65_536;
    }
    RawFd::try_from(limit.rlim_cur.min(65_536)).unwrap_or(65_536)
}

/// `close_range(first, last, ...)` (Linux 5.9+): closes the descriptors, or with
/// `cloexec` marks them close-on-exec (`CLOSE_RANGE_CLOEXEC`). Whether the kernel did it (false:
/// not Linux, or a kernel without it; the caller falls back). Async-signal-safe: one
/// system call, no allocation.
fn sys_close_range(first: RawFd, last: RawFd, cloexec: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        let flags = if cloexec {
            libc::CLOSE_RANGE_CLOEXEC
        } else {
            0
        };
        // SAFETY: close_range takes plain numbers and flags and touches no memory of
        // ours; closing descriptors the caller still uses is the caller's concern,
        // stated at each call.
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                last as libc::c_uint,
                flags,
            )
        };
        done == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (first, last, cloexec);
        false
    }
}

/// Marks descriptors `first..=last` close-on-exec (between fork and exec: only
/// async-signal-safe calls, no allocation). One `close_range` call, else each number
/// up to `limit`.
///
/// # Safety
/// Only system calls on numbers; safe to call in a forked child before `exec`.
unsafe fn cloexec_range(first: RawFd, last: RawFd, limit: RawFd) {
    if first > last {
        return;
    }
    if sys_close_range(first, last, true) {
        return;
    }
    let mut fd = first;
    while fd <= last && fd <= limit {
        // SAFETY: fcntl on a number; a closed one fails with EBADF, changing nothing.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        }
        fd += 1;
    }
}

/// Closes every descriptor of this process numbered `first` and above, except those
/// in `keep`: for a copy made by [`fork_single_threaded`] that will not `exec`, so
/// that it keeps nothing of what its parent inherited from whoever started it. Call
/// it when the copy holds no descriptor it still needs at those numbers (no `File`
/// left to drop) other than `keep`.
pub fn close_from(first: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&k| k >= first).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = first;
    for &k in &keep {
        close_range(from, k - 1);
        from = k + 1;
    }
    close_range(from, RawFd::MAX);
}

/// Closes descriptors `first..=last` (see [`close_from`]).
fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    // The caller owns every descriptor of this single-threaded copy and keeps none it
    // needs at these numbers.
    if sys_close_range(first, last, false) {
        return;
    }
    let numbers: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&n| n >= first && n <= last)
            .collect(),
        Err(_) => (first..=last.min(descriptor_limit())).collect(),
    };
    for n in numbers {
        // SAFETY: as above (the listing's own descriptor is closed already, or fails).
        unsafe { libc::close(n) };
    }
}

/// Which side of [`fork_single_threaded`] this is.
#[derive(Debug)]
pub enum Forked {
    /// The new process (a copy of this one).
    Child,
    /// This process; the new one has this process id.
    Parent(u32),
}

/// Forks this process, only while it has a single thread: then the copy holds no lock
/// of a thread that does not exist in it, and may run any code (allocate, log, load a
/// library) as a freshly started program would. With more than one thread, or when
/// that cannot be told, nothing is forked and `Err` says why.
///
/// The caller must make sure the copy never returns into code meant for this process
/// only (it should end with `std::process::exit`), and that nothing buffered for
/// output is written twice (call it before anything is written).
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "this process has {threads} threads; only a single-threaded process may fork"
        )));
    }
    // SAFETY: the process has exactly one thread (counted just above; nothing in this
    // thread starts another between the count and the call), so the child is a
    // complete copy: no lock (allocator, stdio, environment) can be held by a thread
    // missing in it, and it may run arbitrary code. `fork` has no other precondition.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With another thread alive, nothing is forked (a fork would copy locks held by
    /// a thread missing in the copy): the count of `/proc/self/task` says so.
    #[test]
    fn a_process_with_other_threads_is_never_forked() {
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = parked.recv();
        });
        let result = fork_single_threaded();
        stop.send(()).expect("the other thread waits");
        other.join().expect("the other thread ends");
        let e = result.expect_err("forked with another thread running");
        assert!(
            e.to_string().contains("threads; only a single-threaded"),
            "{e}"
        );
    }
}
