//! The built-in `Choria JWT Resolver`: JWT claims, precedence, broker URLs, and SRV
//! lookups against a real DNS server on 127.0.0.1.
//!
//! Logs are captured per thread with a small `tracing` layer; nothing here depends on
//! the machine's DNS configuration, the internet, or timing.

mod dns_support;

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use dns_support::{SrvRecord, TestDns, ZONE};
use provtarget::{
    default_resolver::{BuildDefaults, JwtResolver, NAME, NO_SOURCE_WARNING},
    resolver::{CancelToken, RawTargets, ResolveContext, Settings, TargetResolver},
    servers::servers_from,
};
use provtarget_abi::Config;
use provtarget_testsupport::TempDir;
use tracing::{field::Field, Level};
use tracing_subscriber::{layer::SubscriberExt, Layer};

// ---------------------------------------------------------------- log capture

/// One captured event: level, message, and the `plugin` field if any.
#[derive(Debug, Clone)]
struct Event {
    level: Level,
    target: String,
    message: String,
    plugin: Option<String>,
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Event>>>);

impl Captured {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Events of the resolver (tagged with its name), as `LEVEL message` lines.
    fn lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.plugin.as_deref() == Some(NAME))
            .map(|e| format!("{} {}", e.level, e.message))
            .collect()
    }

    fn has(&self, level: Level, needle: &str) -> bool {
        self.events().iter().any(|e| {
            e.level == level && e.plugin.as_deref() == Some(NAME) && e.message.contains(needle)
        })
    }

    fn count_at_or_above(&self, level: Level) -> usize {
        self.events()
            .iter()
            .filter(|e| e.plugin.as_deref() == Some(NAME) && e.level <= level)
            .count()
    }
}

/// The `plugin` field of a span, kept in its extensions.
struct SpanPlugin(String);

impl<S> Layer<S> for Captured
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Plugin(Option<String>);
        impl tracing::field::Visit for Plugin {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "plugin" {
                    self.0 = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut plugin = Plugin(None);
        attrs.record(&mut plugin);
        if let (Some(name), Some(span)) = (plugin.0, ctx.span(id)) {
            span.extensions_mut().insert(SpanPlugin(name));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Visitor {
            message: String,
            plugin: Option<String>,
        }
        impl tracing::field::Visit for Visitor {
            fn record_str(&mut self, field: &Field, value: &str) {
                match field.name() {
                    "plugin" => self.plugin = Some(value.to_string()),
                    "message" => self.message.push_str(value),
                    _ => {}
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => {
                        let _ = write!(self.message, "{value:?}");
                    }
                    "plugin" => {
                        self.plugin = Some(format!("{value:?}").trim_matches('"').to_string())
                    }
                    _ => {}
                }
            }
        }
        let mut v = Visitor::default();
        event.record(&mut v);
        // An event without its own `plugin` field takes its span's.
        let from_span = || {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<SpanPlugin>().map(|p| p.0.clone()))
        };
        let plugin = v.plugin.or_else(from_span);
        self.0.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: v.message,
            plugin,
        });
    }
}

/// Runs `f` with every `tracing` event of this thread captured.
fn capture<T>(f: impl FnOnce() -> T) -> (T, Captured) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let value = tracing::subscriber::with_default(subscriber, f);
    (value, captured)
}

// ---------------------------------------------------------------- helpers

fn jwt(payload: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS512","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode("not checked")
    )
}

fn config(pairs: &[(&str, &str)]) -> Config {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

fn ctx() -> ResolveContext {
    ResolveContext::new(NAME, CancelToken::new())
}

/// Build defaults naming `jwt_file` and nothing else.
fn defaults(jwt_file: &str) -> BuildDefaults {
    BuildDefaults {
        jwt_file: jwt_file.to_string(),
        broker_urls: None,
        srv_domain: None,
    }
}

fn setting<'a>(settings: &'a Settings, key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Configures a fresh resolver; returns it, its settings and the captured logs.
fn configured(defaults: BuildDefaults, cfg: &[(&str, &str)]) -> (JwtResolver, Settings, Captured) {
    let mut resolver = JwtResolver::new(defaults);
    let (settings, logs) = capture(|| resolver.configure(&ctx(), &config(cfg)));
    let settings = settings.expect("configure never fails");
    (resolver, settings, logs)
}

const FULL_CLAIMS: &str = r#"{
    "cht": "s3cret-token", "chs": true, "chu": "b1.example.net:4222, tls://b2.example.net:4223",
    "chpd": true, "chrd": "/etc/choria/reg.json", "chf": "/etc/choria/facts.json",
    "chusr": "prov", "chpwd": "pw", "extensions": {"site": "lon1"},
    "iss": "choria", "exp": 1
}"#;

// ---------------------------------------------------------------- identity

#[test]
fn name_and_version() {
    let r = JwtResolver::new(BuildDefaults::default());
    assert_eq!(r.name(), "Choria JWT Resolver");
    assert_eq!(r.version(), env!("CARGO_PKG_VERSION"));
}

// ---------------------------------------------------------------- JWT

#[test]
fn a_good_jwt_sets_every_claim_and_its_urls_become_targets() {
    let dir = TempDir::new("jwt-good");
    let file = dir.write("provisioning.jwt", jwt(FULL_CLAIMS) + "\n");
    let path = file.to_str().unwrap();
    let (resolver, settings, logs) = configured(defaults(path), &[]);

    assert_eq!(setting(&settings, "provisioning.jwt_file"), Some(path));
    assert_eq!(setting(&settings, "provisioning.source"), Some("jwt"));
    assert_eq!(
        setting(&settings, "provisioning.token"),
        Some("s3cret-token")
    );
    assert_eq!(setting(&settings, "provisioning.secure"), Some("true"));
    assert_eq!(setting(&settings, "provisioning.default"), Some("true"));
    assert_eq!(
        setting(&settings, "provisioning.broker_urls"),
        Some("b1.example.net:4222,tls://b2.example.net:4223")
    );
    assert_eq!(setting(&settings, "provisioning.srv_domain"), None);
    assert_eq!(
        setting(&settings, "provisioning.registration_data"),
        Some("/etc/choria/reg.json")
    );
    assert_eq!(
        setting(&settings, "provisioning.facts"),
        Some("/etc/choria/facts.json")
    );
    assert_eq!(setting(&settings, "provisioning.broker_user"), Some("prov"));
    assert_eq!(
        setting(&settings, "provisioning.broker_password"),
        Some("pw"),
        "raw: the host masks"
    );
    assert_eq!(
        setting(&settings, "provisioning.extensions"),
        Some(r#"{"site":"lon1"}"#)
    );
    assert_eq!(logs.count_at_or_above(Level::WARN), 0, "{:?}", logs.lines());
    assert!(logs.has(
        Level::INFO,
        &format!("Setting build defaults to those found in {path}")
    ));

    let (targets, _) = capture(|| resolver.targets(&ctx()));
    let targets = targets.unwrap();
    assert_eq!(
        targets,
        ["b1.example.net:4222", "tls://b2.example.net:4223"]
    );
    let servers: Vec<String> = servers_from(NAME, Ok(targets))
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        servers,
        ["nats://b1.example.net:4222", "tls://b2.example.net:4223"]
    );
}

#[test]
fn unset_boolean_claims_are_false() {
    let dir = TempDir::new("jwt-min");
    let file = dir.write("p.jwt", jwt(r#"{"cht":"t","chsrv":"example.net"}"#));
    let (_, settings, _) = configured(defaults(file.to_str().unwrap()), &[]);
    assert_eq!(setting(&settings, "provisioning.secure"), Some("false"));
    assert_eq!(setting(&settings, "provisioning.default"), Some("false"));
    assert_eq!(
        setting(&settings, "provisioning.srv_domain"),
        Some("example.net")
    );
    assert_eq!(setting(&settings, "provisioning.broker_urls"), None);
    assert_eq!(setting(&settings, "provisioning.broker_password"), None);
    assert_eq!(setting(&settings, "provisioning.extensions"), None);
}

/// Configures with a JWT file holding `contents`; asserts that configure succeeded,
/// that no claim was used, and that exactly one error names the file and `reason`.
fn assert_refused(contents: &[u8], reason: &str) {
    let dir = TempDir::new("jwt-bad");
    let file = dir.write("p.jwt", contents);
    let path = file.to_str().unwrap();
    let (resolver, settings, logs) = configured(
        BuildDefaults {
            broker_urls: Some("fallback.example.net:4222".into()),
            ..defaults(path)
        },
        &[],
    );
    let expected = format!(
        "Configuration of the provisioner settings based on JWT file {path} failed: {reason}"
    );
    assert!(
        logs.has(Level::ERROR, &expected),
        "want {expected:?} in {:#?}",
        logs.lines()
    );
    assert_eq!(
        logs.count_at_or_above(Level::ERROR),
        1,
        "{:#?}",
        logs.lines()
    );
    assert_eq!(
        setting(&settings, "provisioning.token"),
        None,
        "a refused JWT gives nothing"
    );
    assert_eq!(
        setting(&settings, "provisioning.source"),
        Some("build defaults")
    );
    // The resolver carries on with the build defaults.
    assert_eq!(
        resolver.targets(&ctx()).unwrap(),
        ["fallback.example.net:4222"]
    );
}

#[test]
fn not_a_jwt_is_logged_and_ignored() {
    assert_refused(
        b"hello world\n",
        "jwt parse error: token contains an invalid number of segments",
    );
    assert_refused(
        b"a.b.c.d",
        "jwt parse error: token contains an invalid number of segments",
    );
}

#[test]
fn bad_base64_is_logged_and_ignored() {
    assert_refused(
        b"e30.!!not*base64!!.sig",
        "jwt parse error: payload is not valid base64url",
    );
}

#[test]
fn bad_json_is_logged_and_ignored() {
    let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(r#"{"cht": "t", "#));
    assert_refused(
        token.as_bytes(),
        "jwt parse error: payload is not valid JSON",
    );
    assert_refused(
        jwt(r#"{"cht":"t","chu":"h:1","chs":"yes"}"#).as_bytes(),
        "jwt parse error: claim chs must be true or false, found a string",
    );
}

#[test]
fn a_binary_file_is_logged_and_ignored() {
    assert_refused(
        &[0xff, 0xfe, 0x00],
        "jwt parse error: the file is not UTF-8 text",
    );
}

#[test]
fn missing_claims_give_choria_texts() {
    assert_refused(jwt(r#"{"chu":"h:4222"}"#).as_bytes(), "no auth token");
    assert_refused(
        jwt(r#"{"cht":"","chu":"h:4222"}"#).as_bytes(),
        "no auth token",
    );
    assert_refused(jwt(r#"{"cht":"t"}"#).as_bytes(), "no srv domain or urls");
    assert_refused(
        jwt(r#"{"cht":"t","chu":"h:4222","chsrv":"example.net"}"#).as_bytes(),
        "both srv domain and URLs supplied",
    );
}

#[test]
fn an_unreadable_jwt_is_logged_and_ignored() {
    let dir = TempDir::new("jwt-dir");
    // A directory where the file should be: refused from its type (not "not found").
    let path = dir.path().to_str().unwrap().to_string();
    let (_, settings, logs) = configured(defaults(&path), &[]);
    let expected = format!("Configuration of the provisioner settings based on JWT file {path} failed: the file is a directory, not a regular file; point plugin.provtarget.jwt_file at");
    assert!(logs.has(Level::ERROR, &expected), "{:#?}", logs.lines());
    assert_eq!(setting(&settings, "provisioning.token"), None);
}

#[test]
fn a_missing_jwt_is_silent() {
    let dir = TempDir::new("jwt-missing");
    let path = dir.path().join("absent.jwt");
    let (_, settings, logs) = configured(defaults(path.to_str().unwrap()), &[]);
    assert_eq!(
        logs.count_at_or_above(Level::INFO),
        0,
        "{:#?}",
        logs.lines()
    );
    assert!(logs.has(Level::DEBUG, "No provisioning JWT at"));
    assert_eq!(setting(&settings, "provisioning.token"), None);
    assert_eq!(setting(&settings, "provisioning.source"), Some("none"));
}

// ---------------------------------------------------------------- precedence

#[test]
fn configuration_keys_override_the_jwt() {
    let dir = TempDir::new("jwt-override");
    let file = dir.write("p.jwt", jwt(r#"{"cht":"t","chsrv":"jwt.example.net"}"#));
    let path = file.to_str().unwrap();

    let (resolver, settings, _) = configured(
        defaults(path),
        &[(
            "plugin.provtarget.broker_urls",
            " c1.example.net:4222 ,, c2.example.net:4222 ",
        )],
    );
    assert_eq!(
        setting(&settings, "provisioning.source"),
        Some("configuration")
    );
    assert_eq!(
        setting(&settings, "provisioning.broker_urls"),
        Some("c1.example.net:4222,c2.example.net:4222")
    );
    assert_eq!(setting(&settings, "provisioning.srv_domain"), None);
    assert_eq!(
        setting(&settings, "provisioning.token"),
        Some("t"),
        "other claims still apply"
    );
    assert_eq!(
        resolver.targets(&ctx()).unwrap(),
        ["c1.example.net:4222", "c2.example.net:4222"]
    );

    // A configured SRV domain replaces the JWT's URLs, not just its SRV domain.
    let file = dir.write("u.jwt", jwt(r#"{"cht":"t","chu":"jwt.example.net:4222"}"#));
    let (_, settings, _) = configured(
        defaults(file.to_str().unwrap()),
        &[("plugin.provtarget.srv_domain", "cfg.example.net")],
    );
    assert_eq!(
        setting(&settings, "provisioning.srv_domain"),
        Some("cfg.example.net")
    );
    assert_eq!(setting(&settings, "provisioning.broker_urls"), None);
}

#[test]
fn the_jwt_overrides_build_defaults() {
    let dir = TempDir::new("jwt-over-defaults");
    let file = dir.write("p.jwt", jwt(r#"{"cht":"t","chu":"jwt.example.net:4222"}"#));
    let (resolver, settings, _) = configured(
        BuildDefaults {
            jwt_file: file.to_str().unwrap().into(),
            broker_urls: None,
            srv_domain: Some("packager.example.net".into()),
        },
        &[],
    );
    assert_eq!(setting(&settings, "provisioning.source"), Some("jwt"));
    assert_eq!(resolver.targets(&ctx()).unwrap(), ["jwt.example.net:4222"]);
}

#[test]
fn the_configured_jwt_path_overrides_the_build_default() {
    let dir = TempDir::new("jwt-path");
    let file = dir.write("elsewhere.jwt", jwt(r#"{"cht":"cfg","chu":"h:1"}"#));
    let (_, settings, _) = configured(
        defaults("/nonexistent/provisioning.jwt"),
        &[("plugin.provtarget.jwt_file", file.to_str().unwrap())],
    );
    assert_eq!(setting(&settings, "provisioning.jwt_file"), file.to_str());
    assert_eq!(setting(&settings, "provisioning.token"), Some("cfg"));
}

#[test]
fn an_empty_jwt_path_disables_the_jwt() {
    let dir = TempDir::new("jwt-disabled");
    let file = dir.write("p.jwt", jwt(FULL_CLAIMS));
    let (_, settings, logs) = configured(
        defaults(file.to_str().unwrap()),
        &[("plugin.provtarget.jwt_file", "")],
    );
    assert_eq!(setting(&settings, "provisioning.token"), None);
    assert_eq!(setting(&settings, "provisioning.source"), Some("none"));
    assert_eq!(
        logs.count_at_or_above(Level::INFO),
        0,
        "{:#?}",
        logs.lines()
    );
}

#[test]
fn build_defaults_apply_before_and_without_configure() {
    let d = BuildDefaults {
        jwt_file: "/nonexistent/p.jwt".into(),
        broker_urls: Some("pkg1.example.net:4222,pkg2.example.net:4222".into()),
        srv_domain: None,
    };
    let resolver = JwtResolver::new(d.clone());
    assert_eq!(
        resolver.targets(&ctx()).unwrap(),
        ["pkg1.example.net:4222", "pkg2.example.net:4222"]
    );
    let (resolver, settings, _) = configured(d, &[]);
    assert_eq!(
        setting(&settings, "provisioning.source"),
        Some("build defaults")
    );
    assert_eq!(resolver.targets(&ctx()).unwrap().len(), 2);
}

#[test]
fn both_configured_urls_and_srv_domain_warn_and_use_the_urls() {
    let (resolver, _, logs) = configured(
        defaults("/nonexistent/p.jwt"),
        &[
            ("plugin.provtarget.broker_urls", "u.example.net:4222"),
            ("plugin.provtarget.srv_domain", "example.net"),
        ],
    );
    assert!(
        logs.has(Level::WARN, "ignoring SRV domain example.net"),
        "{:#?}",
        logs.lines()
    );
    assert_eq!(resolver.targets(&ctx()).unwrap(), ["u.example.net:4222"]);
}

#[test]
fn an_invalid_dns_server_is_logged_and_ignored() {
    let (_, settings, logs) = configured(
        defaults("/nonexistent/p.jwt"),
        &[("plugin.provtarget.dns_server", "dns.example.net")],
    );
    assert!(logs.has(
        Level::ERROR,
        "ignoring plugin.provtarget.dns_server = \"dns.example.net\""
    ));
    assert_eq!(setting(&settings, "provisioning.dns_server"), None);
}

#[test]
fn nothing_configured_warns_and_returns_no_targets() {
    let (resolver, settings, _) = configured(defaults("/nonexistent/p.jwt"), &[]);
    assert_eq!(setting(&settings, "provisioning.source"), Some("none"));
    let (targets, logs) = capture(|| resolver.targets(&ctx()));
    assert_eq!(targets, Ok(RawTargets::default()));
    assert_eq!(
        logs.lines(),
        ["WARN Neither provisioning broker url or provisioning SRV domain is set, cannot continue"]
    );
    assert_eq!(
        NO_SOURCE_WARNING,
        "Neither provisioning broker url or provisioning SRV domain is set, cannot continue"
    );
    assert_eq!(
        servers_from(NAME, targets).unwrap_err(),
        "provisioning target plugin Choria JWT Resolver returned no servers"
    );
}

// ---------------------------------------------------------------- SRV

fn srv_dns() -> TestDns {
    let owner = "_choria-provisioner._tcp";
    TestDns::start(&[
        SrvRecord {
            owner,
            priority: 20,
            weight: 0,
            port: 4222,
            target: "low.example.test.",
        },
        SrvRecord {
            owner,
            priority: 10,
            weight: 5,
            port: 4223,
            target: "light.example.test.",
        },
        SrvRecord {
            owner,
            priority: 10,
            weight: 50,
            port: 4224,
            target: "heavy.example.test.",
        },
        SrvRecord {
            owner,
            priority: 0,
            weight: 0,
            port: 4225,
            target: "first.example.test.",
        },
        // Another service in the zone must not leak in.
        SrvRecord {
            owner: "_other._tcp",
            priority: 0,
            weight: 0,
            port: 1,
            target: "other.example.test.",
        },
    ])
}

fn srv_resolver(dns: &TestDns, domain: &str) -> JwtResolver {
    let (resolver, settings, logs) = configured(
        defaults("/nonexistent/p.jwt"),
        &[
            ("plugin.provtarget.srv_domain", domain),
            ("plugin.provtarget.dns_server", &dns.addr().to_string()),
        ],
    );
    assert_eq!(setting(&settings, "provisioning.srv_domain"), Some(domain));
    assert_eq!(
        setting(&settings, "provisioning.dns_server"),
        Some(dns.addr().to_string().as_str())
    );
    assert_eq!(
        logs.count_at_or_above(Level::WARN),
        0,
        "{:#?}",
        logs.lines()
    );
    resolver
}

#[test]
fn srv_records_resolve_by_priority_without_trailing_dots() {
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, ZONE);
    let (targets, logs) = capture(|| resolver.targets(&ctx()));
    let targets = targets.unwrap();
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert_eq!(targets.get(0), Some("first.example.test:4225"));
    // Priority 10 holds two records, in a weighted random order.
    let mut middle = [targets.get(1).unwrap(), targets.get(2).unwrap()];
    middle.sort();
    assert_eq!(
        middle,
        ["heavy.example.test:4224", "light.example.test:4223"]
    );
    assert_eq!(targets.get(3), Some("low.example.test:4222"));
    assert!(logs.has(
        Level::INFO,
        "Performing provisioning broker resolution via SRV using domain example.test"
    ));
    assert!(logs.has(
        Level::INFO,
        "Attempting SRV lookup on _choria-provisioner._tcp.example.test"
    ));
    assert!(logs.has(
        Level::INFO,
        "Found 4 SRV records for _choria-provisioner._tcp.example.test"
    ));
    let servers: Vec<String> = servers_from(NAME, Ok(targets))
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(servers[0], "nats://first.example.test:4225");
}

#[test]
fn the_dns_library_s_own_log_lines_carry_the_resolver_name() {
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, ZONE);
    let (targets, logs) = capture(|| resolver.targets(&ctx()));
    assert_eq!(targets.unwrap().len(), 4);
    let hickory: Vec<Event> = logs
        .events()
        .into_iter()
        .filter(|e| e.target.starts_with("hickory"))
        .collect();
    assert!(!hickory.is_empty(), "hickory logged nothing at trace level");
    let untagged: Vec<&Event> = hickory
        .iter()
        .filter(|e| e.plugin.as_deref() != Some(NAME))
        .collect();
    assert!(untagged.is_empty(), "{untagged:#?}");
}

#[test]
fn each_call_draws_the_order_within_a_priority_by_weight() {
    // heavy (weight 50) and light (weight 5) share priority 10: over 300 calls (served
    // from the cache after the first, so one query) heavy comes first about 91 % of the
    // time, and light sometimes does too (the chance that it never does is (50/55)^300,
    // about 4e-13).
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, ZONE);
    resolver.targets(&ctx()).unwrap();
    let asked = dns.queries();
    let mut heavy_first = 0;
    for _ in 0..300 {
        let targets = resolver.targets(&ctx()).unwrap();
        if targets.get(1) == Some("heavy.example.test:4224") {
            heavy_first += 1;
        }
    }
    assert_eq!(dns.queries(), asked, "answers come from the cache");
    assert!(
        (200..300).contains(&heavy_first),
        "heavy first {heavy_first} of 300 times"
    );
}

#[test]
fn a_trailing_dot_on_the_domain_is_fine() {
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, "example.test.");
    assert_eq!(resolver.targets(&ctx()).unwrap().len(), 4);
}

#[test]
fn srv_answers_are_cached_for_a_while() {
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, ZONE);
    assert_eq!(dns.queries(), 0);

    let first = resolver.targets(&ctx()).unwrap();
    let asked = dns.queries();
    assert!(asked >= 1, "the first call asks the server");

    // Well within the 5 s cache age: answered from the cache.
    let (second, logs) = capture(|| resolver.targets(&ctx()));
    // The same records (their order within a priority is drawn on every call).
    let sorted = |t: provtarget::resolver::RawTargets| {
        let mut v = t.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(second.unwrap()), sorted(first));
    assert_eq!(
        dns.queries(),
        asked,
        "the second call must not reach the server"
    );
    assert!(logs.has(Level::INFO, "(cached)"), "{:#?}", logs.lines());

    // Reconfiguring starts afresh (another server could be configured).
    let resolver = srv_resolver(&dns, ZONE);
    resolver.targets(&ctx()).unwrap();
    assert!(dns.queries() > asked);
}

#[test]
fn a_domain_without_records_is_retried_until_cancelled() {
    let dns = srv_dns();
    let resolver = Arc::new(srv_resolver(&dns, "empty.example.test"));
    let token = CancelToken::new();

    let worker = {
        let resolver = resolver.clone();
        let token = token.clone();
        std::thread::spawn(move || capture(|| resolver.targets(&ResolveContext::new(NAME, token))))
    };
    // Wait (bounded, so a bug fails rather than hangs) until the server has seen two
    // retries: a third query means tries 1 and 2 have failed and been logged (the
    // cancel then ends try 3 or its backoff sleep at once).
    let deadline = Instant::now() + Duration::from_secs(60);
    while dns.queries() < 3 {
        assert!(Instant::now() < deadline, "no retry reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    token.cancel();
    let (result, logs) = worker.join().unwrap();

    let err = result.unwrap_err().into_message();
    assert!(
        err.starts_with(
            "context canceled while looking up SRV records for _choria-provisioner._tcp.empty.example.test ("
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "last error: _choria-provisioner._tcp.empty.example.test does not exist (NXDOMAIN)"
        ),
        "{err}"
    );
    assert!(logs.has(
        Level::WARN,
        "Failed to resolve _choria-provisioner._tcp.empty.example.test: _choria-provisioner._tcp.empty.example.test does not exist (NXDOMAIN)"
    ), "{:#?}", logs.lines());
    assert!(logs.has(
        Level::WARN,
        "Resolving provisioning brokers via SRV lookups in domain empty.example.test failed on try 1, will keep trying in "
    ), "{:#?}", logs.lines());
    assert!(
        logs.has(Level::WARN, "failed on try 2, will keep trying in "),
        "{:#?}",
        logs.lines()
    );
    assert_eq!(
        servers_from(NAME, Err(err.into())).unwrap_err().split(": ").next(),
        Some("could not determine provisioning servers using Choria JWT Resolver provisioning target plugin")
    );
}

#[test]
fn a_silent_dns_server_does_not_hold_up_cancellation() {
    // A UDP socket that receives queries and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let (resolver, _, _) = configured(
        defaults("/nonexistent/p.jwt"),
        &[
            ("plugin.provtarget.srv_domain", ZONE),
            ("plugin.provtarget.dns_server", &addr.to_string()),
        ],
    );
    let token = CancelToken::new();
    let worker = {
        let token = token.clone();
        std::thread::spawn(move || resolver.targets(&ResolveContext::new(NAME, token)))
    };
    // Cancel as soon as the first query arrives, i.e. while it is outstanding.
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 512];
    silent
        .recv_from(&mut buf)
        .expect("the resolver queries the configured server");
    token.cancel();
    let err = worker.join().unwrap().unwrap_err().into_message();
    assert!(
        err.starts_with("context canceled while looking up SRV records"),
        "{err}"
    );
    // The outstanding query itself was cut short: had it run into its own timeout,
    // the last error would be that timeout.
    assert!(err.ends_with("(1 tries; last error: none)"), "{err}");
}

#[test]
fn an_already_cancelled_call_does_not_query() {
    let dns = srv_dns();
    let resolver = srv_resolver(&dns, ZONE);
    let token = CancelToken::new();
    token.cancel();
    let err = resolver
        .targets(&ResolveContext::new(NAME, token))
        .unwrap_err()
        .into_message();
    assert!(err.contains("(0 tries; last error: none)"), "{err}");
    assert_eq!(dns.queries(), 0);
}
