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
use provtarget_loader::LoadReport;

use crate::{
    config::HostConfig,
    default_resolver::{self, BuildDefaults, JwtResolver},
    resolver::{CancelToken, RawTargets, ResolveContext, Settings, TargetResolver},
    targets::{self, Server},
};

/// How long a resolver gets to return after it has been cancelled before the host
/// abandons its thread.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long `configure` may take when no `plugin.provtarget.timeout` is set.
pub const DEFAULT_CONFIGURE_TIMEOUT: Duration = Duration::from_secs(60);

/// A loaded plugin seen through the native [`TargetResolver`] trait.
pub struct PluginAdapter {
    info: PluginInfo,
    resolver: PluginResolver,
}

impl PluginAdapter {
    /// Wraps a plugin's resolver and self-description.
    pub fn new(info: PluginInfo, resolver: PluginResolver) -> PluginAdapter {
        PluginAdapter { info, resolver }
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
    ) -> Result<Settings, String> {
        let pairs: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.resolver.configure(ctx, &pairs)
    }
    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, String> {
        self.resolver.targets(ctx).map(RawTargets::from)
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

/// The running host.
pub struct Host {
    config: HostConfig,
    report: LoadReport,
    chain: Vec<ActiveResolver>,
    disabled: Vec<DisabledResolver>,
    warnings: Vec<String>,
}

/// A successful resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The resolver that produced the servers.
    pub resolver: String,
    /// The servers, validated and normalized.
    pub servers: Vec<Server>,
    /// Earlier resolvers of the chain that failed, with their errors.
    pub failed: Vec<(String, String)>,
}

/// A failed resolution: the last resolver's error in Choria's words, plus every
/// attempt.
#[derive(Debug, Clone)]
pub struct ResolveError {
    /// One line, e.g. `provisioning target plugin X returned no servers`.
    pub message: String,
    /// Every resolver tried, with its error.
    pub failed: Vec<(String, String)>,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ResolveError {}

impl Host {
    /// Loads plugins as `config` says, selects and configures the resolver chain.
    /// Never fails: problems become warnings, refused libraries and disabled
    /// resolvers, all visible in `buildinfo`.
    pub fn start(config: HostConfig) -> Host {
        let report = provtarget_loader::load_all(&config.loader_options());
        Host::start_with(config, report)
    }

    /// Like [`Host::start`] with an already-made load report.
    pub fn start_with(config: HostConfig, mut report: LoadReport) -> Host {
        let mut warnings: Vec<String> = config.warnings().to_vec();
        // The loader logs its own warnings; keep them for buildinfo without logging
        // them a second time.
        let already_logged = report.warnings.len();
        warnings.splice(0..0, report.warnings.iter().cloned());
        let plugins = std::mem::take(&mut report.plugins);
        let mut candidates: Vec<(Box<dyn TargetResolver>, Origin)> = Vec::new();
        let wanted = config.resolvers();
        let mut available: Vec<Option<provtarget_loader::LoadedPlugin>> =
            plugins.into_iter().map(Some).collect();
        let loaded_names = || {
            let names: Vec<String> = report
                .libraries
                .iter()
                .filter(|l| l.verdict == provtarget_loader::Verdict::Loaded)
                .filter_map(|l| l.plugin.as_ref().map(|p| p.info.name.clone()))
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let take_plugin = |p: provtarget_loader::LoadedPlugin, report: &LoadReport| {
            let origin = Origin::Plugin(report.libraries[p.record].path.clone());
            let adapter: Box<dyn TargetResolver> = Box::new(PluginAdapter::new(p.info, p.resolver));
            (adapter, origin)
        };
        if wanted.is_empty() {
            let mut loaded = available.into_iter().flatten();
            match loaded.next() {
                Some(first) => {
                    let others: Vec<String> = loaded.map(|p| p.info.name).collect();
                    if !others.is_empty() {
                        warnings.push(format!(
                            "several resolver plugins are loaded; using {}, the first by file name, and ignoring {}; choose with plugin.provtarget.resolvers",
                            first.info.name,
                            others.join(", ")
                        ));
                    }
                    candidates.push(take_plugin(first, &report));
                }
                None => candidates.push((default_resolver(), Origin::BuiltIn)),
            }
        } else {
            for name in &wanted {
                // The same rule the loader uses to refuse plugins with these names.
                if provtarget_loader::is_reserved_name(name) {
                    if candidates.iter().any(|(_, o)| *o == Origin::BuiltIn) {
                        warnings.push(format!("resolver {name} is listed twice in plugin.provtarget.resolvers; using it once"));
                    } else {
                        candidates.push((default_resolver(), Origin::BuiltIn));
                    }
                    continue;
                }
                let slot = available
                    .iter_mut()
                    .find(|p| p.as_ref().is_some_and(|p| p.info.name == *name));
                match slot.and_then(Option::take) {
                    Some(p) => candidates.push(take_plugin(p, &report)),
                    None if candidates.iter().any(|(r, _)| r.name() == *name) => warnings.push(format!(
                        "resolver {name} is listed twice in plugin.provtarget.resolvers; using it once"
                    )),
                    None => warnings.push(format!(
                        "resolver {name} named in plugin.provtarget.resolvers is not loaded (loaded: {}); check the name in `provtarget buildinfo`",
                        loaded_names()
                    )),
                }
            }
            if candidates.is_empty() {
                warnings.push(format!(
                    "none of the resolvers in plugin.provtarget.resolvers is available; using the built-in {}",
                    default_resolver::NAME
                ));
                candidates.push((default_resolver(), Origin::BuiltIn));
            }
        }
        if candidates.len() > 1 && config.timeout().is_none() {
            warnings.push(
                "a resolver chain without plugin.provtarget.timeout waits forever on the first resolver that keeps retrying; set a timeout".into(),
            );
        }

        let resolver_config = config.resolver_config();
        let configure_deadline = config.timeout().unwrap_or(DEFAULT_CONFIGURE_TIMEOUT);
        let mut chain = Vec::new();
        let mut disabled = Vec::new();
        for (resolver, origin) in candidates {
            match activate(resolver, origin, &resolver_config, configure_deadline) {
                Ok(active) => chain.push(active),
                Err(d) => record_disabled(&mut disabled, d),
            }
        }
        if chain.is_empty() {
            // Every chosen resolver failed to configure: fall back to the built-in one
            // rather than have no resolver at all.
            let fallback = default_resolver();
            let name = fallback.name();
            if !disabled.iter().any(|d| d.name == name) {
                warnings.push(format!(
                    "no resolver could be configured; falling back to the built-in {name}"
                ));
                // (The built-in resolver's configure reports problems through its log
                // and does not fail today; if it ever does, buildinfo shows why.)
                match activate(
                    fallback,
                    Origin::BuiltIn,
                    &resolver_config,
                    configure_deadline,
                ) {
                    Ok(active) => chain.push(active),
                    Err(d) => {
                        warnings.push(format!(
                            "the built-in {name} could not be configured either; no resolver is active"
                        ));
                        record_disabled(&mut disabled, d);
                    }
                }
            }
        }
        for w in &warnings[already_logged..] {
            tracing::warn!("{w}");
        }
        Host {
            config,
            report,
            chain,
            disabled,
            warnings,
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
    pub fn warnings(&self) -> &[String] {
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
        let mut failed: Vec<(String, String)> = Vec::new();
        if self.chain.is_empty() {
            return Err(ResolveError {
                message: targets::NO_RESOLVER.to_string(),
                failed,
            });
        }
        let mut last_error = String::new();
        for (i, active) in self.chain.iter().enumerate() {
            if cancel.is_cancelled() {
                // Cancelled by the caller: that, not an earlier resolver's failure, is
                // why there is no answer.
                last_error.clear();
                break;
            }
            let outcome = run_targets(active, cancel, deadline).await;
            match targets::servers_from(&active.name, outcome) {
                Ok(servers) => {
                    return Ok(Resolution {
                        resolver: active.name.clone(),
                        servers,
                        failed,
                    })
                }
                Err(e) => {
                    if let Some(next) = self.chain.get(i + 1) {
                        tracing::warn!(plugin = active.name.as_str(), "{e}; trying {}", next.name);
                    }
                    failed.push((active.name.clone(), e.clone()));
                    last_error = e;
                }
            }
        }
        if last_error.is_empty() || cancel.is_cancelled() {
            let name = failed
                .last()
                .map(|(n, _)| n.as_str())
                .unwrap_or(&self.chain[0].name);
            last_error = format!(
                "could not determine provisioning servers using {name} provisioning target plugin: context canceled"
            );
        }
        Err(ResolveError {
            message: last_error,
            failed,
        })
    }
}

/// Logs why a resolver left the chain and keeps it for `buildinfo`.
fn record_disabled(disabled: &mut Vec<DisabledResolver>, d: DisabledResolver) {
    tracing::error!(plugin = d.name.as_str(), "resolver disabled: {}", d.reason);
    disabled.push(d);
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

/// Runs one resolver's `targets` on a dedicated thread, awaiting it without blocking
/// the runtime. Missing the deadline cancels the resolver; one that then ignores
/// cancellation for [`CANCEL_GRACE`] is abandoned (its thread keeps running, detached)
/// and reported.
async fn run_targets(
    active: &ActiveResolver,
    outer: &CancelToken,
    deadline: Option<Duration>,
) -> Result<RawTargets, String> {
    if active.busy.swap(true, Ordering::SeqCst) {
        return Err(
            "its previous call ignored cancellation and is still running; not starting another"
                .into(),
        );
    }
    let token = CancelToken::new();
    let ctx = ResolveContext::new(&active.name, token.clone());
    let resolver = Arc::clone(&active.resolver);
    let busy = Arc::clone(&active.busy);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
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
            drop(idle);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        active.busy.store(false, Ordering::SeqCst);
        return Err(format!("cannot start a resolver thread: {e}"));
    }
    let started = Instant::now();
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    let cancelled = outer.cancelled();
    let why = tokio::select! {
        result = &mut rx => {
            return result.unwrap_or_else(|_| Err("the resolver thread ended without an answer".into()));
        }
        _ = expired => "context deadline exceeded",
        _ = cancelled => "context canceled",
    };
    token.cancel();
    match tokio::time::timeout(CANCEL_GRACE, &mut rx).await {
        Ok(_) => Err(why.to_string()),
        Err(_) => {
            let msg = format!(
                "{why}; the resolver ignored cancellation for {} and was abandoned after {}",
                human(CANCEL_GRACE),
                human(started.elapsed())
            );
            tracing::error!(plugin = active.name.as_str(), "{msg}");
            Err(msg)
        }
    }
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
