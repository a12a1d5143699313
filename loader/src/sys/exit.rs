//! Ending the process at once from any thread, whatever the other threads hold.
//!
//! `std::process::exit` runs `atexit` handlers and the dynamic loader's `_dl_fini`,
//! which takes the loader's lock: a thread stuck in a library constructor holds that
//! lock inside `dlopen`, so the exit would wait for it for ever. [`now`] takes no lock
//! at all: one `write(2)` of a message given as bytes (nothing is allocated or
//! formatted) and `_exit(2)`, both async-signal-safe.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

/// Writes `message` to descriptor 2 (errors ignored: there is nowhere else to report
/// them) and ends the process with `status`, without running destructors, `atexit`
/// handlers or the dynamic loader's finalisers, and without taking any lock.
pub fn now(message: &[u8], status: i32) -> ! {
    let mut rest = message;
    while !rest.is_empty() {
        // SAFETY: write(2) reads `rest.len()` bytes from a live slice; descriptor 2 is a
        // plain number (a closed or broken one only makes the call fail).
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
    // SAFETY: _exit(2) has no preconditions; it ends the process without running any
    // code of this process (no handlers, no destructors, no locks).
    unsafe { libc::_exit(status) }
}
