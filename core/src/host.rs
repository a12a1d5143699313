//! The host: loads plugins, picks the active resolver chain, configures it once, and
//! resolves provisioning targets off the async runtime with cancellation and deadlines.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use provtarget_abi::host::{PluginInfo, PluginResolver};
use provtarget_loader::{
    process::last_words::{self, Call},
    LoadReport,
};

use crate::{
    config::{ConfigWarning, HostConfig},
    default_resolver::{BuildDefaults, JwtResolver},
    resolver::{CancelToken, RawTargets, ResolveContext, ResolverError, Settings, TargetResolver},
    selection::{self, Member},
    servers::{self, AnswerError, Server},
};

/// How long a resolver gets to return after it has been cancelled before the host
/// abandons its thread.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long `configure` may take when no `plugin.provtarget.timeout` is set.
pub const DEFAULT_CONFIGURE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) use crate::resolver::config_pairs;

/// A start-up warning of the host, by where it comes from. `Display` (and
/// `Deref<Target = str>`) give its one line, as logged and shown by `buildinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostWarning {
    /// From the loader (directories, trust, signatures), as it logged it.
    Loader(String),
    /// From the configuration: its key and source are fields of the value.
    Config(ConfigWarning),
    /// From the chain plan (duplicates, names not loaded, a chain without deadline).
    Selection(String),
    /// From configuring the chain (the fallback to the built-in resolver).
    Chain(String),
}

impl HostWarning {
    /// The one line.
    pub fn as_str(&self) -> &str {
        match self {
            HostWarning::Loader(t) | HostWarning::Selection(t) | HostWarning::Chain(t) => t,
            HostWarning::Config(w) => w.as_str(),
        }
    }
}

impl fmt::Display for HostWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for HostWarning {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// A loaded plugin seen through the native [`TargetResolver`] trait.
pub struct PluginAdapter {
    info: PluginInfo,
    /// `None` only while being dropped.
    resolver: Option<PluginResolver>,
}

impl PluginAdapter {
    /// Wraps a plugin's resolver and self-description.
    pub fn new(info: PluginInfo, resolver: PluginResolver) -> PluginAdapter {
        PluginAdapter {
            info,
            resolver: Some(resolver),
        }
    }

    fn resolver(&self) -> &PluginResolver {
        self.resolver
            .as_ref()
            .expect("the resolver is taken only when the adapter is dropped")
    }
}

impl Drop for PluginAdapter {
    fn drop(&mut self) {
        // The plugin's own drop code runs here: a crash in it leaves last words.
        let _guard = last_words::enter(&self.info.name, Call::Drop);
        drop(self.resolver.take());
    }
}

impl TargetResolver for PluginAdapter {
    fn name(&self) -> String {
        self.info.name.clone()
    }
    fn version(&self) -> String {
        self.info.version.clone()
    }
    fn configure(
        &mut self,
        ctx: &ResolveContext,
        config: &provtarget_abi::Config,
    ) -> Result<Settings, ResolverError> {
        let pairs = config_pairs(config);
        let _guard = last_words::enter(&self.info.name, Call::Configure);
        let resolver = self
            .resolver
            .as_mut()
            .expect("the resolver is taken only when the adapter is dropped");
        resolver.configure(ctx, &pairs).map_err(ResolverError::from)
    }
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, ResolverError> {
        let _guard = last_words::enter(&self.info.name, Call::Targets);
        self.resolver()
            .targets(ctx)
            .map(RawTargets::from)
            .map_err(ResolverError::from)
    }
}

pub use crate::isolation::RemotePlugin;

/// One selectable plugin: loaded here, or reached through an isolation adapter.
/// (Short-lived, a handful at a time: the size difference does not matter.)
#[allow(clippy::large_enum_variant)]
enum Candidate {
    Local(provtarget_loader::LoadedPlugin),
    Remote(RemotePlugin),
}

impl Candidate {
    fn record(&self) -> usize {
        match self {
            Candidate::Local(p) => p.record,
            Candidate::Remote(p) => p.record,
        }
    }
    fn into_resolver(self) -> Box<dyn TargetResolver> {
        match self {
            Candidate::Local(p) => Box::new(PluginAdapter::new(p.info, p.resolver)),
            Candidate::Remote(p) => p.resolver,
        }
    }
}

/// Where an active resolver comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the host.
    BuiltIn,
    /// A plugin library.
    Plugin(PathBuf),
}

/// One resolver of the active chain, configured.
#[derive(Clone)]
pub struct ActiveResolver {
    /// Display name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Built in or from which library.
    pub origin: Origin,
    /// Provisioning settings it reported from `configure`.
    pub settings: Settings,
    resolver: Arc<dyn TargetResolver>,
    /// Set while a `targets` call of this resolver is still running, including one
    /// abandoned after ignoring cancellation: no second thread is started beside it.
    busy: Arc<AtomicBool>,
}

impl fmt::Debug for ActiveResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveResolver")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A resolver taken out of the chain at start-up, and why.
#[derive(Debug, Clone)]
pub struct DisabledResolver {
    /// Its name.
    pub name: String,
    /// Why it is not in the chain (one line).
    pub reason: String,
}

/// One member of the chain as configured, in chain order: active (an index into the
/// chain) or taken out before it ran (and why).
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    /// `Ok(i)`: `chain[i]`; `Err(reason)`: disabled before it ran.
    slot: Result<usize, String>,
}

/// What happened to one member of the chain in a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// It gave the servers.
    Answered,
    /// It ran and gave none (error, no servers, deadline, cancellation).
    Failed,
    /// It was taken out before it ran: not loaded, or its `configure` failed.
    Disabled,
    /// It was not reached: an earlier member answered, or the run was cancelled.
    NotRun,
}

impl ChainState {
    /// `answered`, `failed`, `disabled` or `not-run` (the JSON names).
    pub fn as_str(self) -> &'static str {
        match self {
            ChainState::Answered => "answered",
            ChainState::Failed => "failed",
            ChainState::Disabled => "disabled",
            ChainState::NotRun => "not-run",
        }
    }
}

/// One member of the chain in a resolution's result, in chain order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The resolver's name.
    pub resolver: String,
    /// What happened to it.
    pub state: ChainState,
    /// Why, as printed (one line, masked and escaped): the failure, why it was
    /// disabled, or why it was not run; `None` when it answered.
    pub reason: Option<String>,
}

impl fmt::Display for ChainEntry {
    /// `NAME: answered`, `NAME: failed: WHY`, ... (escaped, one line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::text::printable(&self.resolver),
            self.state.as_str()
        )?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

/// The running host.
pub struct Host {
    config: HostConfig,
    report: LoadReport,
    chain: Vec<ActiveResolver>,
    disabled: Vec<DisabledResolver>,
    /// Every member of the chain as configured, in order, active or not.
    planned: Vec<Planned>,
    warnings: Vec<HostWarning>,
    /// Names in `plugin.provtarget.resolvers` that matched no loaded plugin.
    not_loaded: Vec<String>,
    /// `; N libraries were refused: ...` (the first three reasons), or empty.
    refused: String,
}

/// A successful resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The resolver that produced the servers.
    pub resolver: String,
    /// The servers, validated and normalized.
    pub servers: Vec<Server>,
    /// Earlier resolvers of the chain that failed, and why.
    pub failed: Vec<Failure>,
    /// Every member of the chain, in order, and what happened to it.
    pub chain: Vec<ChainEntry>,
    /// The broker check of every answer of the chain, in order (empty when
    /// `plugin.provtarget.broker_check` is off).
    pub brokers: Vec<crate::broker_check::BrokerResult>,
    /// Everything the resolver said besides its targets (interface 1.2 on: its
    /// provenance), each text one line, escaped and bounded
    /// ([`crate::resolver::answer_shown`]); fields its interface cannot give are `None`.
    pub answer: provtarget_abi::host::Answer,
}

/// Why one resolver of the chain gave no servers. `Display` gives Choria's texts,
/// with plugin text escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No resolver is active at all.
    NoResolver,
    /// The caller cancelled the resolution (Ctrl-C, SIGTERM).
    Cancelled {
        /// The resolver that was running.
        resolver: String,
        /// What it last reported once cancelled (e.g. the SDK retry's last failure).
        last_error: Option<String>,
    },
    /// The resolver missed `plugin.provtarget.timeout`.
    DeadlineExceeded {
        /// The resolver.
        resolver: String,
        /// What it last reported, if it said anything before or after being
        /// cancelled (e.g. the SDK retry's last failure).
        last_error: Option<String>,
    },
    /// It returned an empty list.
    NoServers {
        /// The resolver.
        resolver: String,
    },
    /// It returned an error, or servers the host cannot parse.
    Failed {
        /// The resolver.
        resolver: String,
        /// The error, one line.
        error: String,
    },
}

impl Failure {
    /// The resolver concerned (`None` for [`Failure::NoResolver`]).
    pub fn resolver(&self) -> Option<&str> {
        match self {
            Failure::NoResolver => None,
            Failure::Cancelled { resolver, .. }
            | Failure::DeadlineExceeded { resolver, .. }
            | Failure::NoServers { resolver }
            | Failure::Failed { resolver, .. } => Some(resolver),
        }
    }
}

impl fmt::Display for Failure {
    /// Choria's text, one line: credentials masked and control characters escaped
    /// ([`shown`](crate::text::shown)). The same text is printed, logged and carried
    /// in JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = crate::text::shown;
        let could_not = |f: &mut fmt::Formatter<'_>, resolver: &str, why: &str| {
            write!(
                f,
                "could not determine provisioning servers using {} provisioning target plugin: {}",
                show(resolver),
                show(why)
            )
        };
        match self {
            Failure::NoResolver => f.write_str(servers::NO_RESOLVER),
            Failure::Cancelled {
                resolver,
                last_error,
            } => could_not(
                f,
                resolver,
                &with_last_error("context canceled", last_error),
            ),
            Failure::DeadlineExceeded {
                resolver,
                last_error,
            } => could_not(
                f,
                resolver,
                &with_last_error("context deadline exceeded", last_error),
            ),
            Failure::NoServers { resolver } => write!(
                f,
                "provisioning target plugin {} returned no servers",
                show(resolver)
            ),
            Failure::Failed { resolver, error } => could_not(f, resolver, error),
        }
    }
}

/// `what` (`context canceled`, `context deadline exceeded`) with the resolver's last
/// error. The SDK's retry reports `context canceled after N tries; last error: X`
/// when cancelled; that is folded into one clause (`context deadline exceeded after
/// N tries; last error: X`) rather than nested in a second "last error".
fn with_last_error(what: &str, last_error: &Option<String>) -> String {
    let Some(e) = last_error else {
        return what.to_string();
    };
    let e = e.trim();
    if let Some(rest) = e.strip_prefix("context canceled after ") {
        // `N tries; last error: X` (or `1 try; ...`)
        if rest.contains(" tr") && rest.contains("; last error: ") {
            return format!("{what} after {rest}");
        }
    }
    format!("{what} (last error: {e})")
}

/// A failed resolution: why the last resolver gave nothing, plus every resolver
/// tried. `Display` is the last failure in Choria's words.
#[derive(Debug, Clone)]
pub struct ResolveError {
    /// The failure that ended the resolution.
    pub failure: Failure,
    /// Every resolver tried, in order, with its failure (the last is `failure`).
    pub failed: Vec<Failure>,
    /// What else the operator should know to understand the failure (one line,
    /// escaped): resolvers named in `plugin.provtarget.resolvers` that are not
    /// loaded, so the chain ran without them, and resolvers chosen that could not
    /// start (their `configure` failed), with why.
    pub note: Option<String>,
    /// Every member of the chain, in order, and what happened to it.
    pub chain: Vec<ChainEntry>,
    /// The broker check of every answer of the chain, in order (empty when
    /// `plugin.provtarget.broker_check` is off).
    pub brokers: Vec<crate::broker_check::BrokerResult>,
}

impl fmt::Display for ResolveError {
    /// The last failure in Choria's words, then `; note: ...` when there is a note.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failure.fmt(f)?;
        if let Some(note) = &self.note {
            write!(f, "; note: {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}

pub use crate::selection::{chain_plugins, load_for_chain};

impl Host {
    /// Loads plugins as `config` says, selects and configures the resolver chain.
    /// Never fails: problems become warnings, refused libraries and disabled
    /// resolvers, all visible in `buildinfo`.
    ///
    /// Plugin code runs as `plugin.provtarget.isolation` says, with this executable
    /// as the helper when it is the `provtarget` binary; an embedding program names
    /// its helper with [`Host::start_with_helper`] (without one, plugins load in this
    /// process, with a warning).
    pub fn start(config: HostConfig) -> Host {
        Host::start_isolated(config, None, crate::isolation::Helper::this_binary())
    }

    /// Like [`Host::start`], with `helper` (a `provtarget` binary of the same build)
    /// as the child process for isolation.
    pub fn start_with_helper(config: HostConfig, helper: PathBuf) -> Host {
        Host::start_isolated(config, None, Some(crate::isolation::Helper::new(helper)))
    }

    /// Loads with `options` (default: the configuration's) under the configured
    /// isolation, then starts.
    pub fn start_isolated(
        config: HostConfig,
        options: Option<provtarget_loader::LoaderOptions>,
        helper: Option<crate::isolation::Helper>,
    ) -> Host {
        let options = options.unwrap_or_else(|| config.loader_options());
        let chain = |names: &[&str]| chain_plugins(&config, names);
        let (report, remote) = crate::isolation::load(&config, &options, helper.as_ref(), &chain);
        // A library copied and hashed early that no file took is not kept.
        provtarget_loader::process::early::discard();
        let host = Host::start_with_remote(config, report, remote);
        if let Some(helper) = helper {
            // Every chain member is configured: a resolver process started ahead of
            // need and still waiting is not needed.
            helper.discard_spares();
        }
        host
    }

    /// Like [`Host::start`] with an already-made load report (from
    /// [`provtarget_loader::load_all`], or [`load_for_chain`] with the same
    /// configuration: a plugin the chain needs that the report only knows from the
    /// verdict cache, unloaded, is left out of the chain).
    pub fn start_with(config: HostConfig, report: LoadReport) -> Host {
        Host::start_with_remote(config, report, Vec::new())
    }

    /// Like [`Host::start_with`], plus plugins whose resolvers run outside this
    /// process.
    pub fn start_with_remote(
        config: HostConfig,
        mut report: LoadReport,
        remote: Vec<RemotePlugin>,
    ) -> Host {
        let mut config = config;
        let (mut warnings, already_logged) = start_warnings(&mut config, &report);
        let (candidates, not_loaded) = candidates(&config, &mut report, remote, &mut warnings);
        let (chain, planned, disabled) = configure_chain(candidates, &config, &mut warnings);
        for w in &warnings[already_logged..] {
            tracing::warn!("{w}");
        }
        let refused = refused_summary(&report);
        let planned = with_not_loaded(config.resolvers(), planned, &not_loaded, &refused);
        let refused = crate::text::shown(&refused);
        Host {
            config,
            report,
            chain,
            disabled,
            planned,
            warnings,
            not_loaded,
            refused,
        }
    }

    /// The merged configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Every library found and its verdict.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The active chain, in order (usually one resolver).
    pub fn chain(&self) -> &[ActiveResolver] {
        &self.chain
    }

    /// Resolvers removed from the chain at start-up.
    pub fn disabled(&self) -> &[DisabledResolver] {
        &self.disabled
    }

    /// Start-up warnings (configuration, loader, selection).
    pub fn warnings(&self) -> &[HostWarning] {
        &self.warnings
    }

    /// The active resolver's `(name, version)`: the first of the chain, or Choria's
    /// `Unknown` when there is none.
    pub fn resolver_name(&self) -> (String, String) {
        match self.chain.first() {
            Some(r) => (r.name.clone(), r.version.clone()),
            None => ("Unknown".into(), String::new()),
        }
    }

    /// Resolves provisioning servers: each resolver of the chain in turn runs on its
    /// own thread, with `plugin.provtarget.timeout` as its deadline; the next is tried
    /// when one fails, returns nothing or misses its deadline. `cancel` stops the whole
    /// resolution (e.g. on Ctrl-C).
    pub async fn resolve(&self, cancel: &CancelToken) -> Result<Resolution, ResolveError> {
        let deadline = self.config.timeout();
        let mut failed: Vec<Failure> = Vec::new();
        // What happened to each member of `self.chain` that ran.
        let mut outcomes: Vec<Option<Failure>> = Vec::new();
        let mut brokers = Vec::new();
        for (i, active) in self.chain.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            let failure = match self.ask(active, cancel, deadline, &mut brokers).await {
                Ok((servers, answer)) => {
                    outcomes.push(None);
                    return Ok(Resolution {
                        resolver: active.name.clone(),
                        servers,
                        failed,
                        chain: self.chain_result(&outcomes, false),
                        brokers,
                        answer,
                    });
                }
                Err(failure) => failure,
            };
            if let Some(next) = self.chain.get(i + 1) {
                if !cancel.is_cancelled() {
                    tracing::warn!(
                        plugin = active.name.as_str(),
                        "{failure}; trying {}",
                        crate::text::printable(&next.name)
                    );
                }
            }
            outcomes.push(Some(failure.clone()));
            failed.push(failure);
        }
        let failure = self.final_failure(&failed, cancel);
        if matches!(failure, Failure::Cancelled { .. })
            && matches!(failed.last(), Some(Failure::Failed { .. }))
        {
            // Told as the cancellation it was, with the error as its last error.
            failed.pop();
            if let Some(Some(last)) = outcomes.last_mut() {
                *last = failure.clone();
            }
        }
        if failed.last() != Some(&failure) && failure != Failure::NoResolver {
            failed.push(failure.clone());
        }
        Err(ResolveError {
            chain: self.chain_result(&outcomes, cancel.is_cancelled()),
            failure,
            failed,
            note: self.failure_note(),
            brokers,
        })
    }

    /// One member of the chain: its `targets`, the answer read, the broker check; the
    /// servers and the answer record as shown, or why it failed.
    async fn ask(
        &self,
        active: &ActiveResolver,
        cancel: &CancelToken,
        deadline: Option<Duration>,
        brokers: &mut Vec<crate::broker_check::BrokerResult>,
    ) -> Result<(Vec<Server>, provtarget_abi::host::Answer), Failure> {
        let list = run_targets(active, cancel, deadline)
            .await
            .map_err(|e| e.into_failure(&active.name))?;
        let servers = match servers::read_answer(&list) {
            Ok(servers) => servers,
            Err(AnswerError::Empty) => {
                return Err(Failure::NoServers {
                    resolver: active.name.clone(),
                })
            }
            Err(AnswerError::Invalid(error)) => {
                return Err(Failure::Failed {
                    resolver: active.name.clone(),
                    error,
                })
            }
        };
        let servers = self
            .check_brokers(&active.name, servers, cancel, brokers)
            .await?;
        Ok((servers, answer_logged(&active.name, &list)))
    }

    /// Why the chain gave no answer, from what each member did (`failed`).
    fn final_failure(&self, failed: &[Failure], cancel: &CancelToken) -> Failure {
        if self.chain.is_empty() {
            Failure::NoResolver
        } else if cancel.is_cancelled() {
            // Cancelled by the caller: that, not an earlier resolver's failure, is why
            // there is no answer.
            match failed.last() {
                Some(f @ Failure::Cancelled { .. }) => f.clone(),
                // The resolver ended with an error as the signal arrived (its process
                // was stopped with the group, say): that is its last error.
                // A bare "context canceled" adds nothing.
                Some(Failure::Failed { resolver, error }) => Failure::Cancelled {
                    resolver: resolver.clone(),
                    last_error: (error.trim() != "context canceled").then(|| error.clone()),
                },
                last => Failure::Cancelled {
                    resolver: last
                        .and_then(Failure::resolver)
                        .unwrap_or(&self.chain[0].name)
                        .to_string(),
                    last_error: None,
                },
            }
        } else {
            failed.last().cloned().unwrap_or(Failure::NoResolver)
        }
    }

    /// What the final failure line adds: the resolvers named but not loaded, and the
    /// chosen resolvers that could not start, with why.
    fn failure_note(&self) -> Option<String> {
        let mut notes = Vec::new();
        if !self.not_loaded.is_empty() {
            let names: Vec<String> = self
                .not_loaded
                .iter()
                .map(|n| format!("\"{}\"", crate::text::shown(n)))
                .collect();
            notes.push(format!(
                "resolver {} named in plugin.provtarget.resolvers (or --resolver) {} not loaded, so the chain ran without {}{}; see `provtarget buildinfo`",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" },
                if names.len() == 1 { "it" } else { "them" },
                self.refused,
            ));
        }
        // A chosen resolver that could not start is named in the final line, with why:
        // otherwise the line names only the resolver that stood in for it.
        for d in &self.disabled {
            notes.push(format!(
                "resolver \"{}\" could not start, so the chain ran without it: {}",
                crate::text::shown(&d.name),
                crate::text::shown(&d.reason)
            ));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// The broker check (`plugin.provtarget.broker_check`) of one resolver's answer:
    /// the servers to answer, or why the resolver failed. Its results are added to
    /// `brokers`.
    async fn check_brokers(
        &self,
        resolver: &str,
        servers: Vec<Server>,
        cancel: &CancelToken,
        brokers: &mut Vec<crate::broker_check::BrokerResult>,
    ) -> Result<Vec<Server>, Failure> {
        let settings = self.config.broker_check();
        if settings.mode == crate::broker_check::Mode::Off {
            return Ok(servers);
        }
        let Some(results) = crate::broker_check::check(resolver, &servers, settings, cancel).await
        else {
            return Err(Failure::Cancelled {
                resolver: resolver.to_string(),
                last_error: None,
            });
        };
        let verdict = crate::broker_check::verdict(settings.mode, resolver, servers, &results);
        brokers.extend(results);
        verdict.map_err(|e| Failure::Failed {
            resolver: resolver.to_string(),
            error: e.to_string(),
        })
    }

    /// Every member of the chain as configured, in order, with what happened to it,
    /// given the outcomes of the active members that ran (`None`: it answered).
    fn chain_result(&self, outcomes: &[Option<Failure>], cancelled: bool) -> Vec<ChainEntry> {
        let answered = outcomes.iter().any(Option::is_none);
        self.planned
            .iter()
            .map(|p| {
                let (state, reason) = match &p.slot {
                    Err(why) => (ChainState::Disabled, Some(crate::text::shown(why))),
                    Ok(i) => match outcomes.get(*i) {
                        Some(None) => (ChainState::Answered, None),
                        Some(Some(failure)) => (ChainState::Failed, Some(failure.to_string())),
                        None if answered => (
                            ChainState::NotRun,
                            Some("an earlier resolver answered".to_string()),
                        ),
                        None if cancelled => (
                            ChainState::NotRun,
                            Some("the resolution was cancelled".to_string()),
                        ),
                        None => (ChainState::NotRun, None),
                    },
                };
                ChainEntry {
                    resolver: p.name.clone(),
                    state,
                    reason,
                }
            })
            .collect()
    }
}

/// The configured chain `planned` (active and disabled members in plan order) with
/// the names of `wanted` (`plugin.provtarget.resolvers`) that are not loaded put in
/// their place as disabled members.
fn with_not_loaded(
    wanted: &[String],
    planned: Vec<Planned>,
    not_loaded: &[String],
    refused: &str,
) -> Vec<Planned> {
    if not_loaded.is_empty() {
        return planned;
    }
    let mut left: Vec<Option<Planned>> = planned.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for name in wanted {
        if not_loaded.contains(name) {
            if !out.iter().any(|p: &Planned| &p.name == name) {
                out.push(Planned {
                    name: name.clone(),
                    slot: Err(format!(
                        "not loaded: no library in the plugin directories provides a resolver of this name{refused}; see `provtarget buildinfo`"
                    )),
                });
            }
            continue;
        }
        let wanted_name = if provtarget_loader::is_reserved_name(name) {
            crate::default_resolver::NAME
        } else {
            name.as_str()
        };
        if let Some(p) = left
            .iter_mut()
            .find(|p| p.as_ref().is_some_and(|p| p.name == wanted_name))
            .and_then(Option::take)
        {
            out.push(p);
        }
    }
    out.extend(left.into_iter().flatten());
    out
}

/// The resolvers picked for the chain, in order, with where each comes from.
type Candidates = Vec<(Box<dyn TargetResolver>, Origin)>;

/// The loader's warnings (already logged by it: their count comes back too) then the
/// configuration's, with the `PROVTARGET_*` variables resolved against the keys the
/// loaded plugins declare, and the keys nothing reads.
fn start_warnings(config: &mut HostConfig, report: &LoadReport) -> (Vec<HostWarning>, usize) {
    let mut warnings: Vec<HostWarning> = report
        .warnings
        .iter()
        .cloned()
        .map(HostWarning::Loader)
        .collect();
    let already_logged = warnings.len();
    warnings.extend(config.warnings().iter().cloned().map(HostWarning::Config));
    let declared: Vec<String> = report
        .libraries
        .iter()
        .filter_map(|l| l.plugin.as_ref())
        .flat_map(|p| p.config_keys.iter().map(|k| k.key.clone()))
        .collect();
    // `PROVTARGET_*` variables are resolved against the declared keys now that
    // they are known (PROVTARGET_FQDN_IDENTITY -> plugin.provtarget.fqdn.identity).
    let env = config.apply_declared_env(&declared);
    warnings.extend(env.into_iter().map(HostWarning::Config));
    let unknown = config.unknown_key_warnings(&declared);
    warnings.extend(unknown.into_iter().map(HostWarning::Config));
    (warnings, already_logged)
}

/// The resolvers the chain plan picks, in order, with where each comes from, and the
/// names the configuration asks for that no library provides. The plan's warnings
/// join `warnings`.
fn candidates(
    config: &HostConfig,
    report: &mut LoadReport,
    remote: Vec<RemotePlugin>,
    warnings: &mut Vec<HostWarning>,
) -> (Candidates, Vec<String>) {
    // The chain is planned over every accepted library, loaded (here or in a
    // child) or known from the verdict cache, so a warm cache plans (and warns)
    // exactly as a cold one.
    let accepted: Vec<(usize, &str)> = report
        .libraries
        .iter()
        .enumerate()
        .filter(|(_, l)| l.verdict == provtarget_loader::Verdict::Loaded)
        .filter_map(|(i, l)| Some((i, l.plugin.as_ref()?.info.name.as_str())))
        .collect();
    let names: Vec<&str> = accepted.iter().map(|(_, n)| *n).collect();
    let accepted: Vec<usize> = accepted.iter().map(|(i, _)| *i).collect();
    let plan = selection::plan(config.resolvers(), &names, config.timeout().is_some());
    let not_loaded: Vec<String> = config
        .resolvers()
        .iter()
        .filter(|n| !provtarget_loader::is_reserved_name(n) && !names.contains(&n.as_str()))
        .cloned()
        .collect();
    warnings.extend(plan.warnings.into_iter().map(HostWarning::Selection));
    let mut plugins: Vec<Option<Candidate>> = std::mem::take(&mut report.plugins)
        .into_iter()
        .map(Candidate::Local)
        .chain(remote.into_iter().map(Candidate::Remote))
        .map(Some)
        .collect();
    let candidates = plan
        .members
        .iter()
        .filter_map(|m| match m {
            Member::BuiltIn => Some((default_resolver(), Origin::BuiltIn)),
            Member::Plugin(i) => plugins
                .iter_mut()
                .find(|p| {
                    p.as_ref()
                        .is_some_and(|p| Some(&p.record()) == accepted.get(*i))
                })
                .and_then(Option::take)
                .map(|p| {
                    let origin = Origin::Plugin(report.libraries[p.record()].path.clone());
                    (p.into_resolver(), origin)
                }),
        })
        .collect();
    (candidates, not_loaded)
}

/// Configures each candidate (active into the chain, or disabled), falling back to
/// the built-in resolver when none could be configured; warnings join `warnings`.
fn configure_chain(
    candidates: Candidates,
    config: &HostConfig,
    warnings: &mut Vec<HostWarning>,
) -> (Vec<ActiveResolver>, Vec<Planned>, Vec<DisabledResolver>) {
    let resolver_config = config.resolver_config();
    let configure_deadline = config.timeout().unwrap_or(DEFAULT_CONFIGURE_TIMEOUT);
    let mut chain = Vec::new();
    let mut disabled = Vec::new();
    let mut planned = Vec::new();
    for (resolver, origin) in candidates {
        let result = activate(resolver, origin, &resolver_config, configure_deadline);
        place(result, &mut chain, &mut planned, &mut disabled);
    }
    if chain.is_empty() {
        // Every chosen resolver failed to configure: fall back to the built-in one
        // rather than have no resolver at all.
        let fallback = default_resolver();
        let name = fallback.name();
        if !disabled.iter().any(|d| d.name == name) {
            warnings.push(HostWarning::Chain(format!(
                "no resolver could be configured; falling back to the built-in {name}"
            )));
            // (The built-in resolver's configure reports problems through its log
            // and does not fail today; if it ever does, buildinfo shows why.)
            let result = activate(
                fallback,
                Origin::BuiltIn,
                &resolver_config,
                configure_deadline,
            );
            if !place(result, &mut chain, &mut planned, &mut disabled) {
                warnings.push(HostWarning::Chain(format!(
                    "the built-in {name} could not be configured either; no resolver is active"
                )));
            }
        }
    }
    (chain, planned, disabled)
}

/// Why a resolver named but not loaded may be missing: the libraries refused (the
/// first three), as `; 2 libraries were refused: ...`, or empty.
fn refused_summary(report: &LoadReport) -> String {
    let refused: Vec<String> = report
        .libraries
        .iter()
        .filter_map(|l| match &l.verdict {
            provtarget_loader::Verdict::Rejected(r) => Some(r.message.clone()),
            _ => None,
        })
        .collect();
    match refused.len() {
        0 => String::new(),
        n => format!(
            "; {n} {} refused: {}{}",
            if n == 1 {
                "library was"
            } else {
                "libraries were"
            },
            refused[..n.min(3)].join("; "),
            if n > 3 { "; ..." } else { "" }
        ),
    }
}

/// How one `targets` call ended without targets.
#[derive(Debug)]
enum CallError {
    /// The resolver's own error.
    Error(String),
    /// The deadline passed; the resolver's last word, if any.
    Deadline(Option<String>),
    /// The caller cancelled; the resolver's last word, if any.
    Cancelled(Option<String>),
}

impl CallError {
    fn into_failure(self, resolver: &str) -> Failure {
        let resolver = resolver.to_string();
        match self {
            CallError::Error(error) => Failure::Failed { resolver, error },
            CallError::Deadline(last_error) => Failure::DeadlineExceeded {
                resolver,
                last_error,
            },
            CallError::Cancelled(last_error) => Failure::Cancelled {
                resolver,
                last_error,
            },
        }
    }
}

/// Logs why a resolver left the chain and keeps it for `buildinfo`.
/// Puts one resolver whose `configure` has run in its place: active in `chain`, or
/// disabled (and logged); its plan slot in `planned` either way. Whether it is active.
fn place(
    result: Result<ActiveResolver, DisabledResolver>,
    chain: &mut Vec<ActiveResolver>,
    planned: &mut Vec<Planned>,
    disabled: &mut Vec<DisabledResolver>,
) -> bool {
    match result {
        Ok(active) => {
            planned.push(Planned {
                name: active.name.clone(),
                slot: Ok(chain.len()),
            });
            chain.push(active);
            true
        }
        Err(d) => {
            planned.push(Planned {
                name: d.name.clone(),
                slot: Err(d.reason.clone()),
            });
            tracing::error!(
                plugin = d.name.as_str(),
                "resolver disabled: {}",
                crate::text::shown(&d.reason)
            );
            disabled.push(d);
            false
        }
    }
}

fn default_resolver() -> Box<dyn TargetResolver> {
    Box::new(JwtResolver::new(BuildDefaults::compiled()))
}

/// Configures `resolver` and makes it a member of the chain, or says why it cannot be.
fn activate(
    resolver: Box<dyn TargetResolver>,
    origin: Origin,
    config: &provtarget_abi::Config,
    deadline: Duration,
) -> Result<ActiveResolver, DisabledResolver> {
    let name = resolver.name();
    let version = resolver.version();
    match configure(resolver, config, deadline) {
        Ok((resolver, settings)) => Ok(ActiveResolver {
            name,
            version,
            origin,
            settings,
            resolver: Arc::from(resolver),
            busy: Arc::default(),
        }),
        Err(reason) => Err(DisabledResolver { name, reason }),
    }
}

/// Runs `configure` on its own thread with a deadline. On success the resolver comes
/// back with its settings.
fn configure(
    mut resolver: Box<dyn TargetResolver>,
    config: &provtarget_abi::Config,
    deadline: Duration,
) -> Result<(Box<dyn TargetResolver>, Settings), String> {
    let name = resolver.name();
    let token = CancelToken::new();
    let ctx = ResolveContext::new(&name, token.clone());
    let config = config.clone();
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name(format!("configure {name}"))
        .spawn(move || {
            let result = resolver.configure(&ctx, &config);
            let _ = tx.send(result.map(|settings| (resolver, settings)));
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start a thread to configure {name}: {e}"));
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => result.map_err(|e| format!("configure failed: {e}")),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            token.cancel();
            match rx.recv_timeout(CANCEL_GRACE) {
                Ok(_) => Err(format!(
                    "configure did not finish within {}; raise plugin.provtarget.timeout or fix the plugin",
                    human(deadline)
                )),
                Err(_) => Err(format!(
                    "configure did not finish within {} and ignored cancellation; its thread was abandoned",
                    human(deadline)
                )),
            }
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err("configure ended without an answer".into())
        }
    }
}

/// The answer record as shown ([`crate::resolver::answer_shown`]), its provenance
/// logged at info with the resolver's name when there is one.
fn answer_logged(resolver: &str, list: &RawTargets) -> provtarget_abi::host::Answer {
    let shown = crate::resolver::answer_shown(list.answer());
    if let Some(provenance) = &shown.provenance {
        tracing::info!(plugin = resolver, "answer provenance: {provenance}");
    }
    shown
}

/// The answer of one resolver's `targets`, run on a thread of its own with `token`;
/// the resolver is marked idle again however the call ends.
fn spawn_targets(
    active: &ActiveResolver,
    token: CancelToken,
) -> Result<tokio::sync::oneshot::Receiver<Result<RawTargets, ResolverError>>, CallError> {
    let ctx = ResolveContext::new(&active.name, token);
    let resolver = Arc::clone(&active.resolver);
    let busy = Arc::clone(&active.busy);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = thread::Builder::new()
        .name(format!("targets {}", active.name))
        .spawn(move || {
            // Cleared however the call ends, panics included.
            struct Idle(Arc<AtomicBool>);
            impl Drop for Idle {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::SeqCst);
                }
            }
            let idle = Idle(busy);
            let result = resolver.targets(&ctx);
            // This thread's reference goes before the answer does: the caller's is
            // then the last, so ending the resolver (a resolver process: its last log
            // lines re-logged, see `isolation::LogFlush`) happens on the caller's
            // thread, before the host exits, never on this one as the process ends.
            drop(resolver);
            drop(idle);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        active.busy.store(false, Ordering::SeqCst);
        return Err(CallError::Error(format!(
            "cannot start a resolver thread: {e}"
        )));
    }
    Ok(rx)
}

/// Runs one resolver's `targets` on a dedicated thread, awaiting it without blocking
/// the runtime. Missing the deadline cancels the resolver; one that then ignores
/// cancellation for [`CANCEL_GRACE`] is abandoned (its thread keeps running, detached)
/// and reported.
async fn run_targets(
    active: &ActiveResolver,
    outer: &CancelToken,
    deadline: Option<Duration>,
) -> Result<RawTargets, CallError> {
    if active.busy.swap(true, Ordering::SeqCst) {
        return Err(CallError::Error(
            "its previous call ignored cancellation and is still running; not starting another"
                .into(),
        ));
    }
    // A child of the caller's token: the caller's cancel reaches the resolver at
    // once; a missed deadline cancels only this call.
    let token = outer.child();
    let mut rx = spawn_targets(active, token.clone())?;
    let started = Instant::now();
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    let cancelled = outer.cancelled();
    let by_deadline = tokio::select! {
        result = &mut rx => {
            return match result {
                Ok(Ok(list)) => Ok(list),
                Ok(Err(e)) => Err(CallError::Error(e.into_message())),
                Err(_) => Err(CallError::Error("the resolver thread ended without an answer".into())),
            };
        }
        _ = expired => true,
        _ = cancelled => false,
    };
    token.cancel();
    let last_word = match tokio::time::timeout(CANCEL_GRACE, &mut rx).await {
        // What the resolver said once cancelled: the SDK retry's last failure, say.
        // A bare "context canceled" adds nothing.
        Ok(Ok(Err(e))) if e.message().trim() != "context canceled" => Some(e.into_message()),
        Ok(_) => None,
        Err(_) => {
            let msg = format!(
                "the resolver ignored cancellation for {} and was abandoned after {}",
                human(CANCEL_GRACE),
                human(started.elapsed())
            );
            tracing::error!(plugin = active.name.as_str(), "{msg}");
            Some(msg)
        }
    };
    if by_deadline {
        Err(CallError::Deadline(last_word))
    } else {
        Err(CallError::Cancelled(last_word))
    }
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
