//! `FQDN Provisioning Target`: derives the provisioning brokers from the host's
//! identity with a regular expression and templates.
//!
//! `web1.lon1.example.net` → `provision.lon1.example.net:4222`, with this in
//! `/etc/choria/server.conf` (these two are also the defaults):
//!
//! ```text
//! plugin.provtarget.fqdn.pattern = ^[^.]+\.(?P<domain>.+)$
//! plugin.provtarget.fqdn.template = provision.${domain}:4222
//! ```
//!
//! Several brokers, one per template (comma separated), from a pattern with several
//! named groups:
//!
//! ```text
//! plugin.provtarget.fqdn.pattern = ^(?P<host>[^.]+)\.(?P<dc>[^.]+)\.(?P<domain>.+)$
//! plugin.provtarget.fqdn.template = provision.${dc}.${domain}:4222, tls://backup.${domain}:4223
//! ```
//!
//! # Configuration keys
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.provtarget.fqdn.pattern` | `^[^.]+\.(?P<domain>.+)$` | regular expression ([`regex`] crate syntax) matched against the identity; name its groups `(?P<name>...)` |
//! | `plugin.provtarget.fqdn.template` | `provision.${domain}:4222` | one or more targets, comma separated: `host:port` or `scheme://host:port` with `${name}` (or `${1}`) placeholders naming groups of the pattern; `$$` is a literal `$` |
//! | `plugin.provtarget.fqdn.identity` | (none) | the identity to match instead of the host's own; else Choria's `identity` key; else the rule below |
//! | `plugin.provtarget.fqdn.lookup_timeout` | `5s` | how long one try waits for the DNS step of the rule below; `0` skips that step |
//!
//! `configure` refuses, naming the key: a pattern that does not compile (or compiles
//! to more than 1 MiB), a template with a placeholder naming no group of the pattern,
//! an unbraced `$name`, or one that is not `host:port` or `scheme://host:port` once its
//! placeholders are filled (so the port must be written in the template), and more
//! than 16 templates. The host then disables the resolver and `provtarget buildinfo`
//! shows why.
//!
//! # The identity
//!
//! Unless set, the identity is worked out afresh on every try, by Choria's rule: the
//! host name if it has more than one dot; else the name DNS gives the host name's first
//! IPv4 address, unless that is `localhost` or empty; else the host name (Choria asks
//! Puppet's facter in between; provtarget does not). The lookups use the system
//! resolver (`/etc/hosts`, then DNS) on a thread of their own, so a hung DNS server
//! delays a try by at most `lookup_timeout` and never delays cancellation.
//!
//! # Retries
//!
//! An identity the pattern does not match (the host may still be waiting for DHCP or
//! its host name), a placeholder whose group took no part in the match, or a target
//! that is not a valid `host:port` is a failed try: it is logged once with the
//! identity, where it came from and the pattern, and tried again with Choria's
//! FiveSec backoff until it works or the host cancels.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod identity;
mod target;
mod template;

use std::{fmt, time::Duration};

use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, permanent, Cancellation, Config, ConfigError, ConfigKey,
    Context, Error, Resolver, Settings,
};
use regex::{Regex, RegexBuilder};

use identity::{DnsLookup, Identity, Source};
use template::Template;

const PATTERN_KEY: &str = "plugin.provtarget.fqdn.pattern";
const TEMPLATE_KEY: &str = "plugin.provtarget.fqdn.template";
const IDENTITY_KEY: &str = "plugin.provtarget.fqdn.identity";
const LOOKUP_TIMEOUT_KEY: &str = "plugin.provtarget.fqdn.lookup_timeout";
/// Choria's own identity setting, honoured when the plugin's is not set.
const CHORIA_IDENTITY_KEY: &str = "identity";

const DEFAULT_PATTERN: &str = r"^[^.]+\.(?P<domain>.+)$";
const DEFAULT_TEMPLATE: &str = "provision.${domain}:4222";
const DEFAULT_LOOKUP_TIMEOUT: &str = "5s";

/// Compiled patterns larger than this are refused: the plugin lives in the host.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// At most this many templates (targets).
const MAX_TEMPLATES: usize = 16;

/// Resolves the provisioning brokers from the host's identity.
pub struct FqdnResolver {
    plan: Plan,
    /// Reads the host name (tests give a fixed one).
    hostname: fn() -> Result<String, String>,
    dns: DnsLookup,
}

/// What `configure` decided: everything `targets` needs.
#[derive(Debug)]
struct Plan {
    pattern: Regex,
    templates: Vec<Template>,
    /// A configured identity, with the key that set it.
    identity: Option<(String, &'static str)>,
    lookup_timeout: Duration,
}

impl Resolver for FqdnResolver {
    const NAME: &'static str = "FQDN Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget";
    const DESCRIPTION: &'static str =
        "Provisioning brokers derived from the host's identity with a regular expression and templates";

    fn new() -> Result<Self, Error> {
        let defaults = Config::default().with_keys(&Self::config_keys());
        Ok(FqdnResolver {
            plan: Plan::from_config(&defaults)?,
            hostname: identity::hostname,
            dns: DnsLookup::system(),
        })
    }

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new(
                PATTERN_KEY,
                DEFAULT_PATTERN,
                "regular expression matched against the identity; name its groups (?P<name>...)",
            ),
            ConfigKey::new(
                TEMPLATE_KEY,
                DEFAULT_TEMPLATE,
                "targets, comma separated: host:port or scheme://host:port with ${name} placeholders naming groups of the pattern",
            ),
            ConfigKey::new(
                IDENTITY_KEY,
                "",
                "identity to match instead of the host's (else Choria's identity key, else host name, then DNS)",
            ),
            ConfigKey::new(
                LOOKUP_TIMEOUT_KEY,
                DEFAULT_LOOKUP_TIMEOUT,
                "how long one try waits for the DNS name of a short host name; 0 skips DNS",
            ),
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        self.plan = Plan::from_config(config)?;
        let plan = &self.plan;
        ctx.debug(format!(
            "matching {} against {:?} for {} template(s)",
            plan.identity_shown(),
            plan.pattern.as_str(),
            plan.templates.len()
        ));
        let (identity, targets) = self.detect();
        Ok(Settings::new()
            .with(PATTERN_KEY, plan.pattern.as_str())
            .with(TEMPLATE_KEY, plan.templates_shown())
            .with(IDENTITY_KEY, plan.identity_shown())
            .with(LOOKUP_TIMEOUT_KEY, format!("{:?}", plan.lookup_timeout))
            .with(DETECTED_IDENTITY, identity)
            .with(DETECTED_TARGETS, targets))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let (identity, targets) = self.resolve(ctx)?;
        ctx.info(format!(
            "identity {:?} ({}) gave {} target(s)",
            identity.name,
            identity.source,
            targets.len()
        ));
        let templates: Vec<&str> = self.plan.templates.iter().map(|t| t.source()).collect();
        ctx.provenance(format_args!(
            "template {} over identity {} ({})",
            templates.join(", "),
            identity.name,
            identity.source
        ));
        Ok(targets)
    }
}

/// Shown by buildinfo: the identity the first try would use, and where it came from.
const DETECTED_IDENTITY: &str = "plugin.provtarget.fqdn.detected.identity";
/// Shown by buildinfo: the targets the first try would return, or why none.
const DETECTED_TARGETS: &str = "plugin.provtarget.fqdn.detected.targets";
impl FqdnResolver {
    /// What one try would find now, for buildinfo: the identity (with where it came
    /// from) and the targets (or why none). No DNS query here (`configure` must stay
    /// quick): when Choria's rule needs DNS, it says so; `targets` works it all out
    /// afresh on every try.
    fn detect(&self) -> (String, String) {
        let not_yet = || "not known yet".to_string();
        let identity = match &self.plan.identity {
            Some((name, key)) => Identity {
                name: name.clone(),
                source: Source::Configured(key),
            },
            None => match (self.hostname)() {
                Err(e) => return (format!("not known yet: {e}"), not_yet()),
                Ok(hostname) => match identity::choose(&hostname, |_| Err(provtarget_abi::Cancelled)) {
                    Ok(identity) => identity,
                    Err(_) => {
                        return (
                            format!(
                                "not known yet: host name {:?} has at most one dot, so each try asks DNS for its name (Choria's rule)",
                                hostname.trim()
                            ),
                            not_yet(),
                        )
                    }
                },
            },
        };
        let targets = match self.plan.expand(&identity) {
            Ok(t) => t.join(", "),
            Err(e) => format!("none: {e}"),
        };
        (format!("{} ({})", identity.name, identity.source), targets)
    }

    /// Choria's FiveSec backoff until the identity matches or `cancel` is cancelled;
    /// each failed try is reported once (a host context logs it), and the last one's
    /// error travels in the cancellation error.
    fn resolve<C: Cancellation + ?Sized>(
        &self,
        cancel: &C,
    ) -> Result<(Identity, Vec<String>), Error> {
        FIVE_SEC.retry(cancel, |_try| {
            let identity = self.identity(cancel)?;
            match self.plan.expand(&identity) {
                Ok(targets) => Ok((identity, targets)),
                // A configured identity cannot change by waiting: no retry helps, so
                // the host hears of it at once.
                Err(e) if matches!(identity.source, Source::Configured(_)) => Err(permanent(e)),
                Err(e) => Err(e),
            }
        })
    }

    /// The configured identity, else Choria's rule (with a cancellable DNS step).
    fn identity<C: Cancellation + ?Sized>(&self, cancel: &C) -> Result<Identity, Error> {
        if let Some((name, key)) = &self.plan.identity {
            return Ok(Identity {
                name: name.clone(),
                source: Source::Configured(key),
            });
        }
        let hostname = (self.hostname)()?;
        let identity = identity::choose(&hostname, |h| {
            self.dns.name_of(cancel, h, self.plan.lookup_timeout)
        })?;
        if identity.name.is_empty() {
            return Err(format!(
                "cannot work out the identity ({}); set {IDENTITY_KEY}",
                identity.source
            )
            .into());
        }
        Ok(identity)
    }
}

impl Plan {
    /// Reads and checks every key; errors name the key.
    fn from_config(config: &Config) -> Result<Plan, Error> {
        let source = config.string(PATTERN_KEY);
        let pattern = RegexBuilder::new(source)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                ConfigError::new(
                    PATTERN_KEY,
                    source,
                    &format!(
                        "a regular expression with named groups such as {DEFAULT_PATTERN} ({})",
                        regex_reason(&e)
                    ),
                )
            })?;

        let sources = config.list(TEMPLATE_KEY);
        if sources.is_empty() || sources.len() > MAX_TEMPLATES {
            return Err(ConfigError::new(
                TEMPLATE_KEY,
                config.string(TEMPLATE_KEY),
                &format!(
                    "1 to {MAX_TEMPLATES} templates, comma separated, e.g. {DEFAULT_TEMPLATE}"
                ),
            )
            .into());
        }
        let mut templates = Vec::with_capacity(sources.len());
        for source in &sources {
            let template = Template::parse(source, &pattern).map_err(|e| {
                ConfigError::new(
                    TEMPLATE_KEY,
                    source,
                    &format!("${{name}} placeholders naming groups of {PATTERN_KEY}; {e}"),
                )
            })?;
            // Every literal part must already make a target: placeholders filled with
            // a plain label, the result is host:port or scheme://host:port.
            target::validate(&template.sample("x")).map_err(|why| {
                ConfigError::new(
                    TEMPLATE_KEY,
                    source,
                    &format!(
                        "host:port or scheme://host:port, with the port written in the template; {why}"
                    ),
                )
            })?;
            templates.push(template);
        }

        let identity = [IDENTITY_KEY, CHORIA_IDENTITY_KEY]
            .into_iter()
            .find(|k| config.is_set(k))
            .map(|k| (config.string(k).to_string(), k));
        let lookup_timeout = config.duration(LOOKUP_TIMEOUT_KEY)?;
        Ok(Plan {
            pattern,
            templates,
            identity,
            lookup_timeout,
        })
    }

    /// The targets for `identity`, in template order, duplicates dropped.
    fn expand(&self, identity: &Identity) -> Result<Vec<String>, Error> {
        let caps = self.pattern.captures(&identity.name).ok_or_else(|| {
            Box::new(ExpandError::NoMatch {
                identity: identity.clone(),
                pattern: self.pattern.as_str().to_string(),
            })
        })?;
        let mut targets: Vec<String> = Vec::with_capacity(self.templates.len());
        for template in &self.templates {
            let target = template.expand(&caps).map_err(|e| {
                Box::new(ExpandError::Template {
                    identity: identity.clone(),
                    template: template.as_str().to_string(),
                    why: e.to_string(),
                })
            })?;
            target::validate(&target).map_err(|why| {
                Box::new(ExpandError::Target {
                    identity: identity.clone(),
                    template: template.as_str().to_string(),
                    target: target.clone(),
                    why,
                })
            })?;
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        Ok(targets)
    }

    fn identity_shown(&self) -> String {
        match &self.identity {
            Some((name, key)) if *key == IDENTITY_KEY => name.clone(),
            Some((name, key)) => format!("{name} (from {key})"),
            None => "host name, else its DNS name (Choria's rule)".into(),
        }
    }

    fn templates_shown(&self) -> String {
        self.templates
            .iter()
            .map(Template::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The one line of a regex error that says what is wrong (its `Display` spans several
/// lines: the pattern, a caret, then `error: ...`).
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(text.trim())
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("it compiles to more than {limit} bytes; simplify it")
        }
        other => other
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Why one try produced no targets.
#[derive(Debug)]
enum ExpandError {
    NoMatch {
        identity: Identity,
        pattern: String,
    },
    Template {
        identity: Identity,
        template: String,
        why: String,
    },
    Target {
        identity: Identity,
        template: String,
        target: String,
        why: String,
    },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::NoMatch { identity, pattern } => match identity.source {
                Source::Configured(key) => write!(
                    f,
                    "identity {:?} ({}) does not match the pattern {pattern} ({PATTERN_KEY}); fix {key} or {PATTERN_KEY}",
                    identity.name, identity.source
                ),
                _ => write!(
                    f,
                    "identity {:?} ({}) does not match the pattern {pattern} ({PATTERN_KEY}); waiting for the host name or DNS to change (or set {IDENTITY_KEY})",
                    identity.name, identity.source
                ),
            },
            ExpandError::Template {
                identity,
                template,
                why,
            } => write!(
                f,
                "{TEMPLATE_KEY} {template:?} cannot be filled from identity {:?} ({}): {why}",
                identity.name, identity.source
            ),
            ExpandError::Target {
                identity,
                template,
                target,
                why,
            } => write!(
                f,
                "{TEMPLATE_KEY} {template:?} made {target:?} from identity {:?} ({}), which is not a valid target: {why}",
                identity.name, identity.source
            ),
        }
    }
}

impl std::error::Error for ExpandError {}

export_plugin!(FqdnResolver);

#[cfg(test)]
mod tests {
    use super::*;
    use provtarget_abi::{
        backoff::GaveUp,
        is_permanent,
        testkit::{self, TestHost},
        LogLevel,
    };
    use std::time::{Duration, Instant};

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_iter(pairs.iter().copied()).with_keys(&FqdnResolver::config_keys())
    }

    fn plan(pairs: &[(&str, &str)]) -> Result<Plan, String> {
        Plan::from_config(&config(pairs)).map_err(|e| e.to_string())
    }

    fn configured(name: &str) -> Identity {
        Identity {
            name: name.into(),
            source: Source::Configured(IDENTITY_KEY),
        }
    }

    fn resolver(pairs: &[(&str, &str)]) -> FqdnResolver {
        FqdnResolver {
            plan: plan(pairs).unwrap(),
            hostname: || Ok("web1".into()),
            dns: DnsLookup::with(|_| Err("no DNS in this test".into())),
        }
    }

    #[test]
    fn the_defaults_map_a_host_to_provision_in_its_domain() {
        let p = plan(&[]).unwrap();
        assert_eq!(
            p.expand(&configured("web1.lon1.example.net")).unwrap(),
            ["provision.lon1.example.net:4222"]
        );
        assert!(p.identity.is_none());
        assert_eq!(p.lookup_timeout, Duration::from_secs(5));
        // A host name with no domain does not match the default pattern.
        let err = p.expand(&configured("web1")).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"identity "web1" (set by plugin.provtarget.fqdn.identity) does not match the pattern ^[^.]+\.(?P<domain>.+)$ (plugin.provtarget.fqdn.pattern); fix plugin.provtarget.fqdn.identity or plugin.provtarget.fqdn.pattern"#
        );
    }

    #[test]
    fn several_templates_give_several_targets_in_order() {
        let p = plan(&[
            (PATTERN_KEY, r"^(?P<host>[^.]+)\.(?P<dc>[^.]+)\.(?P<domain>.+)$"),
            (
                TEMPLATE_KEY,
                "provision.${dc}.${domain}:4222, tls://backup.${domain}:4223,provision.${dc}.${domain}:4222",
            ),
        ])
        .unwrap();
        assert_eq!(
            p.expand(&configured("web1.lon1.example.net")).unwrap(),
            [
                "provision.lon1.example.net:4222",
                "tls://backup.example.net:4223"
            ]
        );
        assert_eq!(
            p.templates_shown(),
            "provision.${dc}.${domain}:4222, tls://backup.${domain}:4223, provision.${dc}.${domain}:4222"
        );
    }

    #[test]
    fn a_bad_pattern_is_refused_naming_the_key() {
        let err = plan(&[(PATTERN_KEY, "^(?P<domain>.+")]).unwrap_err();
        assert!(
            err.starts_with(r#"plugin.provtarget.fqdn.pattern = "^(?P<domain>.+" is not valid: expected a regular expression"#),
            "{err}"
        );
        assert!(err.ends_with("(unclosed group)"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = plan(&[(PATTERN_KEY, r"^(?P<d>\w{1000}){1000}$")]).unwrap_err();
        assert!(err.contains("compiles to more than"), "{err}");
    }

    #[test]
    fn template_errors_name_the_key_and_the_template() {
        let err = plan(&[(TEMPLATE_KEY, "provision.${dom}:4222")]).unwrap_err();
        assert_eq!(
            err,
            r#"plugin.provtarget.fqdn.template = "provision.${dom}:4222" is not valid: expected ${name} placeholders naming groups of plugin.provtarget.fqdn.pattern; ${dom} names no capture group of the pattern (its groups: ${domain})"#
        );
        let err = plan(&[(TEMPLATE_KEY, "provision.${domain}")]).unwrap_err();
        assert!(
            err.starts_with(
                r#"plugin.provtarget.fqdn.template = "provision.${domain}" is not valid"#
            ),
            "{err}"
        );
        assert!(err.contains("missing port"), "{err}");
        let err = plan(&[(TEMPLATE_KEY, "ok.${domain}:4222, provision.$domain:4222")]).unwrap_err();
        assert!(err.contains(r#""provision.$domain:4222""#), "{err}");
        let err = plan(&[(TEMPLATE_KEY, " , ")]).unwrap_err();
        assert!(err.contains("1 to 16 templates"), "{err}");
        let many = vec!["a.${domain}:1"; 17].join(",");
        assert!(plan(&[(TEMPLATE_KEY, &many)])
            .unwrap_err()
            .contains("1 to 16"));
        let err = plan(&[(LOOKUP_TIMEOUT_KEY, "soon")]).unwrap_err();
        assert!(
            err.starts_with("plugin.provtarget.fqdn.lookup_timeout = \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn garbage_from_the_identity_is_refused_naming_its_source() {
        let p = plan(&[]).unwrap();
        let err = p
            .expand(&configured("web1.evil.net/x#"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(r#"plugin.provtarget.fqdn.template "provision.${domain}:4222" made "provision.evil.net/x#:4222" from identity "web1.evil.net/x#" (set by plugin.provtarget.fqdn.identity), which is not a valid target: "#),
            "{err}"
        );
        let p = plan(&[
            (PATTERN_KEY, r"^(?P<host>[^.]+)(\.(?P<domain>.+))?$"),
            (TEMPLATE_KEY, "p.${domain}:4222"),
        ])
        .unwrap();
        let err = p.expand(&configured("web1")).unwrap_err().to_string();
        assert!(err.contains("took no part in the match"), "{err}");
    }

    #[test]
    fn the_identity_comes_from_the_plugin_key_then_choria_identity() {
        let p = plan(&[(CHORIA_IDENTITY_KEY, "a.b.example.net")]).unwrap();
        assert_eq!(p.identity, Some(("a.b.example.net".into(), "identity")));
        assert_eq!(p.identity_shown(), "a.b.example.net (from identity)");
        let p = plan(&[
            (CHORIA_IDENTITY_KEY, "a.b.example.net"),
            (IDENTITY_KEY, " web1.lon1.example.net "),
        ])
        .unwrap();
        assert_eq!(
            p.identity,
            Some(("web1.lon1.example.net".into(), IDENTITY_KEY))
        );
        assert_eq!(
            plan(&[]).unwrap().identity_shown(),
            "host name, else its DNS name (Choria's rule)"
        );
    }

    #[test]
    fn a_configured_identity_that_does_not_match_is_not_retried() {
        // Through the SDK's test kit, as the host would: configure, then targets.
        for key in [IDENTITY_KEY, CHORIA_IDENTITY_KEY] {
            // Without the permanent mark this would retry: cancel after 5 sleeps.
            let host = TestHost::new().instant_sleeps().cancel_after_sleeps(5);
            let (r, settings) =
                testkit::configure::<FqdnResolver>(&host, &[(key, "web1")]).unwrap();
            assert!(settings.get(IDENTITY_KEY).unwrap().starts_with("web1"));
            let err = r.targets(&host.context()).unwrap_err();
            assert!(is_permanent(&*err), "{err}");
            assert!(err.downcast_ref::<GaveUp>().is_none(), "{err}");
            assert_eq!(
                err.to_string(),
                format!(
                    r#"identity "web1" (set by {key}) does not match the pattern ^[^.]+\.(?P<domain>.+)$ (plugin.provtarget.fqdn.pattern); fix {key} or plugin.provtarget.fqdn.pattern"#
                )
            );
            assert!(host.sleeps().is_empty(), "no retry: {:?}", host.sleeps());
            assert!(host.lines(LogLevel::Warn).is_empty());
        }

        // A configured identity whose template fills to garbage: permanent too.
        let host = TestHost::new().instant_sleeps().cancel_after_sleeps(5);
        let (r, _) =
            testkit::configure::<FqdnResolver>(&host, &[(IDENTITY_KEY, "web1.evil.net/x#")])
                .unwrap();
        let err = r.targets(&host.context()).unwrap_err();
        assert!(is_permanent(&*err), "{err}");

        let host = TestHost::new();
        let (r, _) =
            testkit::configure::<FqdnResolver>(&host, &[(IDENTITY_KEY, "web1.lon1.example.net")])
                .unwrap();
        assert_eq!(
            r.targets(&host.context()).unwrap(),
            ["provision.lon1.example.net:4222"]
        );
        assert_eq!(
            host.lines(LogLevel::Info),
            [
                r#"identity "web1.lon1.example.net" (set by plugin.provtarget.fqdn.identity) gave 1 target(s)"#
            ]
        );
    }

    #[test]
    fn a_host_name_that_does_not_match_is_retried_until_cancelled_keeping_the_error() {
        let r = resolver(&[]);
        let host = TestHost::new().instant_sleeps().cancel_after_sleeps(3);
        let err = r.targets(&host.context()).unwrap_err();
        let gave_up = err.downcast_ref::<GaveUp>().expect("GaveUp");
        assert_eq!(gave_up.tries, 3);
        assert!(!is_permanent(&*err));
        let last = gave_up.last_error.as_deref().unwrap();
        assert!(
            last.starts_with(r#"identity "web1" (the host name; no DNS name was used: no DNS in this test) does not match"#),
            "{last}"
        );
        assert!(last.ends_with("waiting for the host name or DNS to change (or set plugin.provtarget.fqdn.identity)"), "{last}");
        assert_eq!(host.lines(LogLevel::Warn).len(), 3);
    }

    #[test]
    fn configure_refuses_a_bad_template_through_the_test_kit() {
        let host = TestHost::new();
        let err = testkit::configure::<FqdnResolver>(&host, &[(TEMPLATE_KEY, "p.${dom}:1")])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.starts_with(r#"plugin.provtarget.fqdn.template = "p.${dom}:1" is not valid"#),
            "{err}"
        );
    }

    #[test]
    fn without_a_configured_identity_the_rule_applies_on_every_try() {
        // Host name "web1", DNS failing: the short host name, which does not match.
        let r = resolver(&[]);
        let err = r
            .resolve(
                &TestHost::new()
                    .instant_sleeps()
                    .cancel_after_sleeps(1)
                    .context(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(r#"last error: identity "web1" (the host name; no DNS name was used: no DNS in this test) does not match the pattern ^[^.]+\.(?P<domain>.+)$ (plugin.provtarget.fqdn.pattern); waiting for the host name or DNS to change (or set plugin.provtarget.fqdn.identity)"#),
            "{err}"
        );
        // DNS names the host: its name is the identity.
        let r = FqdnResolver {
            dns: DnsLookup::with(|h| Ok(format!("{h}.par3.example.net."))),
            ..resolver(&[])
        };
        let (id, targets) = r
            .resolve(
                &TestHost::new()
                    .instant_sleeps()
                    .cancel_after_sleeps(1)
                    .context(),
            )
            .unwrap();
        assert_eq!(id.source, Source::Dns("web1".into()));
        assert_eq!(targets, ["provision.par3.example.net:4222"]);
        // A long host name is used as it is, DNS not asked.
        let r = FqdnResolver {
            hostname: || Ok("db2.ams1.example.org".into()),
            dns: DnsLookup::with(|_| panic!("DNS asked")),
            ..resolver(&[])
        };
        let (_, targets) = r
            .resolve(
                &TestHost::new()
                    .instant_sleeps()
                    .cancel_after_sleeps(1)
                    .context(),
            )
            .unwrap();
        assert_eq!(targets, ["provision.ams1.example.org:4222"]);
        // No host name at all: says so and how to fix it.
        let r = FqdnResolver {
            hostname: || Ok(String::new()),
            ..resolver(&[])
        };
        let err = r
            .resolve(
                &TestHost::new()
                    .instant_sleeps()
                    .cancel_after_sleeps(1)
                    .context(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot work out the identity (the host name; no DNS name was used: the host name is empty); set plugin.provtarget.fqdn.identity"), "{err}");
    }

    static HUNG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    #[test]
    fn cancellation_ends_a_try_stuck_in_dns() {
        // A short host name, so the rule asks DNS, which hangs.
        let r = FqdnResolver {
            plan: plan(&[]).unwrap(),
            hostname: || Ok("web1".into()),
            dns: DnsLookup::with(|_| {
                HUNG.store(true, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(3));
                Err("too late".into())
            }),
        };
        let host = TestHost::new();
        let started = Instant::now();
        host.cancel_after(Duration::from_millis(100));
        let err = r.resolve(&host.context()).unwrap_err();
        // Liveness only: well before the 3 s lookup could end.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(HUNG.load(std::sync::atomic::Ordering::SeqCst));
        let gave_up = err.downcast_ref::<GaveUp>().expect("GaveUp");
        assert_eq!(gave_up.tries, 0, "cancelled inside the first try: {err}");
    }

    #[test]
    fn buildinfo_shows_the_identity_and_targets_detected() {
        let host = TestHost::new();
        let (_, settings) =
            testkit::configure::<FqdnResolver>(&host, &[(IDENTITY_KEY, "web1.lon1.example.net")])
                .unwrap();
        assert_eq!(
            settings.get(DETECTED_IDENTITY),
            Some("web1.lon1.example.net (set by plugin.provtarget.fqdn.identity)")
        );
        assert_eq!(
            settings.get(DETECTED_TARGETS),
            Some("provision.lon1.example.net:4222")
        );
        let (_, settings) =
            testkit::configure::<FqdnResolver>(&host, &[(IDENTITY_KEY, "web1")]).unwrap();
        assert!(settings.get(DETECTED_TARGETS).unwrap().starts_with(
            r#"none: identity "web1" (set by plugin.provtarget.fqdn.identity) does not match"#
        ));
        // Choria's rule, from this machine's own host name.
        let mut r = FqdnResolver {
            hostname: || Ok("db2.ams1.example.org".into()),
            ..resolver(&[])
        };
        let settings = r
            .configure(&host.context(), &testkit::config::<FqdnResolver>(&[]))
            .unwrap();
        assert_eq!(
            settings.get(DETECTED_IDENTITY),
            Some("db2.ams1.example.org (the host name)")
        );
        // A short host name needs DNS: not asked at configure, said so.
        let mut r = FqdnResolver {
            dns: DnsLookup::with(|_| panic!("DNS asked at configure")),
            ..resolver(&[])
        };
        let settings = r
            .configure(&host.context(), &testkit::config::<FqdnResolver>(&[]))
            .unwrap();
        assert_eq!(
            settings.get(DETECTED_IDENTITY),
            Some(
                r#"not known yet: host name "web1" has at most one dot, so each try asks DNS for its name (Choria's rule)"#
            )
        );
    }
}
