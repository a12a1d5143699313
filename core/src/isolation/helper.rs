//! The helper executable ([`Helper`]) that children are started from, and the
//! resolver children it keeps started ahead of need.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use super::command::{is_host_config_var, scrub_env};
use super::resolver_child::Spare;

/// The executable run as a child (it must be a `provtarget` binary of the same build,
/// or a program that calls [`child_main`](crate::plumbing::child_main) for the hidden
/// subcommands), with the resolver children started ahead of need
/// ([`Helper::prestart`]). Clones share those children; they end when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Helper {
    path: PathBuf,
    spares: Arc<Mutex<Vec<Waiting>>>,
}

/// A child started ahead of need: still being started (on a thread of its own, so
/// the caller does not wait for the `exec`), or started.
enum Waiting {
    Starting(std::sync::mpsc::Receiver<Option<Spare>>),
    Started(Spare),
}

impl Waiting {
    /// The started child, waiting for its start to finish if need be; `None` when it
    /// could not be started or has ended since.
    fn settle(self) -> Option<Spare> {
        let mut spare = match self {
            Waiting::Starting(started) => started.recv().ok().flatten()?,
            Waiting::Started(spare) => spare,
        };
        spare.alive().then_some(spare)
    }

    /// Whether it may still serve (a child being started counts).
    fn may_serve(&mut self) -> bool {
        match self {
            Waiting::Starting(_) => true,
            Waiting::Started(spare) => spare.alive(),
        }
    }
}

impl Helper {
    /// The helper executable at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Helper {
        Helper {
            path: path.into(),
            spares: Arc::default(),
        }
    }

    /// This executable, when it is the `provtarget` binary (an embedding program must
    /// name its helper: see the host's `Host::start_with_helper`).
    pub fn this_binary() -> Option<Helper> {
        let exe = std::env::current_exe().ok()?;
        let name = exe.file_name()?.to_str()?;
        (name == "provtarget").then(|| Helper::new(exe))
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts resolver children now, until `count` wait for a library, so that their
    /// start (an `exec` of the helper, the larger part of a child's cost) runs beside
    /// the host's own work (reading its configuration, scanning directories, checking
    /// libraries) instead of after it; each is started on a short-lived thread, so
    /// this returns at once. A waiting child knows nothing yet: it is handed its
    /// sealed copy of a library (`process`) only once that library passed every
    /// check here. Failing to start one is not an error: a child is then started when
    /// needed, as without this.
    pub fn prestart(&self, count: usize) {
        let mut spares = self.lock_spares();
        spares.retain_mut(Waiting::may_serve);
        while spares.len() < count {
            let (tx, rx) = std::sync::mpsc::channel();
            let helper = Helper::new(self.path.clone());
            let spawned = thread::Builder::new()
                .name("start child".into())
                .spawn(move || {
                    let spare = Spare::start(helper.path())
                        .map_err(|e| {
                            tracing::debug!("cannot start a resolver process ahead of need: {e}")
                        })
                        .ok();
                    // Nobody waits any more (discarded): dropping it ends the child.
                    let _ = tx.send(spare);
                });
            if spawned.is_err() {
                break;
            }
            spares.push(Waiting::Starting(rx));
        }
    }

    /// Forks a resolver child from this process now, to wait for a library; for a
    /// program that is this helper (the `provtarget` command), early in `main`, while
    /// it has a single thread: a fork costs far less than starting the helper. Returns
    /// whether it did; without a fork (another thread runs, or it failed) it starts
    /// one the usual way ([`Helper::prestart`]). The copy never returns here: it
    /// serves and exits.
    ///
    /// A copy keeps this process's environment block as it was at `exec` (removing a
    /// variable does not erase it from `/proc/self/environ`), so when a `PROVTARGET_*`
    /// variable names a secret ([`crate::text::is_secret_key`]:
    /// `PROVTARGET_ETCD_PASSWORD`...) no copy is forked: the child is started the
    /// usual way, its environment cut to what it needs.
    pub fn fork_spare(&self) -> bool {
        let secret_in_env = std::env::vars_os().any(|(name, _)| {
            is_host_config_var(&name) && crate::text::is_secret_key(&name.to_string_lossy())
        });
        if secret_in_env {
            self.prestart(1);
            return false;
        }
        match Spare::fork() {
            Ok(spare) => {
                self.lock_spares().push(Waiting::Started(spare));
                true
            }
            Err(_) => {
                self.prestart(1);
                false
            }
        }
    }

    /// How many children wait for a library or are being started for one (without
    /// waiting for those being started).
    pub(super) fn waiting(&self) -> usize {
        let mut spares = self.lock_spares();
        spares.retain_mut(Waiting::may_serve);
        spares.len()
    }

    /// How many started children wait for a library (waiting for those being started).
    pub fn spares(&self) -> usize {
        let mut spares = self.lock_spares();
        let settled: Vec<Waiting> = spares
            .drain(..)
            .filter_map(Waiting::settle)
            .map(Waiting::Started)
            .collect();
        *spares = settled;
        spares.len()
    }

    /// Ends the children that still wait for a library (none is needed any more).
    pub fn discard_spares(&self) {
        self.lock_spares().clear();
    }

    /// A waiting child that is still alive, if any.
    pub(super) fn take_spare(&self) -> Option<Spare> {
        let mut spares = self.lock_spares();
        while let Some(waiting) = spares.pop() {
            if let Some(spare) = waiting.settle() {
                return Some(spare);
            }
        }
        None
    }

    fn lock_spares(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").field("path", &self.path).finish()
    }
}

impl PartialEq for Helper {
    /// The same executable (whatever children each has waiting).
    fn eq(&self, other: &Helper) -> bool {
        self.path == other.path
    }
}

impl Eq for Helper {}

/// The probing child's command: `helper __probe <path>`, stdin and stdout `/dev/null`,
/// stderr piped (re-logged).
pub(super) fn child_command(helper: &Helper, sub: &str, path: &Path) -> Command {
    let mut cmd = Command::new(&helper.path);
    cmd.arg(sub)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    scrub_env(&mut cmd);
    cmd
}
