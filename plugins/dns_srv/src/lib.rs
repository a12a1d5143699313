//! `DNS SRV Provisioning Target`: the provisioning brokers from DNS SRV records, in
//! the order Choria uses them.
//!
//! ```text
//! # /etc/choria/server.conf: plain DNS
//! plugin.provtarget.dns_srv.name = _choria-provisioner._tcp.{domain}
//! plugin.provtarget.dns_srv.servers = 192.0.2.53:53, 192.0.2.54:53
//!
//! # or Consul's DNS interface (service "choria-provisioner")
//! plugin.provtarget.dns_srv.servers = 127.0.0.1:8600
//! plugin.provtarget.dns_srv.name = choria-provisioner.service.consul
//! ```
//!
//! It looks up the SRV records of the configured name and returns
//! `scheme://target:port` for each (trailing dot removed), ordered as RFC 2782 and
//! Go's `net.LookupSRV` (so Choria) order them: priority ascending, then, within one
//! priority, a weighted random draw (a record of weight 60 comes first three times as
//! often as one of weight 20), drawn afresh on every call so a fleet spreads over the
//! brokers as the weights say.
//!
//! Each try asks the listed servers in order with a head start (failover): the next
//! server is asked too when the one before has not answered within
//! `plugin.provtarget.dns_srv.failover_after` (250 ms) or has failed, and the first
//! usable answer wins; each query is bounded by `plugin.provtarget.dns_srv.timeout`.
//! A server that failed or was slow while another answered is logged once per run, at
//! warn. The address lookups that work out `{domain}` from the search domains fail
//! over the same way (one mechanism, `Dns::first`). A try fails when every server failed:
//! NXDOMAIN, no SRV records, no usable record, no answer in time, refused connection;
//! the error names each server and its cause. Failed tries are retried with Choria's
//! FiveSec backoff (each logged once through the host) until the host cancels; the
//! call ends within about 20 ms of cancellation, a query in flight included.
//!
//! Answers are checked: at most 64 records (more refuses the answer), each target a
//! valid host name and its port not 0; bad records are skipped with a warning naming
//! the server, and a target of `.` ("service not offered here", RFC 2782) is skipped.
//!
//! Configuration keys (in the host's `server.conf`, or `--set`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.provtarget.dns_srv.name` | `_choria-provisioner._tcp.{domain}` | SRV name to look up; `{domain}` is the host's DNS domain |
//! | `plugin.provtarget.dns_srv.servers` | (system resolver) | DNS servers as `ip:port` (`ip` alone means port 53, IPv6 as `[::1]:53`), comma separated, asked in order; unset: the `nameserver` lines of `/etc/resolv.conf`, read afresh on every try |
//! | `plugin.provtarget.dns_srv.scheme` | `nats` | URL scheme put before each target |
//! | `plugin.provtarget.dns_srv.domain` | (detected) | the domain for `{domain}` |
//! | `plugin.provtarget.dns_srv.timeout` | `2s` | how long one query to one server may take |
//! | `plugin.provtarget.dns_srv.failover_after` | `250ms` | how long a server has to answer before the next one is asked as well |
//!
//! The host's domain for `{domain}`, unless `plugin.provtarget.dns_srv.domain` sets it:
//! the host name after its first dot when it has one (`web1.lon1.example.net` →
//! `lon1.example.net`); else the same from the name `/etc/hosts` lists for the host
//! name; else the first `/etc/resolv.conf` search domain under which DNS (the
//! configured servers, else the system's) has an address for the host name. It is
//! worked out on every try, so a host name set late in boot is picked up.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, Cancellation, Cancelled, Config, ConfigError, ConfigKey,
    Context, Error, Resolver, Settings,
};

mod dns;
mod domain;
mod order;

use dns::{Dns, QueryError};

const NAME_KEY: &str = "plugin.provtarget.dns_srv.name";
const SERVERS_KEY: &str = "plugin.provtarget.dns_srv.servers";
const SCHEME_KEY: &str = "plugin.provtarget.dns_srv.scheme";
const DOMAIN_KEY: &str = "plugin.provtarget.dns_srv.domain";
const TIMEOUT_KEY: &str = "plugin.provtarget.dns_srv.timeout";
const FAILOVER_KEY: &str = "plugin.provtarget.dns_srv.failover_after";

const DEFAULT_NAME: &str = "_choria-provisioner._tcp.{domain}";
const DEFAULT_SCHEME: &str = "nats";
const DEFAULT_TIMEOUT: &str = "2s";
const DEFAULT_FAILOVER: &str = "250ms";
const PLACEHOLDER: &str = "{domain}";

/// The most DNS servers accepted in `plugin.provtarget.dns_srv.servers`.
const MAX_SERVERS: usize = 16;
/// The longest query timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves the provisioning brokers from DNS SRV records.
pub struct DnsSrvResolver {
    name: String,
    servers: Vec<SocketAddr>,
    scheme: String,
    domain: Option<String>,
    timeout: Duration,
    /// How long a server has to answer before the next one is asked as well.
    failover_after: Duration,
    dns: Dns,
    /// Servers already reported as failed or slow this run.
    warned: Mutex<HashSet<SocketAddr>>,
}

impl Resolver for DnsSrvResolver {
    const NAME: &'static str = "DNS SRV Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget";
    const DESCRIPTION: &'static str =
        "Provisioning brokers from DNS SRV records (plain DNS or Consul), in RFC 2782 order";

    fn new() -> Result<Self, Error> {
        let timeout = Duration::from_secs(2);
        Ok(DnsSrvResolver {
            name: DEFAULT_NAME.into(),
            servers: Vec::new(),
            scheme: DEFAULT_SCHEME.into(),
            domain: None,
            timeout,
            failover_after: Duration::from_millis(250),
            dns: Dns::new(timeout),
            warned: Mutex::new(HashSet::new()),
        })
    }

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new(
                NAME_KEY,
                DEFAULT_NAME,
                "SRV name to look up; {domain} is replaced by the host's DNS domain",
            ),
            ConfigKey::new(
                SERVERS_KEY,
                "",
                "DNS servers as ip:port, comma separated, asked in order; empty: the nameservers of /etc/resolv.conf",
            ),
            ConfigKey::new(SCHEME_KEY, DEFAULT_SCHEME, "URL scheme put before each target"),
            ConfigKey::new(
                DOMAIN_KEY,
                "",
                "domain for {domain}; empty: from the host name, /etc/hosts, or DNS with the resolv.conf search domains",
            ),
            ConfigKey::new(
                TIMEOUT_KEY,
                DEFAULT_TIMEOUT,
                "how long one query to one DNS server may take",
            ),
            ConfigKey::new(
                FAILOVER_KEY,
                DEFAULT_FAILOVER,
                "how long a DNS server has to answer before the next one is asked too",
            ),
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        self.name = parse_name(config.string(NAME_KEY))?;
        self.servers = parse_servers(&config.list(SERVERS_KEY))?;
        self.scheme = parse_scheme(config.string(SCHEME_KEY))?;
        self.domain = parse_domain(config.string(DOMAIN_KEY))?;
        self.timeout = config.duration(TIMEOUT_KEY)?;
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::new(
                TIMEOUT_KEY,
                config.string(TIMEOUT_KEY),
                "a duration above 0 and at most 60s, such as 500ms or 2s",
            )
            .into());
        }
        // At most the query timeout: a longer head start is the timeout itself.
        self.failover_after = config.duration(FAILOVER_KEY)?.min(self.timeout);
        self.dns = Dns::new(self.timeout);
        ctx.debug(format_args!(
            "looking up SRV {} at {}",
            self.name,
            self.servers_shown()
        ));
        Ok(Settings::new()
            .with(NAME_KEY, &self.name)
            .with(SERVERS_KEY, self.servers_shown())
            .with(SCHEME_KEY, &self.scheme)
            .with(
                DOMAIN_KEY,
                self.domain
                    .as_deref()
                    .unwrap_or("(detected: host name, /etc/hosts, DNS search domains)"),
            )
            .with(TIMEOUT_KEY, format_args!("{}ms", self.timeout.as_millis()))
            .with(
                FAILOVER_KEY,
                format_args!("{}ms", self.failover_after.as_millis()),
            )
            .with(DETECTED_SERVERS, self.detected_servers())
            .with(DETECTED_DOMAIN, self.detected_domain()))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        FIVE_SEC.retry(ctx, |_try| {
            let log = |level: Level, message: String| match level {
                Level::Warn => ctx.warn(message),
                Level::Debug => ctx.debug(message),
                Level::Provenance => ctx.provenance(message),
            };
            match self.resolve(ctx, &log) {
                Ok(targets) => Ok(targets),
                Err(QueryError::Cancelled) => Err(Box::new(Cancelled) as Error),
                Err(QueryError::Failed(why)) => Err(why.into()),
            }
        })
    }
}

/// How loud a line the resolver logs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Warn,
    Debug,
    /// Not a log line: where the answer came from (the host shows it with it).
    Provenance,
}

/// Shown by buildinfo: the DNS servers a try would ask now.
const DETECTED_SERVERS: &str = "plugin.provtarget.dns_srv.detected.servers";
/// Shown by buildinfo: the domain `{domain}` stands for, as far as local files tell.
const DETECTED_DOMAIN: &str = "plugin.provtarget.dns_srv.detected.domain";

impl DnsSrvResolver {
    /// The servers a try would ask now (the system's are read afresh on every try).
    fn detected_servers(&self) -> String {
        match self.servers_now() {
            Ok(servers) => {
                let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
                if self.servers.is_empty() {
                    format!("{} (from /etc/resolv.conf)", list.join(", "))
                } else {
                    format!("{} (set by {SERVERS_KEY})", list.join(", "))
                }
            }
            Err(e) => format!("none: {e}"),
        }
    }

    /// The domain for `{domain}` from the configuration or local files (no DNS query
    /// here; a try also asks DNS under the search domains when the files do not tell).
    fn detected_domain(&self) -> String {
        if !self.name.contains(PLACEHOLDER) {
            return format!("not used: {NAME_KEY} holds no {PLACEHOLDER}");
        }
        if let Some(d) = &self.domain {
            return format!("{d} (set by {DOMAIN_KEY})");
        }
        match domain::from_files(&domain::SYSTEM) {
            Ok(domain::Local::Found(d, source)) => format!("{d} (from {source})"),
            Ok(domain::Local::ShortName(short)) => format!(
                "not known yet: host name {short:?} has no dot and /etc/hosts gives no FQDN for it; each try asks DNS under the /etc/resolv.conf search domains"
            ),
            Err(e) => format!("not known yet: {e}"),
        }
    }

    fn servers_shown(&self) -> String {
        if self.servers.is_empty() {
            "system resolver (/etc/resolv.conf)".into()
        } else {
            self.servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// One try: the SRV name, then the servers in order, each next one asked when the
    /// one before has not answered within the failover delay (or failed), the first
    /// usable answer winning, ordered afresh. A server that failed or was slow while
    /// another answered is logged once per run, at warn.
    fn resolve(
        &self,
        cancel: &dyn Cancellation,
        log: &dyn Fn(Level, String),
    ) -> Result<Vec<String>, QueryError> {
        let name = self.srv_name(cancel, log)?;
        let servers = self.servers_now()?;
        let outcome = self.dns.srv_first(
            &servers,
            &name,
            self.failover_after,
            cancel,
            &mut |server, raw| self.accept(server, &name, raw, log),
        );
        match outcome.answer {
            Ok((server, targets)) => {
                self.warn_slow(log, &outcome.failed, &outcome.silent, server, &name);
                log(
                    Level::Debug,
                    format!("{server} answered for {name}: {}", targets.join(", ")),
                );
                log(Level::Provenance, format!("SRV {name} from {server}"));
                Ok(targets)
            }
            Err(QueryError::Cancelled) => Err(QueryError::Cancelled),
            Err(QueryError::Failed(why)) => {
                let mut causes: Vec<String> = outcome
                    .failed
                    .iter()
                    .map(|(s, why)| format!("{s}: {why}"))
                    .collect();
                if causes.is_empty() {
                    causes.push(why);
                }
                // No server answered at all: the addresses are what to check.
                let unreachable = outcome.failed.iter().all(|(_, why)| {
                    let why = why.to_ascii_lowercase();
                    why.contains("no answer within")
                        || why.contains("timed out")
                        || why.contains("refused")
                        || why.contains("unreachable")
                });
                let fix = if !unreachable || outcome.failed.is_empty() {
                    String::new()
                } else if self.servers.is_empty() {
                    format!(" (no DNS server answered: check the nameserver lines of /etc/resolv.conf, or set {SERVERS_KEY})")
                } else {
                    format!(" (no DNS server answered: check {SERVERS_KEY})")
                };
                Err(QueryError::Failed(format!(
                    "SRV lookup of {name} failed: {}{fix}",
                    causes.join("; ")
                )))
            }
        }
    }

    /// Logs `message` at warn, once per run for `server`.
    fn warn_once(&self, log: &dyn Fn(Level, String), server: SocketAddr, message: String) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(server) {
            log(Level::Warn, message);
        }
    }

    /// The usable records of an answer of `server` for `name`, as `scheme://host:port`
    /// in RFC 2782 order; an answer with none is refused (why).
    fn accept(
        &self,
        server: SocketAddr,
        name: &str,
        raw: Vec<dns::RawSrv>,
        log: &dyn Fn(Level, String),
    ) -> Result<Vec<String>, String> {
        let checked = dns::check_answer(raw)?;
        for why in &checked.refused {
            log(
                Level::Warn,
                format!("ignoring an SRV record of {name} from {server}: {why}"),
            );
        }
        if checked.usable.is_empty() {
            let mut why = format!("no usable SRV records for {name}");
            if checked.not_offered > 0 {
                why.push_str(" (target \".\": the service is not offered there)");
            }
            if !checked.refused.is_empty() {
                why.push_str(&format!(" ({} refused)", checked.refused.len()));
            }
            return Err(why);
        }
        let ordered = order::rfc2782_order(checked.usable, &mut order::random_below);
        Ok(ordered
            .into_iter()
            .map(|t| format!("{}://{}:{}", self.scheme, t.host, t.port))
            .collect())
    }

    /// The configured servers, or the system resolver's, read now.
    fn servers_now(&self) -> Result<Vec<SocketAddr>, QueryError> {
        if !self.servers.is_empty() {
            return Ok(self.servers.clone());
        }
        let (config, _) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
            QueryError::Failed(format!(
                "cannot read the system resolver configuration (/etc/resolv.conf): {e}"
            ))
        })?;
        let mut servers: Vec<SocketAddr> = Vec::new();
        for ns in config.name_servers() {
            let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
            let addr = SocketAddr::new(ns.ip, port);
            if !servers.contains(&addr) {
                servers.push(addr);
            }
        }
        servers.truncate(MAX_SERVERS);
        if servers.is_empty() {
            return Err(QueryError::Failed(format!(
                "no nameserver in /etc/resolv.conf; set {SERVERS_KEY}"
            )));
        }
        Ok(servers)
    }

    /// The SRV name with `{domain}` replaced.
    fn srv_name(
        &self,
        cancel: &dyn Cancellation,
        log: &dyn Fn(Level, String),
    ) -> Result<String, QueryError> {
        if !self.name.contains(PLACEHOLDER) {
            return Ok(self.name.clone());
        }
        let domain = match &self.domain {
            Some(d) => d.clone(),
            None => self.detect_domain(cancel, log)?,
        };
        Ok(self.name.replace(PLACEHOLDER, &domain))
    }

    fn detect_domain(
        &self,
        cancel: &dyn Cancellation,
        log: &dyn Fn(Level, String),
    ) -> Result<String, QueryError> {
        let short = match domain::from_files(&domain::SYSTEM)
            .map_err(|e| QueryError::Failed(format!("{e}; set {DOMAIN_KEY} for {PLACEHOLDER}")))?
        {
            domain::Local::Found(domain, source) => {
                log(
                    Level::Debug,
                    format!("{PLACEHOLDER} is {domain}, from {source}"),
                );
                return Ok(domain);
            }
            domain::Local::ShortName(short) => short,
        };
        self.domain_from_dns(&short, &domain::search_domains(), cancel, log)
    }

    /// The first of `search` under which DNS knows the host `short`, each suffix asked
    /// of the servers with the same head-start failover as the SRV lookup; a server
    /// that failed or was slow while another answered is logged once per run, at warn.
    fn domain_from_dns(
        &self,
        short: &str,
        search: &[String],
        cancel: &dyn Cancellation,
        log: &dyn Fn(Level, String),
    ) -> Result<String, QueryError> {
        let mut failures = Vec::new();
        if !search.is_empty() {
            let servers = self.servers_now()?;
            for suffix in search {
                let fqdn = format!("{short}.{suffix}");
                if dns::check_host_name(&fqdn).is_err() {
                    continue;
                }
                let outcome = self
                    .dns
                    .address_first(&servers, &fqdn, self.failover_after, cancel);
                match outcome.answer {
                    Ok((server, known)) => {
                        self.warn_slow(log, &outcome.failed, &outcome.silent, server, &fqdn);
                        if known {
                            log(
                                Level::Debug,
                                format!("{PLACEHOLDER} is {suffix}: {server} knows {fqdn}"),
                            );
                            return Ok(suffix.clone());
                        }
                    }
                    Err(QueryError::Cancelled) => return Err(QueryError::Cancelled),
                    Err(QueryError::Failed(why)) => {
                        if outcome.failed.is_empty() {
                            failures.push(why);
                        }
                        failures.extend(
                            outcome
                                .failed
                                .iter()
                                .map(|(server, why)| format!("{server}: {why}")),
                        );
                    }
                }
            }
        }
        let dns_part = if search.is_empty() {
            "/etc/resolv.conf lists no search domain".to_string()
        } else {
            let mut s = format!("DNS knows it under none of {}", search.join(", "));
            if !failures.is_empty() {
                s.push_str(&format!(" ({})", failures.join("; ")));
            }
            s
        };
        Err(QueryError::Failed(format!(
            "cannot work out the host's domain for {PLACEHOLDER} in {}: host name {short:?} has no dot, /etc/hosts gives no FQDN for it, and {dns_part}; set {DOMAIN_KEY}",
            self.name
        )))
    }

    /// Warns, once per run each, of the servers that failed or had not answered within
    /// the failover delay when `winner` answered for `name`.
    fn warn_slow(
        &self,
        log: &dyn Fn(Level, String),
        failed: &[(SocketAddr, String)],
        silent: &[SocketAddr],
        winner: SocketAddr,
        name: &str,
    ) {
        for (slow, why) in failed
            .iter()
            .map(|(s, why)| (*s, format!("failed ({why})")))
            .chain(silent.iter().map(|s| {
                (
                    *s,
                    format!(
                        "gave no answer within {} ms ({FAILOVER_KEY})",
                        self.failover_after.as_millis()
                    ),
                )
            }))
        {
            self.warn_once(
                log,
                slow,
                format!("DNS server {slow} {why}; {winner} answered for {name} instead"),
            );
        }
    }
}

/// The SRV name: a DNS name (labels may hold `_`), `{domain}` the only placeholder.
fn parse_name(value: &str) -> Result<String, ConfigError> {
    let value = value.trim().trim_end_matches('.');
    let probe = value.replace(PLACEHOLDER, "example.net");
    let ok = !probe.contains(['{', '}']) && dns::check_dns_name(&probe, true).is_ok();
    if !ok {
        let why = if probe.contains(['{', '}']) {
            "{domain} is the only placeholder".to_string()
        } else {
            dns::check_dns_name(&probe, true).unwrap_err()
        };
        return Err(ConfigError::new(
            NAME_KEY,
            value,
            &format!(
                "a DNS name such as {DEFAULT_NAME} or choria-provisioner.service.consul ({why})"
            ),
        ));
    }
    Ok(value.to_ascii_lowercase().replace("{DOMAIN}", PLACEHOLDER))
}

/// `ip:port`, `[v6]:port`, or a bare IP (port 53), at most [`MAX_SERVERS`].
fn parse_servers(items: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let expected = "DNS servers as ip:port (e.g. 127.0.0.1:8600, [::1]:53), comma separated";
    if items.len() > MAX_SERVERS {
        return Err(ConfigError::new(
            SERVERS_KEY,
            &items.join(", "),
            &format!("at most {MAX_SERVERS} {expected}"),
        ));
    }
    let mut servers = Vec::new();
    for item in items {
        let addr = item
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                item.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .filter(|a| a.port() != 0)
            .ok_or_else(|| ConfigError::new(SERVERS_KEY, item, expected))?;
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    Ok(servers)
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn parse_scheme(value: &str) -> Result<String, ConfigError> {
    let scheme = value.trim().to_ascii_lowercase();
    let ok = scheme.len() <= 32
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !ok {
        return Err(ConfigError::new(
            SCHEME_KEY,
            value,
            "a URL scheme such as nats or tls",
        ));
    }
    Ok(scheme)
}

/// The `{domain}` override: empty (detect) or a DNS name.
fn parse_domain(value: &str) -> Result<Option<String>, ConfigError> {
    let domain = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Ok(None);
    }
    dns::check_dns_name(&domain, true)
        .map_err(|why| ConfigError::new(DOMAIN_KEY, value, &format!("a DNS domain ({why})")))?;
    Ok(Some(domain))
}

export_plugin!(DnsSrvResolver);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::Never;

    #[test]
    fn names_are_checked_and_keep_the_placeholder() {
        assert_eq!(parse_name(DEFAULT_NAME).unwrap(), DEFAULT_NAME);
        assert_eq!(
            parse_name("_Choria-Provisioner._tcp.Example.NET.").unwrap(),
            "_choria-provisioner._tcp.example.net"
        );
        assert_eq!(
            parse_name("choria-provisioner.service.consul").unwrap(),
            "choria-provisioner.service.consul"
        );
        let err = parse_name("_x._tcp.{dc}.example").unwrap_err().to_string();
        assert!(
            err.starts_with("plugin.provtarget.dns_srv.name = \"_x._tcp.{dc}.example\""),
            "{err}"
        );
        assert!(err.contains("the only placeholder"), "{err}");
        let err = parse_name("a..b").unwrap_err().to_string();
        assert!(err.contains("empty label"), "{err}");
        assert!(parse_name("host name.net").is_err());
    }

    #[test]
    fn servers_are_addresses_with_ports() {
        let items = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        };
        assert_eq!(
            parse_servers(&items(
                "127.0.0.1:8600, 10.0.0.1, [::1]:5353, 127.0.0.1:8600"
            ))
            .unwrap(),
            vec![
                "127.0.0.1:8600".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap(),
            ]
        );
        let err = parse_servers(&items("dns.example.net:53"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "plugin.provtarget.dns_srv.servers = \"dns.example.net:53\" is not valid"
            ),
            "{err}"
        );
        assert!(parse_servers(&items("127.0.0.1:0")).is_err());
        assert!(parse_servers(&items("127.0.0.1:70000")).is_err());
        let many: Vec<String> = (1..=17).map(|p| format!("127.0.0.1:{p}")).collect();
        assert!(parse_servers(&many)
            .unwrap_err()
            .to_string()
            .contains("at most 16"));
    }

    #[test]
    fn schemes_and_domains_are_checked() {
        assert_eq!(parse_scheme("TLS").unwrap(), "tls");
        assert_eq!(parse_scheme("nats").unwrap(), "nats");
        assert!(parse_scheme("na ts").is_err());
        assert!(parse_scheme("nats://").is_err());
        assert!(parse_scheme("1nats").is_err());
        assert_eq!(parse_domain("").unwrap(), None);
        assert_eq!(
            parse_domain("Lon1.Example.NET.").unwrap().as_deref(),
            Some("lon1.example.net")
        );
        let err = parse_domain("lon1..example").unwrap_err().to_string();
        assert!(
            err.starts_with("plugin.provtarget.dns_srv.domain ="),
            "{err}"
        );
    }

    #[test]
    fn the_domain_override_fills_the_placeholder_without_any_lookup() {
        let mut r = DnsSrvResolver::new().unwrap();
        r.domain = Some("lon1.example.net".into());
        let name = r.srv_name(&Never, &|_, _| {}).unwrap();
        assert_eq!(name, "_choria-provisioner._tcp.lon1.example.net");
        r.name = "choria-provisioner.service.consul".into();
        r.domain = None;
        assert_eq!(
            r.srv_name(&Never, &|_, _| {}).unwrap(),
            "choria-provisioner.service.consul"
        );
    }

    #[test]
    fn every_server_failing_names_each_cause() {
        // Two UDP sockets that never answer.
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut r = DnsSrvResolver::new().unwrap();
        r.name = "_x._tcp.example.net".into();
        r.servers = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
        r.dns = Dns::new(Duration::from_millis(200));
        let err = r.resolve(&Never, &|_, _| {}).unwrap_err().to_string();
        assert!(
            err.starts_with("SRV lookup of _x._tcp.example.net failed: "),
            "{err}"
        );
        for s in &r.servers {
            assert!(err.contains(&format!("{s}: ")), "{err}");
        }
        assert!(
            err.ends_with(" (no DNS server answered: check plugin.provtarget.dns_srv.servers)"),
            "{err}"
        );
    }

    /// A DNS server on 127.0.0.1 answering every query with one SRV record
    /// (`prov1.example.net:4222`), A queries with 192.0.2.1 and AAAA queries with no
    /// record, on a thread of its own; it stops when dropped.
    /// `start_with(".")` answers "service not offered" instead.
    struct FakeDns {
        addr: SocketAddr,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl FakeDns {
        fn start() -> FakeDns {
            FakeDns::start_with("prov1.example.net.")
        }

        fn start_with(target: &'static str) -> FakeDns {
            use hickory_resolver::proto::{
                op::{Message, MessageType},
                rr::{
                    rdata::{A, SRV},
                    Name, RData, Record, RecordType,
                },
            };
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let addr = socket.local_addr().unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopped = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                    answer.metadata.message_type = MessageType::Response;
                    answer.metadata.recursion_desired = query.metadata.recursion_desired;
                    answer.metadata.recursion_available = true;
                    for q in &query.queries {
                        answer.add_query(q.clone());
                        let rdata = match q.query_type() {
                            RecordType::A => RData::A(A::new(192, 0, 2, 1)),
                            RecordType::AAAA => continue,
                            _ => RData::SRV(SRV::new(
                                10,
                                60,
                                4222,
                                Name::from_ascii(target).unwrap(),
                            )),
                        };
                        answer.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
                    }
                    let _ = socket.send_to(&answer.to_vec().unwrap(), from);
                }
            });
            FakeDns { addr, stop }
        }
    }

    impl Drop for FakeDns {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_silent_first_server_costs_the_failover_delay_not_the_timeout_and_is_named_once() {
        let good = FakeDns::start();
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let servers = format!("{silent_addr}, {}", good.addr);
        let host = provtarget_abi::testkit::TestHost::new();
        // A 30 s query timeout: only failover can answer early.
        let (r, settings) = provtarget_abi::testkit::configure::<DnsSrvResolver>(
            &host,
            &[
                (NAME_KEY, "_x._tcp.example.net"),
                (SERVERS_KEY, &servers),
                (TIMEOUT_KEY, "30s"),
            ],
        )
        .unwrap();
        assert_eq!(settings.get(FAILOVER_KEY), Some("250ms"));
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let targets = r.targets(&host.context()).unwrap();
            assert_eq!(targets, ["nats://prov1.example.net:4222"]);
        }
        // Liveness only (figures are in BENCHMARKS.md): far below one 30 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        let named: Vec<String> = host
            .lines(provtarget_abi::LogLevel::Warn)
            .into_iter()
            .filter(|l| l.contains(&silent_addr.to_string()))
            .collect();
        assert_eq!(
            named,
            [format!(
                "DNS server {silent_addr} gave no answer within 250 ms (plugin.provtarget.dns_srv.failover_after); {} answered for _x._tcp.example.net instead",
                good.addr
            )],
            "logged once per run, at warn"
        );
    }

    #[test]
    fn domain_detection_fails_over_like_the_srv_lookup_and_names_a_silent_server_once() {
        let good = FakeDns::start();
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let servers = format!("{silent_addr}, {}", good.addr);
        let host = provtarget_abi::testkit::TestHost::new();
        // A 20 s query timeout: only failover can answer early.
        let (r, _) = provtarget_abi::testkit::configure::<DnsSrvResolver>(
            &host,
            &[(SERVERS_KEY, &servers), (TIMEOUT_KEY, "20s")],
        )
        .unwrap();
        let lines = std::cell::RefCell::new(Vec::new());
        let log = |level: Level, line: String| lines.borrow_mut().push((level, line));
        let search = ["lon1.example.net".to_string()];
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let domain = r.domain_from_dns("web1", &search, &Never, &log).unwrap();
            assert_eq!(domain, "lon1.example.net");
        }
        // Liveness only: far below one 20 s timeout (each call used to wait one out).
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        // The silent server was asked first, for the host under the search domain.
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        let query = hickory_resolver::proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            query.queries[0].name().to_ascii().to_ascii_lowercase(),
            "web1.lon1.example.net."
        );
        let warned: Vec<String> = lines
            .borrow()
            .iter()
            .filter(|(level, _)| *level == Level::Warn)
            .map(|(_, line)| line.clone())
            .collect();
        assert_eq!(
            warned,
            [format!(
                "DNS server {silent_addr} gave no answer within 250 ms (plugin.provtarget.dns_srv.failover_after); {} answered for web1.lon1.example.net instead",
                good.addr
            )],
            "logged once per run, at warn"
        );
    }

    #[test]
    fn a_first_server_without_usable_records_fails_over_at_once() {
        let good = FakeDns::start();
        let empty = FakeDns::start_with(".");
        let servers = format!("{}, {}", empty.addr, good.addr);
        let host = provtarget_abi::testkit::TestHost::new();
        // The failover delay is long: only an immediate failover answers early.
        let (r, _) = provtarget_abi::testkit::configure::<DnsSrvResolver>(
            &host,
            &[
                (NAME_KEY, "_x._tcp.example.net"),
                (SERVERS_KEY, &servers),
                (TIMEOUT_KEY, "30s"),
                (FAILOVER_KEY, "30s"),
            ],
        )
        .unwrap();
        let started = std::time::Instant::now();
        let ctx = host.context();
        assert_eq!(r.targets(&ctx).unwrap(), ["nats://prov1.example.net:4222"]);
        assert_eq!(
            ctx.provenance_given(),
            Some(format!("SRV _x._tcp.example.net from {}", good.addr))
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            host.lines(provtarget_abi::LogLevel::Warn),
            [format!(
                "DNS server {} failed (no usable SRV records for _x._tcp.example.net (target \".\": the service is not offered there)); {} answered for _x._tcp.example.net instead",
                empty.addr, good.addr
            )]
        );
    }

    #[test]
    fn the_failover_delay_is_at_most_the_timeout() {
        let host = provtarget_abi::testkit::TestHost::new();
        let (_, settings) =
            provtarget_abi::testkit::configure::<DnsSrvResolver>(&host, &[(TIMEOUT_KEY, "200ms")])
                .unwrap();
        assert_eq!(settings.get(FAILOVER_KEY), Some("200ms"));
        let err =
            provtarget_abi::testkit::configure::<DnsSrvResolver>(&host, &[(FAILOVER_KEY, "soon")])
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.starts_with(r#"plugin.provtarget.dns_srv.failover_after = "soon" is not valid"#),
            "{err}"
        );
    }

    #[test]
    fn buildinfo_shows_the_servers_and_domain_detected() {
        let host = provtarget_abi::testkit::TestHost::new();
        let (_, settings) = provtarget_abi::testkit::configure::<DnsSrvResolver>(
            &host,
            &[
                (SERVERS_KEY, "127.0.0.1:8600"),
                (DOMAIN_KEY, "lon1.example.net"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.get(DETECTED_SERVERS),
            Some("127.0.0.1:8600 (set by plugin.provtarget.dns_srv.servers)")
        );
        assert_eq!(
            settings.get(DETECTED_DOMAIN),
            Some("lon1.example.net (set by plugin.provtarget.dns_srv.domain)")
        );
        // From this machine's own files: whatever they say, it says where from.
        let (_, settings) =
            provtarget_abi::testkit::configure::<DnsSrvResolver>(&host, &[]).unwrap();
        let servers = settings.get(DETECTED_SERVERS).unwrap();
        assert!(
            servers.ends_with("(from /etc/resolv.conf)") || servers.starts_with("none: "),
            "{servers}"
        );
        let domain = settings.get(DETECTED_DOMAIN).unwrap();
        assert!(
            domain.ends_with(')') || domain.starts_with("not known yet: "),
            "{domain}"
        );
        let (_, settings) = provtarget_abi::testkit::configure::<DnsSrvResolver>(
            &host,
            &[(NAME_KEY, "choria-provisioner.service.consul")],
        )
        .unwrap();
        assert!(settings
            .get(DETECTED_DOMAIN)
            .unwrap()
            .starts_with("not used"));
    }
}
