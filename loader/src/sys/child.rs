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

/// Spawns `command` with each `(descriptor, number)` of `fds` duplicated to `number`
/// in the child (without close-on-exec there; every other descriptor of ours keeps its
/// close-on-exec flag). Numbers should be 3 and above (0–2 are set by `command`'s
/// stdio). The descriptors stay open in this process.
pub fn spawn_with_fds(command: &mut Command, fds: &[(BorrowedFd<'_>, RawFd)]) -> io::Result<Child> {
    // First move every source out of the way of every target number, so that a
    // source equal to another target is not overwritten before it is copied.
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(fd, to)| (fd.as_raw_fd(), *to)).collect();
    // SAFETY: the closure runs in the forked child before exec, and calls only
    // async-signal-safe functions (fcntl, dup2, close) on descriptor numbers, with no
    // allocation (`pairs` was allocated before the fork and is only read).
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
            Ok(())
        })
    };
    command.spawn()
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
