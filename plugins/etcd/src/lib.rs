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
//! holds one broker (keys with blank values are skipped), in key order.
//!
//! It speaks etcd's v3 JSON API (etcd 3.4 and later): `POST /v3/kv/range` for the key
//! or prefix and, while nothing is there, a `POST /v3/watch` from the revision it read,
//! so brokers written later arrive at once (a key's new value comes in the watch event
//! itself; a prefix is read again) instead of at the next poll. Members are
//! tried in the configured order starting with the last one that answered; a member
//! that fails (refused, silent, no leader) passes the request to the next. While no
//! member answers it retries with Choria's FiveSec backoff, logging each failed try
//! once with its cause. Every read polls the host's cancellation every 50 ms, so a
//! cancelled call ends within about 100 ms, reporting its last error.
//!
//! Configuration keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.provtarget.etcd.endpoints` | `http://127.0.0.1:2379` | etcd client URLs, comma separated (`http://` or `https://`, port 2379 when absent) |
//! | `plugin.provtarget.etcd.key` | | key holding the broker list (JSON list or comma list) |
//! | `plugin.provtarget.etcd.prefix` | | prefix whose keys each hold one broker; set exactly one of `key` and `prefix` |
//! | `plugin.provtarget.etcd.username` | | etcd user (auth on): the plugin authenticates and sends the token |
//! | `plugin.provtarget.etcd.password` | | that user's password (masked in buildinfo) |
//! | `plugin.provtarget.etcd.tls_ca` | `/etc/ssl/certs/ca-certificates.crt` | PEM CA bundle for https endpoints |
//! | `plugin.provtarget.etcd.tls_cert` | | PEM client certificate for https endpoints (with `tls_key`) |
//! | `plugin.provtarget.etcd.tls_key` | | PEM private key of `tls_cert` |
//! | `plugin.provtarget.etcd.timeout` | `3s` | connect and per-request timeout for each member |
//!
//! https endpoints need the default cargo feature `tls` (rustls with the ring
//! provider); without it they are refused in `configure`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod etcd;
mod http;
mod targets;
#[cfg(feature = "tls")]
mod tls;

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
const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:2379";
const DEFAULT_TIMEOUT: &str = "3s";
/// Most members one configuration may list.
const MAX_ENDPOINTS: usize = 32;

/// Reads the provisioning brokers from etcd.
pub struct EtcdResolver {
    client: Option<Client>,
    query: Query,
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
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
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

        self.query = match (config.is_set(KEY_KEY), config.is_set(PREFIX_KEY)) {
            (true, false) => Query::Key(config.string(KEY_KEY).to_string()),
            (false, true) => Query::Prefix(config.string(PREFIX_KEY).to_string()),
            (both, _) => {
                return Err(format!(
                    "set exactly one of {KEY_KEY} and {PREFIX_KEY} ({})",
                    if both {
                        "both are set"
                    } else {
                        "neither is set"
                    }
                )
                .into())
            }
        };

        let user = config.string(USERNAME_KEY).to_string();
        let password = config.get(PASSWORD_KEY).unwrap_or("").to_string();
        let credentials = match (user.is_empty(), password.is_empty()) {
            (true, true) => None,
            (false, false) => Some((user.clone(), password.clone())),
            (true, false) => {
                return Err(format!(
                    "{PASSWORD_KEY} is set but {USERNAME_KEY} is not: set both or neither"
                )
                .into())
            }
            (false, true) => {
                return Err(ConfigError::new(
                    PASSWORD_KEY,
                    "",
                    &format!("the password of etcd user {user:?} ({USERNAME_KEY})"),
                )
                .into())
            }
        };

        let tls_files = TlsFiles {
            ca: config.string(TLS_CA_KEY).to_string(),
            cert: config.string(TLS_CERT_KEY).to_string(),
            key: config.string(TLS_KEY_KEY).to_string(),
        };
        tls_files.check()?;
        let any_https = endpoints.iter().any(|e| e.tls);
        if !any_https && tls_files.any() {
            ctx.warn(format_args!(
                "{TLS_CA_KEY}/{TLS_CERT_KEY}/{TLS_KEY_KEY} are set but no endpoint in {ENDPOINTS_KEY} is https://; they are not used"
            ));
        }
        let tls = if any_https {
            Some(tls_files.wrapper()?)
        } else {
            None
        };

        let timeout = config.duration(TIMEOUT_KEY)?;
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                TIMEOUT_KEY,
                config.string(TIMEOUT_KEY),
                "a duration from 100ms to 60s",
            )
            .into());
        }

        let shown_endpoints: Vec<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
        let shown_endpoints = shown_endpoints.join(",");
        ctx.debug(format_args!(
            "reading {} from etcd at {shown_endpoints}",
            self.query
        ));
        self.client = Some(Client::new(endpoints, credentials, tls, timeout));

        let mut settings = Settings::new().with(ENDPOINTS_KEY, &shown_endpoints);
        settings = match &self.query {
            Query::Key(k) => settings.with(KEY_KEY, k),
            Query::Prefix(p) => settings.with(PREFIX_KEY, p),
        };
        if !user.is_empty() {
            settings = settings
                .with(USERNAME_KEY, &user)
                .secret(PASSWORD_KEY, &password);
        }
        for (k, v) in [
            (TLS_CA_KEY, &tls_files.ca),
            (TLS_CERT_KEY, &tls_files.cert),
            (TLS_KEY_KEY, &tls_files.key),
        ] {
            if !v.is_empty() {
                settings = settings.with(k, v);
            }
        }
        Ok(settings.with(TIMEOUT_KEY, format_args!("{}ms", timeout.as_millis())))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let client = self
            .client
            .as_ref()
            .ok_or("the etcd resolver was not configured")?;
        FIVE_SEC.retry(ctx, |_try| self.resolve(ctx, client))
    }
}

impl EtcdResolver {
    /// One try: range; while nothing is there, watch and range again. Fails when no
    /// member answers, the cluster refuses, or the value is garbage.
    fn resolve(&self, ctx: &Context<'_>, client: &Client) -> Result<Vec<String>, Error> {
        let mut watch_failures = 0;
        loop {
            let range = client.range(ctx, &self.query).map_err(call_error)?;
            let member_url = client.endpoints[range.member].url.clone();
            let found = self.brokers(&range, &member_url)?;
            if !found.is_empty() {
                ctx.debug(format_args!(
                    "{} brokers from etcd at {member_url}",
                    found.len()
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
                    let found = targets::parse_value(&value, &source)?;
                    if !found.is_empty() {
                        ctx.debug(format_args!(
                            "{} brokers from the watch on {source}",
                            found.len()
                        ));
                        return Ok(found);
                    }
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

    fn brokers(&self, range: &etcd::Range, url: &str) -> Result<Vec<String>, Error> {
        match &self.query {
            Query::Key(k) => match range.kvs.first() {
                None => Ok(Vec::new()),
                Some((_, value)) => Ok(targets::parse_value(
                    value,
                    &format!("etcd key {k:?} at {url}"),
                )?),
            },
            Query::Prefix(p) => {
                if range.kvs.len() > targets::MAX_TARGETS {
                    return Err(format!(
                        "etcd prefix {p:?} at {url} holds more than {} keys",
                        targets::MAX_TARGETS
                    )
                    .into());
                }
                let mut found = Vec::new();
                for (key, value) in &range.kvs {
                    if let Some(t) = targets::parse_single(
                        value,
                        &format!("etcd key {key:?} (prefix {p:?}) at {url}"),
                    )? {
                        found.push(t);
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
    fn wrapper(&self) -> Result<etcd::TlsWrap, Error> {
        tls::wrapper(&self.ca, &self.cert, &self.key)
    }

    #[cfg(not(feature = "tls"))]
    fn wrapper(&self) -> Result<etcd::TlsWrap, Error> {
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
}
