//! `etcd Provisioning Target`: provisioning brokers read from an etcd v3 cluster.
//!
//! ```text
//! # /etc/choria/server.conf
//! plugin.provtarget.etcd.endpoints = http://10.0.0.1:2379, http://10.0.0.2:2379, http://10.0.0.3:2379
//! plugin.provtarget.etcd.key = /choria/provisioning/brokers
//! # the key holds ["nats://prov1.example.net:4222", "prov2.example.net:4222"]
//! # or: prov1.example.net:4222, prov2.example.net:4222
//! ```
//!
//! With `plugin.provtarget.etcd.prefix` instead of `.key`, every key under the prefix
//! holds one broker (keys with blank values are skipped, keys with bad values skipped
//! with a warning naming them), in key order. The prefix is a directory: a missing
//! trailing `/` is added. A prefix found empty is watched; after the first write the
//! plugin waits `plugin.provtarget.etcd.settle` (1 s) before reading the list.
//!
//! It speaks etcd's v3 JSON API (etcd 3.4 and later): `POST /v3/kv/range` for the key
//! or prefix and, while nothing is there, a `POST /v3/watch` from the revision it read,
//! so brokers written later arrive at once (a key's new value comes in the watch event
//! itself; a prefix is read again) instead of at the next poll. Members are
//! tried in the configured order starting with the last one that answered; a member
//! that fails (refused, silent, no leader) passes the request to the next. While no
//! member answers it retries with Choria's FiveSec backoff, logging each failed try
//! once with its cause. Every request waits for its answer checking the host's
//! cancellation every 50 ms, and a cancelled request's connection is shut down, so a
//! cancelled call ends within about 100 ms, reporting its last error.
//!
//! Configuration keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.provtarget.etcd.endpoints` | `http://127.0.0.1:2379` | etcd client URLs, comma separated (`http://` or `https://`, port 2379 when absent) |
//! | `plugin.provtarget.etcd.key` | | key holding the broker list (JSON list or comma list) |
//! | `plugin.provtarget.etcd.prefix` | | directory (`/` added) whose keys each hold one broker; set exactly one of `key` and `prefix` |
//! | `plugin.provtarget.etcd.settle` | `1s` | prefix mode: wait after the first key appears before reading the list |
//! | `plugin.provtarget.etcd.username` | | etcd user (auth on): the plugin authenticates and sends the token |
//! | `plugin.provtarget.etcd.password` | | that user's password (masked in buildinfo) |
//! | `plugin.provtarget.etcd.tls_ca` | `/etc/ssl/certs/ca-certificates.crt` | PEM CA bundle for https endpoints |
//! | `plugin.provtarget.etcd.tls_cert` | | PEM client certificate for https endpoints (with `tls_key`) |
//! | `plugin.provtarget.etcd.tls_key` | | PEM private key of `tls_cert` |
//! | `plugin.provtarget.etcd.timeout` | `3s` | connect and per-request timeout for each member |
//! | `plugin.provtarget.etcd.failover_after` | `250ms` | how long a member has to answer a read before the next one is asked as well |
//!
//! https endpoints need the default cargo feature `tls` (rustls with the ring
//! provider); without it they are refused in `configure`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod etcd;
mod http;
mod refusal;
#[cfg(feature = "tls")]
mod tls;
mod values;

use std::{path::Path, time::Duration};

use etcd::{CallError, Client, Query, WatchEnd};
use http::Endpoint;
use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, Cancelled, Config, ConfigError, ConfigKey, Context, Error,
    Resolver, Settings,
};

const ENDPOINTS_KEY: &str = "plugin.provtarget.etcd.endpoints";
const KEY_KEY: &str = "plugin.provtarget.etcd.key";
const PREFIX_KEY: &str = "plugin.provtarget.etcd.prefix";
const USERNAME_KEY: &str = "plugin.provtarget.etcd.username";
const PASSWORD_KEY: &str = "plugin.provtarget.etcd.password";
const TLS_CA_KEY: &str = "plugin.provtarget.etcd.tls_ca";
const TLS_CERT_KEY: &str = "plugin.provtarget.etcd.tls_cert";
const TLS_KEY_KEY: &str = "plugin.provtarget.etcd.tls_key";
const TIMEOUT_KEY: &str = "plugin.provtarget.etcd.timeout";
const SETTLE_KEY: &str = "plugin.provtarget.etcd.settle";
const FAILOVER_KEY: &str = "plugin.provtarget.etcd.failover_after";
const DEFAULT_FAILOVER: &str = "250ms";
const DEFAULT_SETTLE: &str = "1s";
const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:2379";
const DEFAULT_TIMEOUT: &str = "3s";
/// Most members one configuration may list.
const MAX_ENDPOINTS: usize = 32;

/// Reads the provisioning brokers from etcd.
pub struct EtcdResolver {
    client: Option<Client>,
    query: Query,
    /// Prefix mode: the wait after a watch saw the first key, before reading the list.
    settle: Duration,
}

impl Resolver for EtcdResolver {
    const NAME: &'static str = "etcd Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget";
    const DESCRIPTION: &'static str =
        "Provisioning brokers from an etcd v3 key or prefix, watched until written";

    fn new() -> Result<Self, Error> {
        Ok(EtcdResolver {
            client: None,
            query: Query::Key(String::new()),
            settle: Duration::from_secs(1),
        })
    }

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new(
                ENDPOINTS_KEY,
                DEFAULT_ENDPOINTS,
                "etcd client URLs, comma separated; tried in order, failing over",
            ),
            ConfigKey::new(
                KEY_KEY,
                "",
                "key holding the brokers as a JSON list or a comma list (or set prefix)",
            ),
            ConfigKey::new(
                PREFIX_KEY,
                "",
                "prefix whose keys each hold one broker (or set key)",
            ),
            ConfigKey::new(USERNAME_KEY, "", "etcd user when etcd auth is on"),
            ConfigKey::new(PASSWORD_KEY, "", "password of the etcd user"),
            ConfigKey::new(
                TLS_CA_KEY,
                "",
                "PEM CA bundle for https endpoints (unset: /etc/ssl/certs/ca-certificates.crt)",
            ),
            ConfigKey::new(
                TLS_CERT_KEY,
                "",
                "PEM client certificate for https endpoints",
            ),
            ConfigKey::new(TLS_KEY_KEY, "", "PEM private key of the client certificate"),
            ConfigKey::new(
                TIMEOUT_KEY,
                DEFAULT_TIMEOUT,
                "connect and per-request timeout for each etcd member",
            ),
            ConfigKey::new(
                FAILOVER_KEY,
                DEFAULT_FAILOVER,
                "how long a member has to answer a read before the next one is asked as well",
            ),
            ConfigKey::new(
                SETTLE_KEY,
                DEFAULT_SETTLE,
                "prefix mode: how long to wait after the first key appears, so the whole list is read",
            ),
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        let endpoints = endpoints(config)?;
        self.query = query(ctx, config)?;
        let credentials = credentials(config)?;
        let tls_files = TlsFiles::from_config(config)?;
        let tls = tls_files.for_endpoints(ctx, &endpoints)?;
        let timeout = config.duration(TIMEOUT_KEY)?;
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                TIMEOUT_KEY,
                config.string(TIMEOUT_KEY),
                "a duration from 100ms to 60s",
            )
            .into());
        }
        // At most the request timeout: a longer head start is the timeout itself.
        let failover_after = config.duration(FAILOVER_KEY)?.min(timeout);
        self.settle = config.duration(SETTLE_KEY)?;
        if self.settle > Duration::from_secs(60) {
            return Err(ConfigError::new(
                SETTLE_KEY,
                config.string(SETTLE_KEY),
                "a duration from 0 to 60s, such as 1s",
            )
            .into());
        }

        let shown_endpoints: Vec<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
        let shown_endpoints = shown_endpoints.join(",");
        ctx.debug(format_args!(
            "reading {} from etcd at {shown_endpoints}",
            self.query
        ));
        let user = credentials.as_ref().map(|c| c.0.clone());
        let password = credentials.as_ref().map(|c| c.1.clone());
        let client = Client::new(endpoints, credentials, tls, timeout, failover_after);
        // At most a quarter of the host's deadline (configure runs under it too).
        let limit = match config.duration(HOST_TIMEOUT_KEY) {
            Ok(t) if config.is_set(HOST_TIMEOUT_KEY) => (t / 4).min(DETECT_LIMIT),
            _ => DETECT_LIMIT,
        };
        let detected = self.detected_member(ctx, &client, limit);
        self.client = Some(client);

        let mut settings = Settings::new().with(ENDPOINTS_KEY, &shown_endpoints);
        settings = match &self.query {
            Query::Key(k) => settings.with(KEY_KEY, k),
            Query::Prefix(p) => settings
                .with(PREFIX_KEY, p)
                .with(SETTLE_KEY, format_args!("{}ms", self.settle.as_millis())),
        };
        if let (Some(user), Some(password)) = (user, password) {
            settings = settings
                .with(USERNAME_KEY, &user)
                .secret(PASSWORD_KEY, &password);
        }
        Ok(tls_files
            .settings(settings)
            .with(TIMEOUT_KEY, format_args!("{}ms", timeout.as_millis()))
            .with(
                FAILOVER_KEY,
                format_args!("{}ms", failover_after.as_millis()),
            )
            .with(DETECTED_MEMBER, detected))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let client = self
            .client
            .as_ref()
            .ok_or("the etcd resolver was not configured")?;
        FIVE_SEC.retry(ctx, |_try| self.resolve(ctx, client))
    }
}

/// `plugin.provtarget.etcd.endpoints`: 1 to [`MAX_ENDPOINTS`] etcd client URLs.
fn endpoints(config: &Config) -> Result<Vec<Endpoint>, Error> {
    let raw_endpoints = config.string(ENDPOINTS_KEY).to_string();
    let list = config.list(ENDPOINTS_KEY);
    if list.is_empty() || list.len() > MAX_ENDPOINTS {
        return Err(ConfigError::new(
            ENDPOINTS_KEY,
            &raw_endpoints,
            &format!("1 to {MAX_ENDPOINTS} etcd client URLs such as http://10.0.0.1:2379, comma separated"),
        )
        .into());
    }
    let mut endpoints = Vec::new();
    for url in &list {
        let ep = Endpoint::parse(url).map_err(|e| {
            ConfigError::new(
                ENDPOINTS_KEY,
                &raw_endpoints,
                &format!("etcd client URLs such as http://10.0.0.1:2379 ({e})"),
            )
        })?;
        endpoints.push(ep);
    }
    Ok(endpoints)
}

/// Exactly one of `plugin.provtarget.etcd.key` and `.prefix` (a directory: `/` added).
fn query(ctx: &Context<'_>, config: &Config) -> Result<Query, Error> {
    match (config.is_set(KEY_KEY), config.is_set(PREFIX_KEY)) {
        (true, false) => Ok(Query::Key(config.string(KEY_KEY).to_string())),
        (false, true) => {
            // A prefix is a directory: "fleet" must not also match "fleet2/...".
            let mut prefix = config.string(PREFIX_KEY).to_string();
            if !prefix.ends_with('/') {
                prefix.push('/');
                ctx.debug(format_args!(
                    "{PREFIX_KEY}: reading the directory {prefix:?} (a '/' was added)"
                ));
            }
            Ok(Query::Prefix(prefix))
        }
        (both, _) => Err(format!(
            "set exactly one of {KEY_KEY} and {PREFIX_KEY} ({})",
            if both {
                "both are set"
            } else {
                "neither is set"
            }
        )
        .into()),
    }
}

/// `(username, password)`: both set, or neither.
fn credentials(config: &Config) -> Result<Option<(String, String)>, Error> {
    let user = config.string(USERNAME_KEY).to_string();
    let password = config.get(PASSWORD_KEY).unwrap_or("").to_string();
    match (user.is_empty(), password.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((user, password))),
        (true, false) => Err(format!(
            "{PASSWORD_KEY} is set but {USERNAME_KEY} is not: set both or neither"
        )
        .into()),
        (false, true) => Err(ConfigError::new(
            PASSWORD_KEY,
            "",
            &format!("the password of etcd user {user:?} ({USERNAME_KEY})"),
        )
        .into()),
    }
}

/// Shown by buildinfo: the member that answered a read at start-up, and what it held.
const DETECTED_MEMBER: &str = "plugin.provtarget.etcd.detected.member";
/// How long `configure` waits for that read, at most.
const DETECT_LIMIT: Duration = Duration::from_secs(1);
/// The host's deadline for a call (`--timeout`), which `configure` runs under too.
const HOST_TIMEOUT_KEY: &str = "plugin.provtarget.timeout";

impl EtcdResolver {
    /// One read at start-up, bounded by `limit`, for buildinfo: which member
    /// answered, how fast, and what the key or prefix holds.
    fn detected_member(&self, ctx: &Context<'_>, client: &Client, limit: Duration) -> String {
        if limit < Duration::from_millis(50) {
            return format!("not asked at start-up ({HOST_TIMEOUT_KEY} is short)");
        }
        let started = std::time::Instant::now();
        match client.range_until(ctx, &self.query, Some(started + limit)) {
            Ok(range) => {
                let url = &client.endpoints[range.member].url;
                let held = match self.brokers(ctx, &range, url) {
                    Ok(b) if b.is_empty() => {
                        format!("{} holds no brokers yet (each try watches it)", self.query)
                    }
                    Ok(b) => format!("{} holds {} broker(s)", self.query, b.len()),
                    Err(e) => e.to_string(),
                };
                format!(
                    "{url} (answered in {} ms at revision {}; {held})",
                    started.elapsed().as_millis(),
                    range.revision
                )
            }
            Err(CallError::Cancelled) => format!(
                "none answered within {} ms (each try asks again)",
                limit.as_millis()
            ),
            Err(e) => format!("none: {e}"),
        }
    }

    /// One try: range; while nothing is there, watch and range again. Fails when no
    /// member answers, the cluster refuses, or the value is garbage.
    fn resolve(&self, ctx: &Context<'_>, client: &Client) -> Result<Vec<String>, Error> {
        let mut watch_failures = 0;
        loop {
            let range = client.range(ctx, &self.query).map_err(call_error)?;
            let member_url = client.endpoints[range.member].url.clone();
            let found = self.brokers(ctx, &range, &member_url)?;
            if !found.is_empty() {
                ctx.debug(format_args!(
                    "{} brokers from etcd at {member_url}",
                    found.len()
                ));
                ctx.provenance(format_args!(
                    "etcd {} revision {} via {member_url}",
                    self.query, range.revision
                ));
                return Ok(found);
            }
            let absent = match &self.query {
                Query::Key(k) => {
                    format!("etcd key {k:?} at {member_url} is not set or holds no brokers")
                }
                Query::Prefix(p) => format!("no brokers under etcd prefix {p:?} at {member_url}"),
            };
            let query = &self.query;
            let revision = range.revision;
            let on_created = |ep: &Endpoint| {
                ctx.info(format_args!(
                    "{absent} (revision {revision}); watching {query} on {} for it",
                    ep.url
                ))
            };
            match client.watch(ctx, range.member, &self.query, revision + 1, &on_created) {
                Ok(WatchEnd::Put(value)) => {
                    let Query::Key(k) = &self.query else { continue };
                    let source =
                        format!("etcd key {k:?} at {}", client.endpoints[range.member].url);
                    let found = values::parse_value(&value, &source)?;
                    if !found.is_empty() {
                        ctx.debug(format_args!(
                            "{} brokers from the watch on {source}",
                            found.len()
                        ));
                        ctx.provenance(format_args!("watch on {source}"));
                        return Ok(found);
                    }
                }
                Ok(WatchEnd::Changed) if matches!(self.query, Query::Prefix(_)) => {
                    // The first key of a list appeared: let the writer finish the list
                    // before reading it, so the answer is not the first key alone.
                    if !self.settle.is_zero() {
                        ctx.debug(format_args!(
                            "{query} changed on {member_url}; reading it in {} ms ({SETTLE_KEY})",
                            self.settle.as_millis()
                        ));
                        ctx.sleep(self.settle)?;
                    }
                    continue;
                }
                Ok(WatchEnd::Changed) | Ok(WatchEnd::Quiet) => continue,
                // Cancelled while waiting: the answer is that nothing was there.
                Err(CallError::Cancelled) => return Err(absent.into()),
                Err(CallError::Member(e)) => {
                    client.fail_over(range.member);
                    watch_failures += 1;
                    if watch_failures > client.endpoints.len() {
                        return Err(e.into());
                    }
                    ctx.warn(format_args!(
                        "{e}; reading {query} again from the next member"
                    ));
                }
                Err(CallError::Answer(e)) => return Err(e.into()),
            }
        }
    }

    fn brokers(
        &self,
        ctx: &Context<'_>,
        range: &etcd::Range,
        url: &str,
    ) -> Result<Vec<String>, Error> {
        match &self.query {
            Query::Key(k) => match range.kvs.first() {
                None => Ok(Vec::new()),
                Some((_, value)) => Ok(values::parse_value(
                    value,
                    &format!("etcd key {k:?} at {url}"),
                )?),
            },
            Query::Prefix(p) => {
                if range.kvs.len() > values::MAX_TARGETS {
                    return Err(format!(
                        "etcd prefix {p:?} at {url} holds more than {} keys",
                        values::MAX_TARGETS
                    )
                    .into());
                }
                let mut found = Vec::new();
                for (key, value) in &range.kvs {
                    match values::parse_single(
                        value,
                        &format!("etcd key {key:?} (prefix {p:?}) at {url}"),
                    ) {
                        Ok(Some(t)) => found.push(t),
                        Ok(None) => {}
                        // One bad value must not hide the others: skip it, naming the key.
                        Err(why) => ctx.warn(format_args!("{why}; skipping that key")),
                    }
                }
                Ok(found)
            }
        }
    }
}

fn call_error(e: CallError) -> Error {
    match e {
        CallError::Cancelled => Box::new(Cancelled),
        CallError::Member(e) | CallError::Answer(e) => e.into(),
    }
}

/// The TLS files as configured (empty = not set).
struct TlsFiles {
    ca: String,
    cert: String,
    key: String,
}

impl TlsFiles {
    /// The configured files, each checked to be readable.
    fn from_config(config: &Config) -> Result<TlsFiles, Error> {
        let files = TlsFiles {
            ca: config.string(TLS_CA_KEY).to_string(),
            cert: config.string(TLS_CERT_KEY).to_string(),
            key: config.string(TLS_KEY_KEY).to_string(),
        };
        files.check()?;
        Ok(files)
    }

    /// The TLS settings when an endpoint is https:// (warning when the files are set
    /// but no endpoint is).
    fn for_endpoints(
        &self,
        ctx: &Context<'_>,
        endpoints: &[Endpoint],
    ) -> Result<Option<crate::http::TlsSettings>, Error> {
        if endpoints.iter().any(|e| e.tls) {
            return Ok(Some(self.wrapper()?));
        }
        if self.any() {
            ctx.warn(format_args!(
                "{TLS_CA_KEY}/{TLS_CERT_KEY}/{TLS_KEY_KEY} are set but no endpoint in {ENDPOINTS_KEY} is https://; they are not used"
            ));
        }
        Ok(None)
    }

    /// `settings` with the files that are set.
    fn settings(&self, mut settings: Settings) -> Settings {
        for (k, v) in [
            (TLS_CA_KEY, &self.ca),
            (TLS_CERT_KEY, &self.cert),
            (TLS_KEY_KEY, &self.key),
        ] {
            if !v.is_empty() {
                settings = settings.with(k, v);
            }
        }
        settings
    }

    fn any(&self) -> bool {
        !(self.ca.is_empty() && self.cert.is_empty() && self.key.is_empty())
    }

    /// Each set file must be readable; cert and key go together.
    fn check(&self) -> Result<(), Error> {
        for (k, v) in [
            (TLS_CA_KEY, &self.ca),
            (TLS_CERT_KEY, &self.cert),
            (TLS_KEY_KEY, &self.key),
        ] {
            if !v.is_empty() {
                std::fs::File::open(Path::new(v))
                    .map_err(|e| ConfigError::new(k, v, &format!("a readable PEM file ({e})")))?;
            }
        }
        if self.cert.is_empty() != self.key.is_empty() {
            return Err(format!("set both {TLS_CERT_KEY} and {TLS_KEY_KEY}, or neither").into());
        }
        Ok(())
    }

    #[cfg(feature = "tls")]
    fn wrapper(&self) -> Result<crate::http::TlsSettings, Error> {
        tls::config(&self.ca, &self.cert, &self.key)
    }

    #[cfg(not(feature = "tls"))]
    fn wrapper(&self) -> Result<crate::http::TlsSettings, Error> {
        Err(ConfigError::new(
            ENDPOINTS_KEY,
            "https://…",
            "http:// URLs: this build of the etcd plugin has no TLS support (cargo feature \"tls\")",
        )
        .into())
    }
}

export_plugin!(EtcdResolver);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_have_the_plugin_prefix() {
        for k in EtcdResolver::config_keys() {
            assert!(k.key.starts_with("plugin.provtarget.etcd."), "{}", k.key);
            assert!(!k.description.is_empty());
        }
    }

    #[test]
    fn tls_files_go_together() {
        let none = TlsFiles {
            ca: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        assert!(!none.any() && none.check().is_ok());
        let missing = TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: String::new(),
            key: String::new(),
        };
        let e = missing.check().unwrap_err().to_string();
        assert!(e.contains(TLS_CA_KEY), "{e}");
        let half = TlsFiles {
            ca: String::new(),
            cert: "/dev/null".into(),
            key: String::new(),
        };
        let e = half.check().unwrap_err().to_string();
        assert!(e.contains(TLS_CERT_KEY) && e.contains(TLS_KEY_KEY), "{e}");
    }

    #[test]
    fn a_prefix_is_a_directory_and_bad_values_are_skipped_naming_the_key() {
        use provtarget_abi::{testkit, LogLevel};
        let host = testkit::TestHost::new();
        let (r, settings) = testkit::configure::<EtcdResolver>(
            &host,
            &[
                (PREFIX_KEY, "fleet"),
                (ENDPOINTS_KEY, "http://127.0.0.1:2379"),
            ],
        )
        .unwrap();
        assert_eq!(r.query, Query::Prefix("fleet/".into()));
        assert_eq!(settings.get(PREFIX_KEY), Some("fleet/"));
        assert_eq!(settings.get(SETTLE_KEY), Some("1000ms"));
        let (r2, _) = testkit::configure::<EtcdResolver>(&host, &[(PREFIX_KEY, "fleet/")]).unwrap();
        assert_eq!(r2.query, Query::Prefix("fleet/".into()));

        let range = etcd::Range {
            kvs: vec![
                ("fleet/a".into(), b"a.example:4222".to_vec()),
                ("fleet/b".into(), b"not a broker".to_vec()),
                ("fleet/c".into(), b"  ".to_vec()),
                ("fleet/d".into(), b"nats://d.example:4222".to_vec()),
            ],
            revision: 3,
            member: 0,
        };
        let found = r
            .brokers(&host.context(), &range, "http://127.0.0.1:2379")
            .unwrap();
        assert_eq!(found, ["a.example:4222", "nats://d.example:4222"]);
        assert_eq!(
            host.lines(LogLevel::Warn),
            [
                r#"etcd key "fleet/b" (prefix "fleet/") at http://127.0.0.1:2379 holds "not a broker", which is not a broker address; expected host:port or scheme://host:port; skipping that key"#
            ]
        );
        let err =
            testkit::configure::<EtcdResolver>(&host, &[(PREFIX_KEY, "f/"), (SETTLE_KEY, "2m")])
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.starts_with(r#"plugin.provtarget.etcd.settle = "2m" is not valid"#),
            "{err}"
        );
    }
}
