//! A hostile resolver for the isolation tests: `crasher.configure` and
//! `crasher.targets` choose what each call does.
//!
//! | value | what the call does |
//! |---|---|
//! | `ok` (default) | answers (`targets`: the comma-separated `crasher.answer`) |
//! | `null-write` | writes through a null pointer (`SIGSEGV`) |
//! | `abort` | calls `abort()` (`SIGABRT`) |
//! | `exit0` / `exit3` | calls `exit(0)` / `exit(3)` |
//! | `spin` | busy-loops forever, ignoring cancellation |
//! | `stdout-garbage` | prints junk to stdout and stderr, then answers |
//! | `panic` | panics (the SDK turns it into an error) |
//! | `stderr-flood` | writes one line of 64 MiB to stderr, then answers |
//! | `socket-flood` | writes 64 MiB without a newline to every socket it holds (in a resolver process: the host's protocol socket), then answers |
//!
//! With `crasher.once_file` set, the behaviour happens once: the file is created
//! first, and while it exists every call behaves as `ok` (to test restarts).
//!
//! The unsafe code is the point of this plugin: it is hostile on purpose.
use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use provtarget_abi::{export_plugin, Config, Context, Error, Resolver, Settings};

pub struct Crasher {
    config: Mutex<Config>,
}

impl Crasher {
    fn get(&self, key: &str, default: &str) -> String {
        let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        config.get_or(key, default).to_string()
    }

    /// Does what `behaviour` says; returns only for `ok`, `stdout-garbage` and
    /// `panic` (which unwinds).
    fn act(&self, behaviour: &str, call: &str) {
        let once = self.get("crasher.once_file", "");
        if !once.is_empty() && behaviour != "ok" {
            if std::path::Path::new(&once).exists() {
                return;
            }
            let _ = std::fs::write(&once, call);
        }
        match behaviour {
            "null-write" => {
                let p: *mut u64 = std::ptr::null_mut();
                // SAFETY: none; crashing is the point.
                unsafe { std::ptr::write_volatile(p, 42) };
            }
            // SAFETY (both): ends the process, which is what this plugin is for.
            "abort" => unsafe { libc::abort() },
            "exit0" => unsafe { libc::exit(0) },
            "exit3" => unsafe { libc::exit(3) },
            "spin" => {
                static SPINS: AtomicU64 = AtomicU64::new(0);
                loop {
                    SPINS.fetch_add(1, Ordering::Relaxed);
                    std::hint::spin_loop();
                }
            }
            "stdout-garbage" => {
                let junk =
                    b"\x00\xff{\"not\":\"protocol\"}\nPROVTARGET garbage from the Crasher plugin\n";
                let _ = std::io::stdout().write_all(junk);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(junk);
            }
            "panic" => panic!("Crasher was told to panic in {call}"),
            "stderr-flood" => {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..64 {
                    if std::io::stderr().write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = std::io::stderr().write_all(b"\n");
            }
            "socket-flood" => {
                use std::os::unix::fs::FileTypeExt;
                let chunk = vec![b'x'; 1 << 20];
                let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                for fd in fds {
                    let is_socket = std::fs::metadata(format!("/proc/self/fd/{fd}"))
                        .is_ok_and(|m| m.file_type().is_socket());
                    if !is_socket {
                        continue;
                    }
                    'chunks: for _ in 0..64 {
                        let mut sent = 0;
                        while sent < chunk.len() {
                            // SAFETY: writes from a live buffer of that length to a
                            // descriptor this process holds; flooding it is the point.
                            let n = unsafe {
                                libc::write(fd, chunk[sent..].as_ptr().cast(), chunk.len() - sent)
                            };
                            if n <= 0 {
                                break 'chunks;
                            }
                            sent += n as usize;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl Resolver for Crasher {
    const NAME: &'static str = "Crasher";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget tests";
    const DESCRIPTION: &'static str =
        "crashes, exits or spins as crasher.configure / crasher.targets say";

    fn new() -> Result<Self, Error> {
        Ok(Crasher {
            config: Mutex::new(Config::default()),
        })
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.clone();
        let behaviour = self.get("crasher.configure", "ok");
        ctx.info(format!("Crasher configure: {behaviour}"));
        self.act(&behaviour, "configure");
        Ok(Settings::new().with("crasher.configure", behaviour))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let behaviour = self.get("crasher.targets", "ok");
        ctx.info(format!("Crasher targets: {behaviour}"));
        self.act(&behaviour, "targets");
        Ok(self
            .get("crasher.answer", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }
}

export_plugin!(Crasher);
