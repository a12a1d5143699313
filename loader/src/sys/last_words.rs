//! Last words: when plugin code kills the process (a crash, `abort()`, `exit()`), one
//! line on stderr names the plugin and the call it was in, instead of silence.
//!
//! Before each call into a plugin, [`enter`] preformats the plugin's (escaped,
//! truncated) name and the call's name into one of a fixed set of static slots, owned
//! by the calling thread (its kernel thread id) and published through atomics; the
//! returned [`Guard`] clears the slot when the call returns. Two hooks read the slots
//! with async-signal-safe code only (atomic loads, `gettid`, `write(2)`,
//! `sigaction`, `raise`, `_exit`):
//!
//! - a signal handler for `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE` and `SIGABRT`: when
//!   the thread that received it (else the most recent call, for a thread the plugin
//!   started itself) is inside a plugin call, it writes
//!   `provtarget: plugin X crashed in targets: killed by signal 11 (SIGSEGV)`,
//!   restores the default action and re-raises, so the process still dies of that
//!   signal. Outside plugin calls it restores the previous action (Rust's own
//!   stack-overflow handler, say) and lets the signal happen again.
//! - an exit hook (`on_exit` on glibc, `atexit` elsewhere): when `exit()` is called
//!   on a thread that is inside a plugin call, it writes
//!   `provtarget: plugin X called exit(N) in configure; treating it as a failure` and
//!   ends the process with status [`EXIT_STATUS`], so `exit(0)` in a plugin can never
//!   end as a silent success.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::{
    cell::UnsafeCell,
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering},
        Once,
    },
};

/// The exit status of a process in which a plugin called `exit()` (`EX_SOFTWARE`).
pub const EXIT_STATUS: i32 = 70;

/// How many plugin calls can be in progress at once with their names kept (more
/// calls still run; they just leave generic last words).
const SLOTS: usize = 64;
/// The longest plugin name kept, in bytes (escaped).
const NAME_MAX: usize = 160;

struct Slot {
    /// Kernel thread id of the owner; 0 when free.
    tid: AtomicI32,
    /// Bytes of `name` that are valid; 0 while being written.
    len: AtomicUsize,
    /// Index into [`CALLS`].
    call: AtomicUsize,
    name: UnsafeCell<[u8; NAME_MAX]>,
}

// SAFETY: `name` is written only by the thread that claimed the slot (a CAS on
// `tid`), before publishing `len` with Release; readers read it only after an Acquire
// load of a non-zero `len`.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    tid: AtomicI32::new(0),
    len: AtomicUsize::new(0),
    call: AtomicUsize::new(0),
    name: UnsafeCell::new([0; NAME_MAX]),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// The slot most recently entered, plus one (0: none).
static LATEST: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Defines [`Call`] and [`CALLS`] from one list, so a call cannot be added to one and
/// not the other (a missed name would blame the wrong call in a crash message).
macro_rules! calls {
    ($($(#[doc = $doc:literal])* $call:ident => $name:literal,)+) => {
        /// Which plugin call a [`Guard`] covers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Call {
            $($(#[doc = $doc])* $call,)+
        }

        /// The names of the calls, as last words write them, indexed by
        /// [`Call::index`].
        const CALLS: &[&str] = &[$($name,)+];

        impl Call {
            /// Every call, in [`CALLS`] order.
            #[cfg(test)]
            const ALL: &'static [Call] = &[$(Call::$call,)+];
        }
    };
}

calls! {
    /// `dlopen` (its initialisers, `.init_array`).
    Load => "load",
    /// The plugin's constructor.
    Constructor => "constructor",
    /// `configure`.
    Configure => "configure",
    /// `targets` (and the answer's other calls, made through the same adapter).
    Targets => "targets",
    /// Dropping the resolver.
    Drop => "drop",
}

/// What last words say when a slot's call index is not in [`CALLS`].
const SOME_CALL: &str = "a call";

impl Call {
    fn index(self) -> usize {
        self as usize
    }

    /// The call's name as last words write it (`targets`).
    pub fn name(self) -> &'static str {
        CALLS[self.index()]
    }
}

/// Marks the calling thread as inside a plugin call until dropped.
#[must_use = "the call is marked only while the guard lives"]
#[derive(Debug)]
pub struct Guard {
    slot: Option<usize>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &TABLE[i];
            slot.len.store(0, Ordering::Release);
            let _ = LATEST.compare_exchange(i + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
            slot.tid.store(0, Ordering::Release);
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and is async-signal-safe.
    unsafe { libc::gettid() }
}

/// This thread's id, asked of the kernel once per thread (`gettid` is a system call,
/// which cost ~300 ns per plugin call on a virtual machine). Only `enter` uses it: the
/// signal handler asks the kernel (a thread-local is not for signal context). A fork
/// copies the value, so a process that forks (the `provtarget` command, at start-up)
/// does so before any plugin call.
fn own_tid() -> i32 {
    thread_local! {
        static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
    }
    TID.with(|t| match t.get() {
        0 => {
            let tid = gettid();
            t.set(tid);
            tid
        }
        tid => tid,
    })
}

/// Marks the calling thread as running `call` of plugin `name` (any text: it is
/// escaped) until the guard is dropped. Cheap (no allocation; the thread's id is
/// asked of the kernel once per thread); does nothing visible unless [`install`] has
/// been called.
pub fn enter(name: &str, call: Call) -> Guard {
    let tid = own_tid();
    for (i, slot) in TABLE.iter().enumerate() {
        if slot
            .tid
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: this thread owns the slot (the CAS above) and `len` is 0, so no
            // reader looks at `name` until the Release store below; the escaped name
            // is written in place (no copy of the whole buffer on every call).
            let n = escape_into(name, unsafe { &mut *slot.name.get() });
            slot.call.store(call.index(), Ordering::Relaxed);
            slot.len.store(n.max(1), Ordering::Release);
            LATEST.store(i + 1, Ordering::Release);
            return Guard { slot: Some(i) };
        }
    }
    Guard { slot: None }
}

/// Printable ASCII only (others as `\xNN`, `\u{..}` collapsed to `?`), at most
/// [`NAME_MAX`] bytes; returns the length.
fn escape_into(name: &str, out: &mut [u8; NAME_MAX]) -> usize {
    // The common case, a short printable name, in one check and one copy.
    if name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        out[..name.len()].copy_from_slice(name.as_bytes());
        return name.len();
    }
    let mut n = 0;
    for b in name.bytes() {
        let (bytes, len): ([u8; 4], usize) = if (0x20..0x7f).contains(&b) && b != b'\\' {
            ([b, 0, 0, 0], 1)
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            (
                [
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ],
                4,
            )
        };
        if n + len > NAME_MAX {
            break;
        }
        out[n..n + len].copy_from_slice(&bytes[..len]);
        n += len;
    }
    n
}

/// The slot this thread is in, else (when `any` is set) the latest one entered.
fn current_slot(any: bool) -> Option<&'static Slot> {
    let tid = gettid();
    let own = TABLE
        .iter()
        .find(|s| s.tid.load(Ordering::Acquire) == tid && s.len.load(Ordering::Acquire) > 0);
    own.or_else(|| {
        if !any {
            return None;
        }
        let latest = LATEST.load(Ordering::Acquire);
        let slot = TABLE.get(latest.checked_sub(1)?)?;
        (slot.len.load(Ordering::Acquire) > 0).then_some(slot)
    })
}

/// A fixed buffer to compose one line in, without allocating.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
    fn push_int(&mut self, value: i32) {
        let mut digits = [0u8; 12];
        let mut i = digits.len();
        let negative = value < 0;
        let mut v = i64::from(value).unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            i -= 1;
            digits[i] = b'-';
        }
        self.push(&digits[i..]);
    }
    fn push_plugin(&mut self, slot: &Slot) {
        let len = slot.len.load(Ordering::Acquire).min(NAME_MAX);
        self.push(b"provtarget: plugin ");
        // SAFETY: `len` was published with Release after `name` was written.
        let name = unsafe { &*slot.name.get() };
        self.push(&name[..len]);
    }
    fn call(slot: &Slot) -> &'static [u8] {
        CALLS
            .get(slot.call.load(Ordering::Relaxed))
            .unwrap_or(&SOME_CALL)
            .as_bytes()
    }
    fn write_stderr(&self) {
        let mut rest = &self.buf[..self.len];
        while !rest.is_empty() {
            // SAFETY: writing a valid buffer to fd 2; async-signal-safe.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                break;
            }
            rest = &rest[n as usize..];
        }
    }
}

/// The text of a fatal signal, as shown in last words: `killed by signal 11 (SIGSEGV)`.
pub fn signal_text(signal: i32) -> String {
    match signal_name(signal) {
        Some(name) => format!("killed by signal {signal} ({name})"),
        None => format!("killed by signal {signal}"),
    }
}

/// The conventional name of a signal number (`SIGSEGV`), for the common ones.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

const FATAL: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// The actions in place before [`install`], per entry of [`FATAL`].
struct Previous(UnsafeCell<[std::mem::MaybeUninit<libc::sigaction>; 5]>);
// SAFETY: written once inside `Once::call_once` before any handler is installed, only
// read afterwards.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new([std::mem::MaybeUninit::zeroed(); 5]));

extern "C" fn on_fatal_signal(signal: libc::c_int) {
    let index = FATAL.iter().position(|&s| s == signal).unwrap_or(0);
    if let Some(slot) = current_slot(true) {
        let mut line = Line::new();
        line.push_plugin(slot);
        line.push(b" crashed in ");
        line.push(Line::call(slot));
        line.push(b": killed by signal ");
        line.push_int(signal);
        if let Some(name) = signal_name(signal) {
            line.push(b" (");
            line.push(name.as_bytes());
            line.push(b")");
        }
        line.push(b"\n");
        line.write_stderr();
        // SAFETY: async-signal-safe calls with valid arguments: back to the default
        // action, then the same signal again (pending until this handler returns, and
        // a faulting instruction faults again anyway).
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    } else {
        // Not ours: put back what was there (Rust's stack-overflow handler, or the
        // default) and let the signal happen again on return.
        // SAFETY: PREVIOUS[index] was filled by `install` before this handler was set.
        unsafe {
            let previous = (*PREVIOUS.0.get())[index].as_ptr();
            libc::sigaction(signal, previous, std::ptr::null_mut());
            if signal == libc::SIGABRT {
                libc::raise(signal);
            }
        }
    }
}

fn exit_hook(status: i32) {
    if let Some(slot) = current_slot(false) {
        let mut line = Line::new();
        line.push_plugin(slot);
        line.push(b" called exit(");
        line.push_int(status);
        line.push(b") in ");
        line.push(Line::call(slot));
        line.push(b"; treating it as a failure\n");
        line.write_stderr();
        // SAFETY: _exit may be called from an exit handler; it ends the process
        // without running the remaining handlers.
        unsafe { libc::_exit(EXIT_STATUS) };
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn on_exit(
        function: extern "C" fn(libc::c_int, *mut libc::c_void),
        arg: *mut libc::c_void,
    ) -> libc::c_int;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn on_exit_hook(status: libc::c_int, _: *mut libc::c_void) {
    exit_hook(status);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
extern "C" fn atexit_hook() {
    // The status is not known here.
    exit_hook(-1);
}

/// Installs the signal handlers and the exit hook, once per process (later calls do
/// nothing). Call it early in `main`, before any plugin is loaded.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: filling PREVIOUS before any handler reads it; sigaction with valid
        // pointers; the handler only does async-signal-safe work (see the module
        // documentation). SA_ONSTACK: a stack overflow in a plugin still reaches the
        // handler on the alternate stack Rust sets up for each thread.
        unsafe {
            let previous = &mut *PREVIOUS.0.get();
            for (i, &signal) in FATAL.iter().enumerate() {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, previous[i].as_mut_ptr());
            }
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            on_exit(on_exit_hook, std::ptr::null_mut());
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            libc::atexit(atexit_hook);
        }
        INSTALLED.store(true, Ordering::Release);
    });
}

/// Whether [`install`] has run in this process.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_bounded() {
        let mut out = [0u8; NAME_MAX];
        let n = escape_into("A\nb\\", &mut out);
        assert_eq!(&out[..n], b"A\\x0ab\\x5c");
        let n = escape_into(&"x".repeat(1000), &mut out);
        assert_eq!(n, NAME_MAX);
    }

    #[test]
    fn a_guard_marks_only_its_thread_until_dropped() {
        assert!(current_slot(false).is_none());
        let guard = enter("Some Plugin", Call::Targets);
        let slot = current_slot(false).expect("marked");
        let mut line = Line::new();
        line.push_plugin(slot);
        assert_eq!(&line.buf[..line.len], b"provtarget: plugin Some Plugin");
        assert_eq!(Line::call(slot), b"targets");
        std::thread::spawn(|| assert!(current_slot(false).is_none()))
            .join()
            .unwrap();
        drop(guard);
        assert!(current_slot(false).is_none());
    }

    #[test]
    fn every_call_has_its_own_name_in_last_words() {
        // Each call's slot index leads to its own name, and no two calls share one.
        assert_eq!(Call::ALL.len(), CALLS.len());
        for (i, &call) in Call::ALL.iter().enumerate() {
            assert_eq!(call.index(), i);
            let name = call.name();
            assert!(!name.is_empty() && name != SOME_CALL, "{call:?}");
            let guard = enter("P", call);
            assert_eq!(Line::call(current_slot(false).unwrap()), name.as_bytes());
            drop(guard);
        }
        assert_eq!(Call::Targets.name(), "targets");
        assert_eq!(Call::Load.name(), "load");
        let mut names = CALLS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CALLS.len(), "{CALLS:?}");
    }

    #[test]
    fn integers_are_written_in_decimal() {
        let mut line = Line::new();
        line.push_int(0);
        line.push(b" ");
        line.push_int(-3);
        line.push(b" ");
        line.push_int(139);
        assert_eq!(&line.buf[..line.len], b"0 -3 139");
        assert_eq!(signal_text(11), "killed by signal 11 (SIGSEGV)");
    }
}
