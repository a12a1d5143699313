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
