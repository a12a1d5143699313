//! The built-in resolver, `Choria JWT Resolver`: Choria's default provisioning target
//! resolver, used when no plugin is chosen.
//!
//! # Where the brokers come from
//!
//! `targets` answers from one *source*, chosen by [`TargetResolver::configure`]:
//!
//! 1. **broker URLs** (`host:port` or `scheme://host:port`, comma separated; spaces
//!    trimmed, empty items dropped) are returned as they are;
//! 2. else an **SRV domain**: the SRV records of `_choria-provisioner._tcp.<domain>`
//!    are looked up and returned as `host:port` (target's trailing dot trimmed; the
//!    host adds the `nats` scheme) in RFC 2782 order as Go's resolver gives it:
//!    by priority, and within a priority in a random order weighted by the records'
//!    weights, drawn afresh on every call. Answers are cached for 5 seconds. A failed
//!    lookup (no records, NXDOMAIN, timeout) is logged at warn level with the time it
//!    will wait, and retried with Choria's `TwentySec` backoff until it succeeds or
//!    the call is cancelled;
//! 3. else the warning `Neither provisioning broker url or provisioning SRV domain is
//!    set, cannot continue` is logged and no targets are returned (the host then
//!    reports `provisioning target plugin Choria JWT Resolver returned no servers`).
//!
//! # Precedence: configuration > JWT > build defaults
//!
//! The source is taken, as a whole, from the first of these that names one:
//!
//! - the **configuration** keys `plugin.provtarget.broker_urls` and
//!   `plugin.provtarget.srv_domain` — the operator's explicit, local decision for this
//!   machine, so nothing may silently override it (if both are set, the broker URLs
//!   win and a warning says the SRV domain is ignored);
//! - the **provisioning JWT**'s `chu` / `chsrv` claims — a token issued for a whole
//!   site; it exists precisely to override what the packager compiled in without
//!   rebuilding, as in Choria;
//! - the **build defaults** ([`BuildDefaults`]) — the packager's fallback.
//!
//! A source is taken whole so that, say, an SRV domain in the configuration is not
//! overruled by broker URLs from the JWT. The JWT's path follows the same order:
//! `plugin.provtarget.jwt_file`, else the build default (`/etc/choria/provisioning.jwt`
//! unless the packager chose another); an empty `plugin.provtarget.jwt_file` disables
//! the JWT.
//!
//! # The provisioning JWT
//!
//! It is read *without verifying its signature* (as Choria does: it only carries
//! defaults, the provisioner checks the token itself). Claims: `cht` token, `chs`
//! secure, `chu` broker URLs, `chsrv` SRV domain, `chpd` provision by default, `chrd`
//! registration data, `chf` facts, `chusr` / `chpwd` broker user and password,
//! `extensions`. A token without `cht` is refused with `no auth token`, one with
//! neither `chu` nor `chsrv` with `no srv domain or urls`, one with both with `both srv
//! domain and URLs supplied`.
//!
//! A missing JWT file is normal (debug log only). A file that cannot be read or
//! decoded, or whose claims fail those checks, is logged at error level as
//! `Configuration of the provisioner settings based on JWT file <path> failed:
//! <reason>` and ignored *as a whole* (as in Choria, no claim of a refused token is
//! used); `configure` still succeeds and the resolver carries on with the
//! configuration and build defaults. The file is opened without blocking and judged
//! before it is read: a FIFO, socket, device (`/dev/zero`) or directory is refused at
//! once, and so is a file larger than [`MAX_JWT_FILE`] (64 KiB), so a hostile path can
//! neither stall `configure` (which would get the built-in resolver disabled) nor
//! exhaust memory. A UTF-8 byte-order mark before the token is ignored.
//!
//! # Other configuration
//!
//! `plugin.provtarget.dns_server` (`ip:port`, or a bare IP for port 53) sends SRV
//! queries to that server instead of the system's resolvers (`/etc/resolv.conf`). An
//! invalid value is logged at error level and ignored.
//!
//! # Cancellation
//!
//! Each SRV query is raced against the call's cancellation and limited to 2 seconds;
//! the backoff sleep wakes on cancellation. A cancelled `targets` returns promptly with
//! the error `context canceled while looking up SRV records for <name> (<n> tries;
//! last error: <reason>)`.
//!
//! # Reported settings
//!
//! `configure` returns, for `buildinfo`: `provisioning.jwt_file`,
//! `provisioning.source` (`configuration`, `jwt`, `build defaults` or `none`),
//! `provisioning.broker_urls` or `provisioning.srv_domain` (whichever is used),
//! `provisioning.dns_server` when set, and from an accepted JWT `provisioning.token`,
//! `provisioning.secure`, `provisioning.default`, and when present
//! `provisioning.registration_data`, `provisioning.facts`,
//! `provisioning.broker_user`, `provisioning.broker_password`,
//! `provisioning.extensions` (JSON). Values are raw: the host masks secrets.

mod jwt;
mod srv;

pub use self::jwt::MAX_JWT_FILE;

use std::time::Duration;

use provtarget_abi::{
    backoff::{GaveUp, TWENTY_SEC},
    Cancellation, Cancelled, Config, LogLevel,
};

use crate::resolver::{RawTargets, ResolveContext, ResolverError, Settings, TargetResolver};

use self::srv::{LookupError, SrvClient};

/// The resolver's name, as in Choria.
pub const NAME: &str = "Choria JWT Resolver";

/// The SRV service looked up under the SRV domain.
pub const SRV_SERVICE: &str = "_choria-provisioner._tcp";

/// How long a successful SRV answer is reused.
pub const SRV_CACHE_AGE: Duration = Duration::from_secs(5);

/// The warning logged when there is neither a broker URL nor an SRV domain (Choria's
/// text).
pub const NO_SOURCE_WARNING: &str =
    "Neither provisioning broker url or provisioning SRV domain is set, cannot continue";

use crate::config::keys::{
    BROKER_URLS as KEY_BROKER_URLS, DNS_SERVER as KEY_DNS_SERVER, JWT_FILE as KEY_JWT_FILE,
    SRV_DOMAIN as KEY_SRV_DOMAIN,
};
use crate::config::parse_dns_server;
/// The build defaults live with the configuration (the lower layer); named here too.
pub use crate::config::{BuildDefaults, DEFAULT_JWT_FILE};

/// Where `targets` gets brokers from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    BrokerUrls(Vec<String>),
    SrvDomain(String),
    Nothing,
}

/// Which layer of the precedence chose the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Configuration,
    Jwt,
    BuildDefaults,
    Nowhere,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Configuration => "configuration",
            Origin::Jwt => "jwt",
            Origin::BuildDefaults => "build defaults",
            Origin::Nowhere => "none",
        }
    }
}

/// The built-in `Choria JWT Resolver` (see the [module docs](self)).
///
/// ```
/// use provtarget::default_resolver::{BuildDefaults, JwtResolver};
/// use provtarget::resolver::{CancelToken, ResolveContext, TargetResolver};
/// use provtarget_abi::Config;
///
/// let mut resolver = JwtResolver::new(BuildDefaults::compiled());
/// let ctx = ResolveContext::new(&resolver.name(), CancelToken::new());
/// let config: Config = [("plugin.provtarget.broker_urls", "b1:4222, b2:4222")]
///     .into_iter()
///     .collect();
/// resolver.configure(&ctx, &config).unwrap();
/// assert_eq!(resolver.targets(&ctx).unwrap(), ["b1:4222", "b2:4222"]);
/// ```
#[derive(Debug)]
pub struct JwtResolver {
    defaults: BuildDefaults,
    source: Source,
    srv: SrvClient,
}

impl JwtResolver {
    /// A resolver using `defaults` until [`TargetResolver::configure`] is called.
    pub fn new(defaults: BuildDefaults) -> JwtResolver {
        let (source, _) = choose_source(None, None, &defaults);
        JwtResolver {
            defaults,
            source,
            srv: SrvClient::new(None, SRV_CACHE_AGE),
        }
    }

    fn srv_targets(&self, ctx: &ResolveContext, domain: &str) -> Result<Vec<String>, String> {
        ctx.log(
            LogLevel::Info,
            &format!("Performing provisioning broker resolution via SRV using domain {domain}"),
        );
        let record = format!("{SRV_SERVICE}.{domain}");
        let attempts = std::cell::Cell::new(0usize);
        // The SDK's retry loop (Choria's TwentySec backoff), with Choria's log line for
        // each failed try.
        let result = TWENTY_SEC.retry(&SrvRetry { ctx, domain }, |try_| {
            attempts.set(try_);
            ctx.log(
                LogLevel::Info,
                &format!("Attempting SRV lookup on {record}"),
            );
            match self.srv.lookup(&record, ctx.token()) {
                Ok((servers, cached)) => {
                    let from = if cached { " (cached)" } else { "" };
                    ctx.log(
                        LogLevel::Info,
                        &format!("Found {} SRV records for {record}{from}", servers.len()),
                    );
                    Ok(servers)
                }
                Err(LookupError::Cancelled) => Err(Box::new(Cancelled)),
                Err(LookupError::Failed(reason)) => {
                    ctx.log(
                        LogLevel::Warn,
                        &format!("Failed to resolve {record}: {reason}"),
                    );
                    Err(reason.into())
                }
            }
        });
        result.map_err(|e| {
            let last = e
                .downcast_ref::<GaveUp>()
                .and_then(|g| g.last_error.clone())
                .unwrap_or_else(|| "none".into());
            format!(
                "context canceled while looking up SRV records for {record} ({} tries; last error: {last})",
                attempts.get()
            )
        })
    }
}

/// The SRV retry loop's view of the call: the call's cancellation, and Choria's
/// warning for every failed try.
struct SrvRetry<'a> {
    ctx: &'a ResolveContext,
    domain: &'a str,
}

impl Cancellation for SrvRetry<'_> {
    fn is_cancelled(&self) -> bool {
        self.ctx.token().is_cancelled()
    }
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        Cancellation::sleep(self.ctx, duration)
    }
    fn retrying(&self, try_: usize, _error: &dyn std::fmt::Display, pause: Duration) {
        self.ctx.log(
            LogLevel::Warn,
            &format!(
                "Resolving provisioning brokers via SRV lookups in domain {} failed on try {try_}, will keep trying in {}ms",
                self.domain,
                pause.as_millis()
            ),
        );
    }
}

impl TargetResolver for JwtResolver {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn configure(
        &mut self,
        ctx: &ResolveContext,
        config: &Config,
    ) -> Result<Settings, ResolverError> {
        let jwt_file = match config.get(KEY_JWT_FILE) {
            Some(path) => path.trim().to_string(),
            None => self.defaults.jwt_file.clone(),
        };
        let claims = read_jwt(ctx, &jwt_file);

        let dns_server = configured_dns_server(ctx, config);
        self.srv = SrvClient::new(dns_server, SRV_CACHE_AGE);

        let configured = (
            config.get(KEY_BROKER_URLS).and_then(nonempty_urls),
            config
                .get(KEY_SRV_DOMAIN)
                .map(str::trim)
                .filter(|d| !d.is_empty()),
        );
        if let (Some(_), Some(domain)) = configured {
            ctx.log(
                LogLevel::Warn,
                &format!(
                    "both {KEY_BROKER_URLS} and {KEY_SRV_DOMAIN} are set; using the broker URLs and ignoring SRV domain {domain}"
                ),
            );
        }
        let (source, origin) = choose_source(Some(configured), claims.as_ref(), &self.defaults);
        self.source = source;

        Ok(self.settings(jwt_file, origin.as_str(), claims))
    }

    fn targets(&self, ctx: &ResolveContext) -> Result<RawTargets, ResolverError> {
        match &self.source {
            Source::BrokerUrls(urls) => {
                ctx.log(
                    LogLevel::Debug,
                    &format!(
                        "Using provisioning broker URLs {}",
                        crate::text::redact_userinfo(&urls.join(","))
                    ),
                );
                Ok(urls.clone().into())
            }
            Source::SrvDomain(domain) => self
                .srv_targets(ctx, domain)
                .map(RawTargets::from)
                .map_err(ResolverError::from),
            Source::Nothing => {
                ctx.log(LogLevel::Warn, NO_SOURCE_WARNING);
                Ok(RawTargets::default())
            }
        }
    }
}

impl JwtResolver {
    /// The settings `configure` reports: the JWT file, the source and what it holds,
    /// the DNS server, and the claims of the JWT when there is one.
    fn settings(
        &self,
        jwt_file: String,
        origin: &str,
        claims: Option<jwt::ProvClaims>,
    ) -> Settings {
        let mut settings: Settings = vec![
            ("provisioning.jwt_file".into(), jwt_file),
            ("provisioning.source".into(), origin.into()),
        ];
        match &self.source {
            Source::BrokerUrls(urls) => {
                settings.push(("provisioning.broker_urls".into(), urls.join(",")))
            }
            Source::SrvDomain(domain) => {
                settings.push(("provisioning.srv_domain".into(), domain.clone()))
            }
            Source::Nothing => {}
        }
        if let Some(addr) = self.srv.server() {
            settings.push(("provisioning.dns_server".into(), addr.to_string()));
        }
        if let Some(c) = claims {
            settings.push(("provisioning.token".into(), c.token));
            settings.push(("provisioning.secure".into(), c.secure.to_string()));
            settings.push((
                "provisioning.default".into(),
                c.provision_by_default.to_string(),
            ));
            let optional = [
                ("provisioning.registration_data", c.registration_data),
                ("provisioning.facts", c.facts),
                ("provisioning.broker_user", c.broker_user),
                ("provisioning.broker_password", c.broker_password),
            ];
            for (key, value) in optional {
                if !value.is_empty() {
                    settings.push((key.into(), value));
                }
            }
            if let Some(ext) = c.extensions {
                settings.push((
                    "provisioning.extensions".into(),
                    serde_json::Value::Object(ext).to_string(),
                ));
            }
        }
        settings
    }
}

/// `plugin.provtarget.dns_server` when set and valid; an invalid one is logged and
/// the system's DNS configuration used.
fn configured_dns_server(ctx: &ResolveContext, config: &Config) -> Option<std::net::SocketAddr> {
    config
        .get(KEY_DNS_SERVER)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .and_then(|v| match parse_dns_server(v) {
            Ok(addr) => Some(addr),
            Err(e) => {
                ctx.log(
                    LogLevel::Error,
                    &format!("ignoring {KEY_DNS_SERVER} = {v:?}: {e}"),
                );
                None
            }
        })
}

/// Reads and validates the JWT at `path`; `None` (after logging why) when there is no
/// usable token.
fn read_jwt(ctx: &ResolveContext, path: &str) -> Option<jwt::ProvClaims> {
    if path.is_empty() {
        ctx.log(
            LogLevel::Debug,
            &format!("{KEY_JWT_FILE} is empty: not reading a provisioning JWT"),
        );
        return None;
    }
    // Read without blocking and with a bound: a FIFO or a device at this path must
    // neither stall `configure` (the host would then disable this resolver, its
    // fallback) nor exhaust memory. Any problem is logged and the JWT ignored; the
    // resolver goes on with the configuration and build defaults.
    match jwt::read_file(std::path::Path::new(path)) {
        jwt::JwtFile::Claims(claims) => {
            ctx.log(
                LogLevel::Info,
                &format!("Setting build defaults to those found in {path}"),
            );
            Some(claims)
        }
        jwt::JwtFile::Missing => {
            ctx.log(
                LogLevel::Debug,
                &format!("No provisioning JWT at {path}; using configuration and build defaults"),
            );
            None
        }
        jwt::JwtFile::Refused(reason) => {
            ctx.log(
                LogLevel::Error,
                &format!("Configuration of the provisioner settings based on JWT file {path} failed: {reason}; ignoring the JWT, using configuration and build defaults"),
            );
            None
        }
    }
}

/// Splits comma-separated broker URLs; `None` when nothing is left.
fn nonempty_urls(list: &str) -> Option<Vec<String>> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// Picks the source by precedence: configuration (`(urls, srv domain)`, URLs first),
/// then an accepted JWT, then the build defaults.
fn choose_source(
    configured: Option<(Option<Vec<String>>, Option<&str>)>,
    claims: Option<&jwt::ProvClaims>,
    defaults: &BuildDefaults,
) -> (Source, Origin) {
    fn pick(urls: Option<Vec<String>>, domain: Option<&str>) -> Option<Source> {
        match (urls, domain.map(str::trim).filter(|d| !d.is_empty())) {
            (Some(urls), _) => Some(Source::BrokerUrls(urls)),
            (None, Some(domain)) => Some(Source::SrvDomain(domain.to_string())),
            (None, None) => None,
        }
    }
    if let Some(source) = configured.and_then(|(urls, domain)| pick(urls, domain)) {
        return (source, Origin::Configuration);
    }
    if let Some(source) =
        claims.and_then(|c| pick(nonempty_urls(&c.urls), Some(c.srv_domain.as_str())))
    {
        return (source, Origin::Jwt);
    }
    let default_urls = defaults.broker_urls.as_deref().and_then(nonempty_urls);
    match pick(default_urls, defaults.srv_domain.as_deref()) {
        Some(source) => (source, Origin::BuildDefaults),
        None => (Source::Nothing, Origin::Nowhere),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(urls: &str, srv: &str) -> jwt::ProvClaims {
        jwt::ProvClaims {
            token: "t".into(),
            urls: urls.into(),
            srv_domain: srv.into(),
            ..Default::default()
        }
    }

    fn defaults(urls: Option<&str>, srv: Option<&str>) -> BuildDefaults {
        BuildDefaults {
            jwt_file: String::new(),
            broker_urls: urls.map(String::from),
            srv_domain: srv.map(String::from),
        }
    }

    fn urls(list: &[&str]) -> Source {
        Source::BrokerUrls(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn configuration_beats_jwt_beats_build_defaults() {
        let d = defaults(Some("d:1"), None);
        let jwt = claims("", "jwt.example");
        assert_eq!(
            choose_source(Some((None, Some("cfg.example"))), Some(&jwt), &d),
            (
                Source::SrvDomain("cfg.example".into()),
                Origin::Configuration
            )
        );
        assert_eq!(
            choose_source(Some((None, None)), Some(&jwt), &d),
            (Source::SrvDomain("jwt.example".into()), Origin::Jwt)
        );
        assert_eq!(
            choose_source(Some((None, None)), None, &d),
            (urls(&["d:1"]), Origin::BuildDefaults)
        );
        assert_eq!(
            choose_source(None, None, &defaults(None, None)),
            (Source::Nothing, Origin::Nowhere)
        );
    }

    #[test]
    fn a_source_is_taken_whole() {
        // The configuration's SRV domain is not overruled by the JWT's URLs.
        assert_eq!(
            choose_source(
                Some((None, Some("cfg"))),
                Some(&claims("j:1", "")),
                &defaults(None, None)
            )
            .0,
            Source::SrvDomain("cfg".into())
        );
        // Configured URLs win over a configured SRV domain.
        assert_eq!(
            choose_source(
                Some((Some(vec!["c:1".into()]), Some("cfg"))),
                None,
                &defaults(None, None)
            )
            .0,
            urls(&["c:1"])
        );
        // Build defaults: URLs first too.
        assert_eq!(
            choose_source(None, None, &defaults(Some("a:1, ,b:2,"), Some("d"))).0,
            urls(&["a:1", "b:2"])
        );
        assert_eq!(
            choose_source(None, None, &defaults(Some(" , "), Some("d"))).0,
            Source::SrvDomain("d".into())
        );
    }

    #[test]
    fn dns_server_forms() {
        assert_eq!(
            parse_dns_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("10.0.0.1"),
            Ok("10.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("[::1]:5353"),
            Ok("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_dns_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_dns_server("dns.example:53")
            .unwrap_err()
            .to_string()
            .contains("expected ip:port"));
    }

    #[test]
    fn compiled_defaults_fall_back_to_the_standard_jwt_path() {
        let d = BuildDefaults::compiled();
        if option_env!("PROVTARGET_DEFAULT_JWT_FILE").is_none() {
            assert_eq!(d.jwt_file, DEFAULT_JWT_FILE);
        }
        assert_eq!(BuildDefaults::default().jwt_file, DEFAULT_JWT_FILE);
    }
}
