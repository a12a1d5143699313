//! Shared helpers: a plugin directory built from real cdylibs, and running the real
//! `provtarget` binary with a liveness guard.
#![allow(dead_code, unused_imports)]

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use provtarget_testsupport::{cdylib, cdylib_file_name, TempDir};

/// Output of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success:\n{self:#?}");
        self
    }
    pub fn failed(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit {code}:\n{self:#?}");
        self
    }
    /// Asserts that stderr contains `needle`, showing stderr if not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
    /// Asserts that stderr does not contain `needle`, showing stderr if it does.
    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr holds {needle:?}:\n{}",
            self.stderr
        );
        self
    }
    /// Asserts that stdout contains `needle`, showing stdout if not.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }
    /// Asserts that stdout does not contain `needle`, showing stdout if it does.
    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout holds {needle:?}:\n{}",
            self.stdout
        );
        self
    }
    /// Asserts that the run failed at its deadline and the resolver honoured the
    /// cancellation: `context deadline exceeded`, and the host neither reports that the
    /// resolver ignored cancellation nor abandoned it.
    #[track_caller]
    pub fn deadline_honoured(&self) -> &Self {
        self.failed(1)
            .stderr_has("context deadline exceeded")
            .stderr_lacks("ignored cancellation")
            .stderr_lacks("abandoned")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `provtarget args...` with a clean environment and, for `buildinfo` and
/// `targets` without `--config`, an empty configuration (so the machine's
/// `/etc/choria/server.conf` cannot leak in), killing it (and failing) if it is still
/// running after a generous liveness limit.
pub fn provtarget(args: &[&str]) -> Run {
    provtarget_env::<&str>(args, &[])
}

/// Like [`provtarget`] with extra environment variables.
pub fn provtarget_env<V: AsRef<std::ffi::OsStr>>(args: &[&str], env: &[(&str, V)]) -> Run {
    let mut cmd = Command::new(provtarget_testsupport::provtarget_bin());
    let hosted = matches!(args.first(), Some(&"buildinfo") | Some(&"targets"));
    let mut args: Vec<&str> = args.to_vec();
    if hosted && !args.contains(&"--config") && !args.contains(&"--help") {
        args.splice(1..1, ["--config", "/dev/null"]);
    }
    cmd.args(&args);
    run_to_end(cmd, &args, env)
}

/// Like [`provtarget_env`] but under `ulimit -v limit_kib` (address space, KiB), and
/// with `args` passed as given (no `--config` added).
pub fn provtarget_limited(args: &[&str], env: &[(&str, &str)], limit_kib: u64) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(provtarget_testsupport::provtarget_bin())
        .args(args);
    run_to_end(cmd, args, env)
}

/// The environment variable every provtarget run of the tests carries, its value the
/// run's arguments (see [`processes_tagged`]).
pub const RUN_TAG: &str = "TEST_PROVTARGET_RUN";

/// The live processes (pid, tag value) whose environment has [`RUN_TAG`] with a value
/// containing `needle`: a run's host and every child it started, however started
/// (children inherit the environment). A zombie has no environment left and is not
/// listed.
pub fn processes_tagged(needle: &str) -> Vec<(u32, String)> {
    let prefix = format!("{RUN_TAG}=");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        for var in environ.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(value) = var.strip_prefix(&prefix) {
                if value.contains(needle) {
                    found.push((pid, value.to_string()));
                }
            }
        }
    }
    found
}

/// Waits (up to 5 s) until no live process of a run whose tag contains `needle` is
/// left ([`processes_tagged`]), and fails naming those that are. Children are killed
/// by their host before it exits, or end within ~100 ms of it (they watch their
/// parent and their socket).
pub fn assert_no_processes_tagged(needle: &str) {
    let started = std::time::Instant::now();
    loop {
        let left = processes_tagged(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "child processes outlived their host: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `cmd` (provtarget `args`, for messages) with a clean environment plus `env`,
/// killing it (and failing) if it is still running after a generous liveness limit.
fn run_to_end<V: AsRef<std::ffi::OsStr>>(
    mut cmd: Command,
    args: &[&str],
    env: &[(&str, V)],
) -> Run {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{} [run {}-{run}]", args.join(" "), std::process::id());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The verdict cache of this test process, not the machine's
        // /var/cache/provtarget (a test may still set its own).
        .env("PROVTARGET_CACHE_DIR", test_cache_dir())
        // Inherited by every child of crash isolation (exec'd or forked), whatever its
        // command line: how a test finds the processes a run left behind. Unique per
        // run (tests run side by side, some with the same arguments).
        .env(RUN_TAG, &tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("cannot start provtarget");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Liveness guard only (not a performance assertion): a hung host fails the test
    // instead of hanging the suite.
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("provtarget {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the run did, no process of it outlives it (crash isolation's children
    // end with their host): checked after every run of the binary.
    assert_no_processes_tagged(&tag);
    Run {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A verdict-cache directory for this test process (mode 0755 under the target
/// directory, so the loader's trust rule accepts it).
pub fn test_cache_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = provtarget_testsupport::target_dir()
            .join("test-tmp")
            .join(format!("verdict-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the test cache directory");
        provtarget_testsupport::set_mode(&dir, 0o755);
        dir
    })
}

/// The arguments `COMMAND --plugin-dir DIR [--set S]... EXTRA...`.
pub fn plugin_args<'a, S: AsRef<str>>(
    command: &'a str,
    dir: &'a str,
    sets: &'a [S],
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![command, "--plugin-dir", dir];
    for s in sets {
        args.push("--set");
        args.push(s.as_ref());
    }
    args.extend_from_slice(extra);
    args
}

/// Runs `provtarget COMMAND --plugin-dir DIR [--set S]... EXTRA...`.
pub fn run_in<S: AsRef<str>>(command: &str, dir: &TempDir, sets: &[S], extra: &[&str]) -> Run {
    let d = path_str(dir.path());
    provtarget(&plugin_args(command, &d, sets, extra))
}

/// Runs `provtarget targets --plugin-dir DIR [--set S]... EXTRA...`.
pub fn targets_in<S: AsRef<str>>(dir: &TempDir, sets: &[S], extra: &[&str]) -> Run {
    run_in("targets", dir, sets, extra)
}

/// A plugin directory holding copies of the given workspace cdylibs.
pub fn plugin_dir(label: &str, packages: &[&str]) -> TempDir {
    let dir = TempDir::new(label);
    for p in packages {
        dir.copy_in(&cdylib(p), &cdylib_file_name(p));
    }
    dir
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A JWT with the given JSON claims (unsigned: the default resolver does not verify).
pub fn jwt(claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims.to_string()),
        b64.encode(b"not-a-real-signature")
    )
}

pub fn write_file(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    dir.write(name, body)
}

/// Collects a pipe in the background, readable while the process runs.
pub fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Waits (liveness limit 60 s) until `text` holds `needle`.
pub fn wait_for(text: &Arc<Mutex<String>>, needle: &str, child: &mut Child) {
    let started = Instant::now();
    while !text.lock().unwrap().contains(needle) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "provtarget ended ({status}) before printing {needle:?}:\n{}",
                text.lock().unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {needle:?} after 60 s:\n{}",
            text.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
