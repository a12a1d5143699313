//! Test support: builds the workspace's real cdylibs and the `provtarget` binary (once
//! per process) and hands out their paths, plus small temp-directory helpers.
//!
//! ```no_run
//! let dc_hint = provtarget_testsupport::cdylib("provtarget-dc-hint");
//! assert!(dc_hint.exists());
//! ```
#![deny(missing_docs)]

pub mod frozen;

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

/// The workspace root (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two levels below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Which cargo profile to build artifacts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev`, output in `target/debug` (tests).
    Debug,
    /// `release`, output in `target/release` (benchmarks).
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Builds every library and binary of the workspace with `profile`, once per process.
/// Panics with cargo's output if the build fails: tests cannot run without it.
pub fn build_workspace(profile: Profile) -> PathBuf {
    static DEBUG: OnceLock<PathBuf> = OnceLock::new();
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    let cell = match profile {
        Profile::Debug => &DEBUG,
        Profile::Release => &RELEASE,
    };
    cell.get_or_init(|| {
        let mut args = vec!["build", "--workspace", "--lib", "--bins", "--quiet"];
        if profile == Profile::Release {
            args.push("--release");
        }
        cargo(&workspace_root(), &args, "the workspace");
        target_dir().join(profile.dir())
    })
    .clone()
}

/// Runs `cargo <args>` in `dir` (the same cargo that runs the tests), panicking with
/// its output if it fails: tests cannot run without what it builds.
fn cargo<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S], what: &str) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        out.status.success(),
        "cargo build of {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The platform file name of a cdylib built from `package`.
pub fn cdylib_file_name(package: &str) -> String {
    let stem = package.replace('-', "_");
    format!(
        "{}{stem}{}",
        env::consts::DLL_PREFIX,
        env::consts::DLL_SUFFIX
    )
}

/// The path of the debug cdylib built from workspace package `package`, building the
/// workspace first if this process has not yet.
pub fn cdylib(package: &str) -> PathBuf {
    cdylib_in(package, Profile::Debug)
}

/// Like [`cdylib`], for a chosen profile.
pub fn cdylib_in(package: &str, profile: Profile) -> PathBuf {
    let path = build_workspace(profile).join(cdylib_file_name(package));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The plugin built against the frozen interface 1.0 contract (`tests/legacy-1.0`, a
/// separate workspace), built once per process into `target/legacy-1.0`.
pub fn legacy_1_0_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| separate_workspace_cdylib("legacy-1.0", "provtarget-test-legacy"))
        .clone()
}

/// The plugin built against the frozen interface 1.1 contract (`tests/legacy-1.1`, a
/// separate workspace: configuration keys, no provenance), built once per process into
/// `target/legacy-1.1`.
pub fn legacy_1_1_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| separate_workspace_cdylib("legacy-1.1", "provtarget-test-legacy-1-1"))
        .clone()
}

/// The plugin built with `panic = "abort"` (`tests/plugins/panic-abort`, a separate
/// workspace, since the main workspace's profiles set `panic = "unwind"`), built once
/// per process into `target/panic-abort`. Loading it must be refused before any of its
/// code runs.
pub fn panic_abort_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            separate_workspace_cdylib("plugins/panic-abort", "provtarget-test-panic-abort")
        })
        .clone()
}

/// Builds the workspace at `tests/<folder>` (debug) into `target/<its last folder
/// name>` and returns the path of `package`'s cdylib.
fn separate_workspace_cdylib(folder: &str, package: &str) -> PathBuf {
    let root = workspace_root().join("tests").join(folder);
    let name = Path::new(folder)
        .file_name()
        .expect("a folder name")
        .to_os_string();
    let target = target_dir().join(name);
    let manifest = root.join("Cargo.toml");
    let args = [
        "build".as_ref(),
        "--quiet".as_ref(),
        "--manifest-path".as_ref(),
        manifest.as_os_str(),
        "--target-dir".as_ref(),
        target.as_os_str(),
    ];
    cargo(&root, &args, &format!("tests/{folder}"));
    let path = target.join("debug").join(cdylib_file_name(package));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The path of the debug `provtarget` binary, building the workspace first if needed.
pub fn provtarget_bin() -> PathBuf {
    let path =
        build_workspace(Profile::Debug).join(format!("provtarget{}", env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A fresh, empty directory under the target directory, removed on drop. Kept under
/// `target/` (owned by the invoking user, mode 0755) so the loader's trust checks on
/// the directory pass, unlike a world-writable `/tmp`.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory with mode 0755.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = target_dir()
            .join("test-tmp")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create test directory");
        set_mode(&path, 0o755);
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `src` into the directory as `name` (mode 0644) and returns the new path.
    pub fn copy_in(&self, src: &Path, name: &str) -> PathBuf {
        let dest = self.path.join(name);
        std::fs::copy(src, &dest).expect("cannot copy into test directory");
        set_mode(&dest, 0o644);
        dest
    }

    /// Makes a FIFO (named pipe) `name` with no writer, and returns its path.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        mkfifo(&path);
        path
    }

    /// Writes `contents` to `name` (mode 0644) and returns the path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let dest = self.path.join(name);
        std::fs::write(&dest, contents).expect("cannot write into test directory");
        set_mode(&dest, 0o644);
        dest
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Makes a FIFO (named pipe) at `path` with `mkfifo` (coreutils), failing the test if
/// it cannot.
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils) is needed");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Sets a file's permission bits (Unix).
pub fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .expect("cannot set permissions");
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
/// Servers started by tests bind 127.0.0.1 only.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// The path of an external program a test needs (`etcd`, `dnsmasq`, ...), searched in
/// `PATH` and the sbin directories. `None` when it is not installed: under `CI` (set by
/// `.ci/run`'s environment) that is a failure, never a silent pass — use
/// [`require_tool`].
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The path of `name`, or `None` with a loud note on stderr when it is missing
/// outside CI (the caller returns early). Under `CI` a missing tool panics: `.ci/run`
/// installs every package the tests need, so a missing one is a broken run.
pub fn require_tool(name: &str, debian_package: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(p) => Some(p),
        None if env::var_os("CI").is_some() => panic!(
            "{name} is not installed but CI is set: .ci/run must `apt-get install -y {debian_package}`"
        ),
        None => {
            eprintln!(
                "SKIPPED: {name} is not installed (apt-get install -y {debian_package}); \
                 this test fails instead under CI"
            );
            None
        }
    }
}

/// A server process started by a test: killed (SIGKILL, by process id) and reaped on
/// drop, so no test leaves a server behind.
pub struct ServerProcess {
    child: std::process::Child,
    what: String,
}

impl ServerProcess {
    /// Starts `command` (stdout and stderr go to `log` if given, else are discarded).
    pub fn spawn(what: &str, mut command: Command, log: Option<&Path>) -> ServerProcess {
        use std::process::Stdio;
        let (out, err) = match log {
            Some(path) => {
                let f = std::fs::File::create(path).expect("cannot create server log");
                let f2 = f.try_clone().expect("cannot clone server log handle");
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ServerProcess {
            child,
            what: what.to_string(),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and if so, reaps it).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills it now (SIGKILL by pid) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What was started, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, up to `limit`.
/// Panics, naming `what`, if nothing does: the test cannot run without its server.
pub fn wait_for_tcp(what: &str, port: u16, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            std::time::Duration::from_millis(200),
        )
        .is_ok()
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what} did not accept connections on 127.0.0.1:{port} within {limit:?}");
}
