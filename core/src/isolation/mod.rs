//! Crash isolation: plugin code that crashes, aborts, exits or hangs never takes the
//! host down (`plugin.provtarget.isolation`, see [`Isolation`]).
//!
//! - **Probe** ([`probe`]): every library that passed the checks made from its bytes
//!   is loaded first by a child process (the helper executable, normally `provtarget`
//!   itself, run as `provtarget __probe PATH`), handed the sealed in-memory copy as
//!   descriptor 3; the child runs the remaining checks, `dlopen` and the constructor
//!   and writes one JSON line (verdict and plugin information) on the dedicated pipe
//!   at descriptor 4. Its stdin is `/dev/null`, its stdout `/dev/null` (a plugin's
//!   prints cannot corrupt the protocol), its stderr is re-logged by the host. A
//!   child that dies by a signal, exits without answering or stays silent past the
//!   deadline marks the library refused with that reason.
//! - **Process** ([`process`]): the active resolvers live in child processes
//!   (`provtarget __serve PATH`) for their whole life; `configure` and `targets` are
//!   typed JSON-line requests over a socket after a handshake (magic cookie and
//!   protocol version, see `protocol`), answered by the child's `server`. A
//!   crash, exit or hang (a `exit::ChildExit`) is an error naming the plugin, the
//!   chain moves on, and the next call restarts the child after Choria's backoff.
//! - **None**: plugins run in this process; a plugin that kills it leaves last words
//!   (`provtarget_loader::process::last_words`).
//!
//! Children end with the host: the host kills and reaps them when the resolver is
//! dropped, and each child watches its parent and exits as soon as it is gone (the
//! Linux parent-death signal is not used: it fires when the *thread* that started the
//! child ends, and children are started from short-lived call threads).
#![forbid(unsafe_code)]

mod child;
mod child_init;
mod command;
mod exit;
mod helper;
pub mod probe;
pub mod process;
mod protocol;
mod relay;
mod resolver_child;
mod server;
pub mod wire;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use provtarget_loader::{
    load_with_gated, Gated, Gatekeeper, LibraryRecord, LoadReport, LoaderOptions, PluginFacts,
    Prepared, Verdict, Verifying,
};

pub use child::{child_main, is_child_command};
pub use helper::Helper;

pub use crate::config::Isolation;
use crate::{
    config::{HostConfig, DEFAULT_PROBE_TIMEOUT},
    resolver::TargetResolver,
};

/// A plugin whose resolver runs outside this process, reached through its adapter.
pub struct RemotePlugin {
    /// Its library's index in [`LoadReport::libraries`].
    pub record: usize,
    /// The adapter that reaches it.
    pub resolver: Box<dyn TargetResolver>,
}

/// The chain's plan, handed down by the host: given the accepted plugins' names in
/// scan order, the indices of those the chain would run (what the loader must load).
pub type ChainPlan<'a> = &'a dyn Fn(&[&str]) -> Vec<usize>;

/// Loads plugins as `config` says, under its isolation mode: `none` loads every
/// library here; `probe` loads here only what a child loaded first and survived;
/// `process` loads nothing here, and returns an adapter per library a child
/// approved. Without a helper, isolation cannot be had: plugins load here, with a
/// warning. `chain` is the selection's plan ([`ChainPlan`]).
///
/// With the verdict cache (`plugin.provtarget.cache_dir`) the loader answers for
/// unchanged files without reading them, so no child is started for them; only new
/// or changed files, and the plugins the chain will run, reach the gate. A library
/// the chain will run is always read, sealed, pinned and checked from its bytes
/// first; when the cache already holds its verdict ([`known_verdict`]) it is not
/// loaded in a child to learn it: probe mode loads it here, process mode gives it a
/// resolver whose child starts only when it is configured.
pub fn load(
    config: &HostConfig,
    options: &LoaderOptions,
    helper: Option<&Helper>,
    chain: ChainPlan<'_>,
) -> (LoadReport, Vec<RemotePlugin>) {
    let mode = config.isolation();
    let helper = match (mode, helper) {
        (Isolation::None, _) => return (provtarget_loader::load_with(options, chain), Vec::new()),
        (_, Some(helper)) => helper,
        (_, None) => return (load_without_helper(mode, options, chain), Vec::new()),
    };
    let mut gate = Gate {
        mode,
        helper,
        options,
        deadline: config.probe_timeout().unwrap_or(DEFAULT_PROBE_TIMEOUT),
        chosen: config.resolvers(),
        remote: Vec::new(),
        held: None,
    };
    // The chain's first resolver process starts now, beside the loader's work, unless
    // one already waits (the `provtarget` command forks one at start-up).
    if helper.waiting() == 0 && may_need_resolver_processes(mode, options) {
        helper.prestart(1);
    }
    let report = load_with_gated(options, chain, &mut gate);
    // A child still holding a library nothing approved: killed unloaded.
    drop(gate.held);
    let plugins = approved(&report, gate.remote);
    if mode == Isolation::Process {
        prestart_chain(helper, &report, &plugins, chain);
    }
    let plugins = plugins
        .into_iter()
        .map(|p| RemotePlugin {
            record: p.record,
            resolver: Box::new(p.resolver),
        })
        .collect();
    (report, plugins)
}

/// [`load`] when isolation is asked for but this program names no helper: plugins
/// load here, with a warning (none when no plugin loaded).
fn load_without_helper(
    mode: Isolation,
    options: &LoaderOptions,
    chain: ChainPlan<'_>,
) -> LoadReport {
    let mut report = provtarget_loader::load_with(options, chain);
    if report.plugins.is_empty() {
        // Nothing of a plugin's runs here: nothing to warn about.
        return report;
    }
    let w = format!(
        "plugin.provtarget.isolation = {mode} needs a helper executable, and this \
         program names none; plugins run in this process (name one with \
         Host::start_with_helper)"
    );
    tracing::warn!("{w}");
    report.warnings.push(w);
    report
}

/// The loader's gate under `probe` or `process` isolation: each library that passed
/// the checks made from its bytes is judged by a child (or by its cached verdict);
/// `remote` collects the process mode's adapters.
struct Gate<'a> {
    mode: Isolation,
    helper: &'a Helper,
    options: &'a LoaderOptions,
    deadline: Duration,
    /// The resolvers the configuration names (`plugin.provtarget.resolvers`).
    chosen: &'a [String],
    remote: Vec<(PathBuf, process::ProcessResolver)>,
    /// Process mode: the resolver child holding the library whose signature is being
    /// verified (see [`Gatekeeper::verifying`]).
    held: Option<process::Held>,
}

impl Gatekeeper for Gate<'_> {
    /// The verdict on `prepared`: known from the cache, or from a child.
    fn judge(&mut self, prepared: Prepared) -> Gated {
        let held = self.held.take();
        if let Some((verdict, facts)) = known_verdict(&prepared) {
            return self.known(prepared, verdict, facts);
        }
        match self.mode {
            Isolation::Process => {
                let held = held.filter(|held| held.holds(&prepared));
                self.in_resolver_child(prepared, held)
            }
            _ => match probe::probe(&prepared, self.helper, self.deadline) {
                Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
                Ok((Verdict::Loaded, _)) => Gated::Load(prepared),
                Ok((verdict, facts)) => Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
            },
        }
    }

    /// Process mode: a library the cache has no verdict for goes to a resolver child
    /// now, which checks its sealed copy while the signature is verified here, and
    /// loads it only when [`Gatekeeper::judge`] tells it to.
    fn verifying(&mut self, library: Verifying<'_>) {
        self.held = None;
        if self.mode == Isolation::Process && !library.cached() {
            self.held = process::Held::start(&library, self.helper);
            if self.held.is_some() {
                tracing::debug!(
                    "{} handed to a resolver process while its signature is verified",
                    library.path().display()
                );
            }
        }
    }

    /// The held library was refused: its child ends, unloaded.
    fn withdrawn(&mut self, path: &Path) {
        if let Some(held) = self.held.take() {
            held.withdraw();
            tracing::debug!(
                "the resolver process holding {} ended unloaded",
                path.display()
            );
        }
    }
}

impl Gate<'_> {
    /// A library whose verdict the cache holds: probe mode loads an approved one
    /// here; process mode gives it a resolver whose child starts when configured.
    fn known(&mut self, prepared: Prepared, verdict: Verdict, facts: Option<PluginFacts>) -> Gated {
        let facts_ref = match (self.mode, &verdict, &facts) {
            (Isolation::Probe, Verdict::Loaded, _) => return Gated::Load(prepared),
            (Isolation::Process, Verdict::Loaded, Some(facts)) => facts,
            _ => return Gated::Decided(prepared.decided_elsewhere(verdict, facts)),
        };
        match process::ProcessResolver::new(&prepared, facts_ref, self.helper) {
            Ok(mut resolver) => {
                // Facts from the cache: the first child checks them.
                resolver.described_by_cache(
                    self.options.cache_dir.clone(),
                    self.options.insecure_skip_owner_checks,
                );
                self.remote.push((prepared.record().path.clone(), resolver));
                Gated::Decided(prepared.decided_elsewhere(Verdict::Loaded, facts))
            }
            // Never "loaded" without a resolver: the operator must see why the plugin
            // does not run.
            Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
        }
    }

    /// Process mode: loads `prepared` in a resolver child, which is kept to serve it
    /// when it will likely be used: named in the chain, or the first plugin when none
    /// is named.
    fn in_resolver_child(&mut self, prepared: Prepared, held: Option<process::Held>) -> Gated {
        let first = self.remote.is_empty();
        let chosen = self.chosen;
        let keep = |name: &str| {
            if chosen.is_empty() {
                first
            } else {
                chosen.iter().any(|c| c == name)
            }
        };
        match process::start(&prepared, self.helper, self.deadline, keep, held) {
            Err(refusal) => Gated::Decided(prepared.refuse(refusal)),
            Ok((verdict, facts, resolver)) => {
                if let Some(resolver) = resolver {
                    self.remote.push((prepared.record().path.clone(), resolver));
                }
                Gated::Decided(prepared.decided_elsewhere(verdict, facts))
            }
        }
    }
}

/// The adapters whose library's record says loaded; a duplicate name (the first file
/// wins, as in-process: the loader refused the later record) has its child ended
/// here, when its adapter is dropped.
fn approved(
    report: &LoadReport,
    remote: Vec<(PathBuf, process::ProcessResolver)>,
) -> Vec<Approved> {
    remote
        .into_iter()
        .filter_map(|(path, resolver)| {
            let record = report.libraries.iter().position(|l| l.path == path)?;
            (report.libraries[record].verdict == Verdict::Loaded).then(|| Approved {
                record,
                name: resolver.name_str().to_string(),
                has_child: resolver.has_child(),
                resolver,
            })
        })
        .collect()
}

/// Each of the chain's resolvers with no process yet gets one now, all started side
/// by side rather than one after another as each is configured.
fn prestart_chain(
    helper: &Helper,
    report: &LoadReport,
    plugins: &[Approved],
    chain: ChainPlan<'_>,
) {
    let names: Vec<&str> = report
        .libraries
        .iter()
        .filter(|l| l.verdict == Verdict::Loaded)
        .filter_map(|l| Some(l.plugin.as_ref()?.info.name.as_str()))
        .collect();
    let chain: Vec<&str> = chain(&names)
        .into_iter()
        .filter_map(|i| names.get(i).copied())
        .collect();
    let waiting = plugins
        .iter()
        .filter(|p| !p.has_child && chain.contains(&p.name.as_str()))
        .count();
    helper.prestart(waiting);
}

/// Whether resolver processes may be needed: `process` isolation and a plugin
/// directory that may hold a plugin ([`may_hold_plugins`]); else none is started
/// ahead of need.
pub fn may_need_resolver_processes(mode: Isolation, options: &LoaderOptions) -> bool {
    mode == Isolation::Process && may_hold_plugins(options)
}

/// Whether any plugin directory of `options` may hold a plugin: it exists and lists a
/// library file name. A directory with more entries than are worth listing twice
/// counts as holding one.
pub fn may_hold_plugins(options: &LoaderOptions) -> bool {
    const LOOK_AT: usize = 1_000;
    options.directories.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.take(LOOK_AT + 1).enumerate().any(|(i, e)| {
                i == LOOK_AT
                    || e.is_ok_and(|e| provtarget_loader::is_candidate_name(&e.file_name()))
            })
        })
    })
}

/// A library approved for a resolver process, before it joins the host.
struct Approved {
    record: usize,
    name: String,
    has_child: bool,
    resolver: process::ProcessResolver,
}

/// The verdict on `prepared` when it is already known without loading it: what the
/// verdict cache recorded for this unchanged file (same identity, and the same
/// SHA-256 when both the cache and this run hashed it) under this host's build.
/// `None` for a new or changed file, or without a cache: it must be loaded in a
/// child to be judged.
pub fn known_verdict(prepared: &Prepared) -> Option<(Verdict, Option<PluginFacts>)> {
    let cached = prepared.cached_verdict()?;
    let hashed_now = prepared.record().file.as_ref()?.sha256.as_ref();
    if let (Some(now), Some(then)) = (hashed_now, cached.sha256.as_ref()) {
        if now != then {
            return None;
        }
    }
    let verdict = match &cached.refusal {
        None if cached.plugin.is_some() => Verdict::Loaded,
        None => return None,
        Some(refusal) => Verdict::Rejected(refusal.clone()),
    };
    Some((verdict, cached.plugin.clone()))
}

/// `plugins check`: every check on one file, the code-running ones in a child (the
/// inspector never runs the file's code), which gets `deadline` (default
/// [`DEFAULT_PROBE_TIMEOUT`]).
pub fn check_file(
    path: &Path,
    options: &LoaderOptions,
    helper: &Helper,
    deadline: Option<Duration>,
) -> LibraryRecord {
    let prepared = match provtarget_loader::prepare_file(path, options) {
        Ok(prepared) => prepared,
        Err(record) => return *record,
    };
    match probe::probe(&prepared, helper, deadline.unwrap_or(DEFAULT_PROBE_TIMEOUT)) {
        Ok((verdict, facts)) => prepared.decided_elsewhere(verdict, facts),
        Err(refusal) => prepared.refuse(refusal),
    }
}
