//! The contract, exercised through real `dlopen`s of real cdylibs built from this
//! workspace: sample plugin, panicking plugins, and plugins built against a frozen 1.0
//! contract and a future 2.0 one.
// Unsafe only for `PluginLibrary::open` on the workspace's own cdylibs, each block with its SAFETY comment.
#![allow(unsafe_code)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use provtarget_abi::{
    host::{supported_interfaces, HostServices, OpenErrorKind, PluginLibrary},
    LogLevel, PluginType, INTERFACE_VERSION,
};

/// The frozen first layout, as the legacy test plugin declares it.
const V1_0: &str = "1.0.0";
/// The frozen second layout, as the 1.1 fixture declares it.
const V1_1: &str = "1.1.0";
use provtarget_testsupport::{cdylib, frozen::layout_code, TempDir};

/// Called with the 1-based number of each sleep.
type SleepHook = Box<dyn FnMut(usize) + Send>;

/// A host for tests: records log lines, and sleeps on a condvar that `cancel` wakes.
#[derive(Default)]
struct TestHost {
    cancelled: Mutex<bool>,
    wake: Condvar,
    logs: Mutex<Vec<(LogLevel, String)>>,
    sleeps: AtomicUsize,
    interrupted_sleeps: AtomicUsize,
    /// Skip real sleeping (for retry-loop tests).
    instant_sleep: AtomicBool,
    on_sleep: Mutex<Option<SleepHook>>,
    sleep_started: Mutex<Option<mpsc::Sender<()>>>,
}

impl TestHost {
    fn cancel(&self) {
        *self.cancelled.lock().unwrap() = true;
        self.wake.notify_all();
    }
    fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.lock().unwrap().clone()
    }
}

impl HostServices for TestHost {
    fn is_cancelled(&self) -> bool {
        *self.cancelled.lock().unwrap()
    }
    fn sleep(&self, duration: Duration) -> bool {
        let n = self.sleeps.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(hook) = self.on_sleep.lock().unwrap().as_mut() {
            hook(n);
        }
        if let Some(tx) = self.sleep_started.lock().unwrap().as_ref() {
            let _ = tx.send(());
        }
        if self.instant_sleep.load(Ordering::SeqCst) {
            return self.is_cancelled();
        }
        let deadline = Instant::now() + duration;
        let mut cancelled = self.cancelled.lock().unwrap();
        while !*cancelled {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            cancelled = self.wake.wait_timeout(cancelled, deadline - now).unwrap().0;
        }
        if Instant::now() < deadline {
            self.interrupted_sleeps.fetch_add(1, Ordering::SeqCst);
        }
        true
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_string()));
    }
}

fn open(package: &str) -> PluginLibrary {
    open_path(&cdylib(package))
}

fn open_path(path: &std::path::Path) -> PluginLibrary {
    // SAFETY: the library was just built from this repository.
    unsafe { PluginLibrary::open(path) }.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn dc_hint_describes_itself() {
    let lib = open("provtarget-dc-hint");
    let info = lib.info();
    assert_eq!(info.name, "Acme DC hints Provisioning Target");
    assert_eq!(info.version, "1.0.0");
    assert_eq!(info.plugin_type, PluginType::ProvisionTargetResolver);
    assert_eq!(info.vendor, "Acme");
    assert_eq!(info.interface_version, provtarget_abi::INTERFACE_VERSION);
    assert_eq!(lib.interface_version(), INTERFACE_VERSION);
    assert!(
        info.rustc_version.starts_with("rustc "),
        "{}",
        info.rustc_version
    );
    assert!(!info.target.is_empty() && info.target != "unknown");
    let keys: Vec<String> = lib.config_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(
        keys,
        [
            "plugin.acme.dc_hint.file",
            "plugin.acme.dc_hint.domain",
            "plugin.acme.dc_hint.port"
        ]
    );
}

#[test]
fn dc_hint_resolves_the_datacenter_target_with_configured_template_and_port() {
    let dir = TempDir::new("dc-hint-ok");
    let file = dir.write("dc.json", r#"{"datacenter": "fra2"}"#);
    let lib = open("provtarget-dc-hint");
    let mut resolver = lib.new_resolver().unwrap();
    let host = TestHost::default();
    let file_s = file.display().to_string();
    resolver
        .configure(&host, &config(&[("plugin.acme.dc_hint.file", &file_s)]))
        .unwrap();
    assert_eq!(
        resolver.targets(&host).unwrap(),
        ["_provision.fra2.example.net:4222"]
    );

    let settings = resolver
        .configure(
            &host,
            &config(&[
                ("plugin.acme.dc_hint.file", &file_s),
                ("plugin.acme.dc_hint.domain", "prov-{dc}.corp.net"),
                ("plugin.acme.dc_hint.port", "4333"),
            ]),
        )
        .unwrap();
    assert!(settings.contains(&("plugin.acme.dc_hint.port".into(), "4333".into())));
    assert_eq!(
        resolver.targets(&host).unwrap(),
        ["prov-fra2.corp.net:4333"]
    );
}

#[test]
fn dc_hint_refuses_bad_configuration_with_a_hint() {
    let lib = open("provtarget-dc-hint");
    let mut resolver = lib.new_resolver().unwrap();
    let host = TestHost::default();
    let err = resolver
        .configure(&host, &config(&[("plugin.acme.dc_hint.port", "99999")]))
        .unwrap_err();
    assert!(
        err.contains("plugin.acme.dc_hint.port") && err.contains("1 to 65535"),
        "{err}"
    );
    let err = resolver
        .configure(
            &host,
            &config(&[("plugin.acme.dc_hint.domain", "static.example.net")]),
        )
        .unwrap_err();
    assert!(err.contains("{dc}"), "{err}");
}

#[test]
fn dc_hint_keeps_retrying_until_the_file_appears() {
    let dir = TempDir::new("dc-hint-retry");
    let file = dir.path().join("dc.json");
    let lib = open("provtarget-dc-hint");
    let mut resolver = lib.new_resolver().unwrap();
    let host = Arc::new(TestHost::default());
    host.instant_sleep.store(true, Ordering::SeqCst);
    let file_s = file.display().to_string();
    resolver
        .configure(&*host, &config(&[("plugin.acme.dc_hint.file", &file_s)]))
        .unwrap();
    // The first two tries fail (missing file, then bad JSON); the file is fixed on
    // the second sleep.
    let target = file.clone();
    *host.on_sleep.lock().unwrap() = Some(Box::new(move |n| match n {
        1 => std::fs::write(&target, "{ not json").unwrap(),
        2 => std::fs::write(&target, r#"{"datacenter": "ams1"}"#).unwrap(),
        _ => {}
    }));
    assert_eq!(
        resolver.targets(&*host).unwrap(),
        ["_provision.ams1.example.net:4222"]
    );
    assert_eq!(host.sleeps.load(Ordering::SeqCst), 2);
    // The SDK's retry logs each failed try once, as a warning naming the try, the
    // cause and the pause.
    let failures: Vec<String> = host
        .logs()
        .into_iter()
        .filter(|(l, _)| *l == LogLevel::Warn)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0].starts_with("try 1 failed: cannot read ") && failures[0].contains("dc.json"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].starts_with("try 2 failed: ") && failures[1].contains("is not valid JSON"),
        "{}",
        failures[1]
    );
    assert!(
        failures[1].contains("; trying again in "),
        "{}",
        failures[1]
    );
}

#[test]
fn cancellation_interrupts_the_dc_hint_backoff_sleep() {
    let dir = TempDir::new("dc-hint-cancel");
    let lib = open("provtarget-dc-hint");
    let mut resolver = lib.new_resolver().unwrap();
    let host = Arc::new(TestHost::default());
    let missing = dir.path().join("never.json").display().to_string();
    resolver
        .configure(&*host, &config(&[("plugin.acme.dc_hint.file", &missing)]))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    *host.sleep_started.lock().unwrap() = Some(tx);
    let canceller = {
        let host = host.clone();
        std::thread::spawn(move || {
            rx.recv().unwrap();
            host.cancel();
        })
    };
    let err = resolver.targets(&*host).unwrap_err();
    canceller.join().unwrap();
    // Cancelled, with the failure that kept it retrying.
    assert!(
        err.starts_with("context canceled after 1 try; last error: cannot read ")
            && err.ends_with("never.json: No such file or directory (os error 2)"),
        "{err}"
    );
    assert_eq!(
        host.sleeps.load(Ordering::SeqCst),
        1,
        "no further try after cancel"
    );
    assert_eq!(
        host.interrupted_sleeps.load(Ordering::SeqCst),
        1,
        "the backoff sleep must end early when cancelled"
    );
}

#[test]
fn panics_in_configure_and_targets_become_errors_naming_the_plugin() {
    let lib = open("provtarget-testkit");
    let host = TestHost::default();

    let mut resolver = lib.new_resolver().unwrap();
    let err = resolver
        .configure(&host, &config(&[("testkit.mode", "panic-configure")]))
        .unwrap_err();
    assert!(
        err.starts_with(
            "plugin Test Kit panicked in configure: testkit was told to panic in configure at "
        ),
        "{err}"
    );

    let mut resolver = lib.new_resolver().unwrap();
    resolver
        .configure(&host, &config(&[("testkit.mode", "panic-targets")]))
        .unwrap();
    for _ in 0..3 {
        let err = resolver.targets(&host).unwrap_err();
        assert!(
            err.starts_with(
                "plugin Test Kit panicked in targets: testkit was told to panic in targets"
            ),
            "{err}"
        );
    }

    // The process is fine and the same library still works.
    let mut resolver = lib.new_resolver().unwrap();
    resolver
        .configure(&host, &config(&[("testkit.targets", "a:1,b:2")]))
        .unwrap();
    assert_eq!(resolver.targets(&host).unwrap(), ["a:1", "b:2"]);
}

#[test]
fn a_panic_in_the_resolvers_destructor_does_not_take_the_host_down() {
    let lib = open("provtarget-testkit");
    let host = TestHost::default();
    for _ in 0..2 {
        let mut resolver = lib.new_resolver().unwrap();
        resolver
            .configure(
                &host,
                &config(&[("testkit.mode", "panic-drop"), ("testkit.targets", "d:1")]),
            )
            .unwrap();
        assert_eq!(resolver.targets(&host).unwrap(), ["d:1"]);
        // Without containment, abi_stable's destructor shim aborts this process here.
        drop(resolver);
    }
    let resolver = lib.new_resolver().unwrap();
    assert_eq!(resolver.name(), "Test Kit");
}

#[test]
fn a_panicking_constructor_is_an_error() {
    let lib = open("provtarget-test-badctor");
    let err = lib.new_resolver().unwrap_err();
    assert!(
        err.starts_with(
            "plugin Exploding Constructor panicked in new: constructor exploded on purpose"
        ),
        "{err}"
    );
}

#[test]
fn plugin_log_lines_reach_the_host_with_their_levels() {
    let lib = open("provtarget-testkit");
    let host = TestHost::default();
    let mut resolver = lib.new_resolver().unwrap();
    resolver
        .configure(
            &host,
            &config(&[("testkit.mode", "log"), ("testkit.targets", "x:1")]),
        )
        .unwrap();
    assert_eq!(resolver.targets(&host).unwrap(), ["x:1"]);
    let logs = host.logs();
    for (level, text) in [
        (LogLevel::Info, "testkit configured in mode log"),
        (LogLevel::Error, "testkit error line"),
        (LogLevel::Warn, "testkit warn line"),
        (LogLevel::Info, "testkit info line"),
        (LogLevel::Debug, "testkit debug line"),
        (LogLevel::Trace, "testkit trace line"),
    ] {
        assert!(
            logs.contains(&(level, text.to_string())),
            "missing {level:?} {text}: {logs:?}"
        );
    }
}

#[test]
fn wrong_plugin_type_is_reported_as_declared() {
    // The contract reports the declared type; refusing it is the loader's job.
    let info = open("provtarget-test-wrongtype").info();
    assert_eq!(info.plugin_type, PluginType::Agent);
    assert_eq!(info.plugin_type_id, 2);
}

#[test]
fn a_plugin_built_against_frozen_interface_1_0_loads_in_this_1_1_host() {
    // Load a current plugin first, then the legacy one, then another current one: the
    // layouts must not interfere inside one process.
    let current = open("provtarget-testkit");
    let legacy = open_path(&provtarget_testsupport::legacy_1_0_plugin());
    let again = open("provtarget-dc-hint");
    assert_eq!(current.interface_version(), INTERFACE_VERSION);
    assert_eq!(again.interface_version(), INTERFACE_VERSION);
    assert_eq!(legacy.interface_version(), V1_0);

    let info = legacy.info();
    assert_eq!(info.name, "Legacy 1.0 Resolver");
    assert_eq!(info.interface_version, V1_0);
    assert_eq!(info.plugin_type, PluginType::ProvisionTargetResolver);
    // 1.0 has no config_keys function: the host supplies the default.
    assert!(legacy.config_keys().is_empty());

    let host = TestHost::default();
    let mut resolver = legacy.new_resolver().unwrap();
    resolver.configure(&host, &[]).unwrap();
    assert_eq!(resolver.name(), "Legacy 1.0 Resolver");
    assert_eq!(
        resolver.targets(&host).unwrap(),
        ["legacy.example.net:4222"]
    );
    assert!(host
        .logs()
        .contains(&(LogLevel::Info, "legacy resolver resolving".to_string())));
}

#[test]
fn a_plugin_built_against_another_major_is_refused_in_one_line() {
    let path = cdylib("provtarget-test-future");
    // SAFETY: built from this workspace.
    let err = unsafe { PluginLibrary::open(&path) }.unwrap_err();
    assert_eq!(err.kind, OpenErrorKind::InterfaceMismatch);
    assert!(err.message.contains("interface 2.0.0"), "{}", err.message);
    assert!(err.message.contains("1.x"), "{}", err.message);
    assert!(!err.message.contains('\n'));
}

#[test]
fn a_library_without_root_module_is_not_a_plugin() {
    let path = cdylib("provtarget-test-noroot");
    // SAFETY: built from this workspace.
    let err = unsafe { PluginLibrary::open(&path) }.unwrap_err();
    assert_eq!(err.kind, OpenErrorKind::NotAPlugin);
    assert!(
        err.message.starts_with("not a provtarget plugin"),
        "{}",
        err.message
    );
}

#[test]
fn a_plugin_declaring_1_1_with_another_layout_is_refused_not_read_as_1_0() {
    // It declares 1.1.0 but has the 1.0 root module: the 1.0 layout would accept it,
    // so a host trying layouts one after another would load it as a 1.0 plugin.
    let path = cdylib("provtarget-test-badlayout");
    // SAFETY: built from this workspace.
    let err = unsafe { PluginLibrary::open(&path) }.unwrap_err();
    assert_eq!(err.kind, OpenErrorKind::LayoutMismatch, "{}", err.message);
    assert!(!err.message.contains('\n'), "{}", err.message);
    assert!(err.message.len() <= 400, "{} chars", err.message.len());
    assert!(
        err.message
            .starts_with("layout mismatch for interface 1.1.0: "),
        "{}",
        err.message
    );
    // The summary comes from abi_stable's `Error:` lines, not its whole report.
    assert!(err.message.contains("too many fields"), "{}", err.message);
    assert!(err.detail.lines().count() > 1);
}

#[test]
fn layouts_are_chosen_by_the_declared_version() {
    // 1.1 plugins read through 1.1, the frozen 1.0 plugin through 1.0.
    assert_eq!(
        open("provtarget-testkit").interface_version(),
        INTERFACE_VERSION
    );
    let legacy = open_path(&provtarget_testsupport::legacy_1_0_plugin());
    assert_eq!(legacy.interface_version(), V1_0);
    assert_eq!(legacy.info().interface_version, V1_0);
    // Every version the host lists is one it reads, newest (what plugins export) first.
    let supported: Vec<&str> = supported_interfaces().collect();
    assert_eq!(supported.first(), Some(&INTERFACE_VERSION));
    assert!(supported.contains(&V1_0), "{supported:?}");
}

#[test]
fn the_frozen_1_0_layout_and_the_legacy_fixture_have_not_drifted_apart() {
    // The legacy test plugin (tests/legacy-1.0) is built against its own copy of the
    // 1.0 contract; the host reads 1.0 plugins through plugin-abi's frozen copy. If the
    // two drift, the legacy test no longer proves that real 1.0 binaries load.
    let root = provtarget_testsupport::workspace_root();
    let frozen = std::fs::read_to_string(root.join("plugin-abi/src/ffi/v1_0.rs")).unwrap();
    let fixture = std::fs::read_to_string(root.join("tests/legacy-1.0/abi/src/lib.rs")).unwrap();
    assert!(layout_code(&frozen).contains("pub struct PluginModule"));
    assert_eq!(
        layout_code(&frozen),
        layout_code(&fixture),
        "plugin-abi/src/ffi/v1_0.rs and tests/legacy-1.0/abi/src/lib.rs differ in code"
    );
    assert!(frozen.contains(&format!("INTERFACE_VERSION: &str = \"{V1_0}\"")));
}

#[test]
fn the_frozen_1_1_layout_and_the_1_1_fixture_have_not_drifted_apart() {
    // As for 1.0: tests/legacy-1.1 stands for plugins built against provtarget-abi 1.1,
    // which the host reads through plugin-abi's frozen ffi/v1_1.rs.
    let root = provtarget_testsupport::workspace_root();
    let frozen = std::fs::read_to_string(root.join("plugin-abi/src/ffi/v1_1.rs")).unwrap();
    let fixture = std::fs::read_to_string(root.join("tests/legacy-1.1/abi/src/lib.rs")).unwrap();
    assert!(layout_code(&frozen).contains("pub config_keys"));
    assert_eq!(
        layout_code(&frozen),
        layout_code(&fixture),
        "plugin-abi/src/ffi/v1_1.rs and tests/legacy-1.1/abi/src/lib.rs differ in code"
    );
    assert!(frozen.contains(&format!("INTERFACE_VERSION: &str = \"{V1_1}\"")));
}

#[test]
fn a_1_1_plugin_loads_with_its_keys_and_answers_without_provenance() {
    let legacy = open_path(&provtarget_testsupport::legacy_1_1_plugin());
    assert_eq!(legacy.interface_version(), V1_1);
    assert_eq!(legacy.info().name, "Legacy 1.1 Resolver");
    let keys: Vec<String> = legacy.config_keys().into_iter().map(|k| k.key).collect();
    assert_eq!(keys, ["plugin.legacy11.zone"]);
    let host = TestHost::default();
    let mut resolver = legacy.new_resolver().unwrap();
    resolver.configure(&host, &[]).unwrap();
    let list = resolver.targets(&host).unwrap();
    assert_eq!(list, ["legacy11.example.net:4222"]);
    assert_eq!(list.provenance(), None);
    // And a 1.0 plugin likewise.
    let old = open_path(&provtarget_testsupport::legacy_1_0_plugin());
    let list = old.new_resolver().unwrap().targets(&host).unwrap();
    assert_eq!(list, ["legacy.example.net:4222"]);
    assert_eq!(list.provenance(), None);
}

#[test]
fn a_1_2_plugins_answer_carries_its_provenance_through_the_sdk() {
    let lib = open("provtarget-testkit");
    assert_eq!(lib.interface_version(), INTERFACE_VERSION);
    let host = TestHost::default();
    let mut resolver = lib.new_resolver().unwrap();
    resolver
        .configure(
            &host,
            &config(&[
                ("testkit.targets", "a.example:1"),
                (
                    "testkit.provenance",
                    "SRV _x._tcp.example.net from 10.0.0.53:53",
                ),
            ]),
        )
        .unwrap();
    let list = resolver.targets(&host).unwrap();
    assert_eq!(list, ["a.example:1"]);
    assert_eq!(
        list.provenance(),
        Some("SRV _x._tcp.example.net from 10.0.0.53:53")
    );
    // Said nothing: none (an empty text is no provenance).
    let mut quiet = lib.new_resolver().unwrap();
    quiet
        .configure(&host, &config(&[("testkit.targets", "a.example:1")]))
        .unwrap();
    assert_eq!(quiet.targets(&host).unwrap().provenance(), None);
}

/// What the host sees of a plugin, with the plugin's own texts (its name, target, key
/// names and log lines) left out: the shape of its behaviour through the host API.
#[derive(Debug, PartialEq, Eq)]
struct Behaviour {
    layout: &'static str,
    declared: String,
    plugin_type: PluginType,
    /// Each declared key: whether it has a default and a description.
    keys: Vec<(bool, bool)>,
    settings: usize,
    targets: Vec<bool>,
    provenance: bool,
    /// The levels of what it logged in `configure` and `targets`.
    logs: Vec<LogLevel>,
}

fn behaviour(lib: &PluginLibrary) -> Behaviour {
    let host = TestHost::default();
    let mut resolver = lib.new_resolver().unwrap();
    let settings = resolver.configure(&host, &[]).unwrap().len();
    let list = resolver.targets(&host).unwrap();
    Behaviour {
        layout: lib.interface_version(),
        declared: lib.info().interface_version,
        plugin_type: lib.info().plugin_type,
        keys: lib
            .config_keys()
            .iter()
            .map(|k| (!k.default.is_empty(), !k.description.is_empty()))
            .collect(),
        settings,
        targets: list
            .iter()
            .map(|t| {
                t.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            })
            .collect(),
        provenance: list.provenance().is_some(),
        logs: host.logs().into_iter().map(|(level, _)| level).collect(),
    }
}

#[test]
fn every_layout_is_frozen_with_its_pinned_digest() {
    // Each `ffi/v1_N.rs` has an entry in the fixture list (so freezing a version cannot
    // be forgotten), and a released layout's code never changes.
    use provtarget_testsupport::frozen::{layout_digest, layout_file, FROZEN};
    let root = provtarget_testsupport::workspace_root();
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("plugin-abi/src/ffi"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            let stem = name.strip_prefix("v")?.strip_suffix(".rs")?;
            Some(stem.replace('_', "."))
        })
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = FROZEN.iter().map(|f| f.version).collect();
    assert_eq!(
        on_disk, listed,
        "tests/support/src/frozen.rs FROZEN must list every plugin-abi/src/ffi/v1_*.rs"
    );
    assert_eq!(
        format!("{}.0", listed.last().unwrap()),
        INTERFACE_VERSION,
        "the newest layout is the one plugins export"
    );
    let changed: Vec<String> = FROZEN
        .iter()
        .filter_map(|frozen| {
            let file = layout_file(frozen.version);
            let digest = layout_digest(&std::fs::read_to_string(&file).unwrap());
            (digest != frozen.code_digest)
                .then(|| format!("{} (digest {digest:#x})", file.display()))
        })
        .collect();
    assert!(
        changed.is_empty(),
        "changed since released, or newly frozen without its digest: {}; a released \
         layout never changes (add a new version instead)",
        changed.join(", ")
    );
}

#[test]
fn every_frozen_layouts_generated_fixture_loads_through_its_own_layout_and_answers() {
    let host = TestHost::default();
    for frozen in provtarget_testsupport::frozen::FROZEN {
        let fixture = provtarget_testsupport::frozen::frozen_plugin(frozen.version);
        let lib = open_path(&fixture.path);
        assert_eq!(lib.interface_version(), fixture.interface_version);
        assert_eq!(lib.info().name, fixture.name);
        let keys: Vec<String> = lib.config_keys().into_iter().map(|k| k.key).collect();
        assert_eq!(
            keys,
            Vec::from_iter(fixture.key.clone()),
            "{}",
            frozen.version
        );
        let mut resolver = lib.new_resolver().unwrap();
        resolver.configure(&host, &[]).unwrap();
        let list = resolver.targets(&host).unwrap();
        assert_eq!(list, [fixture.target.as_str()]);
        // The whole answer record, as far as the layout gives it (the fields of newer
        // interfaces stay null for older plugins).
        let mut answer = serde_json::to_value(list.answer()).unwrap();
        answer.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        let expected: serde_json::Value = serde_json::from_str(&fixture.answer).unwrap();
        assert_eq!(answer, expected, "interface {}", frozen.version);
        for line in &fixture.logs {
            assert!(
                host.logs().contains(&(LogLevel::Info, line.clone())),
                "{line:?} not in {:?}",
                host.logs()
            );
        }
    }
}

#[test]
fn a_plugin_built_on_the_frozen_1_2_layout_answers_with_its_provenance() {
    let fixture = provtarget_testsupport::frozen::frozen_plugin("1.2");
    // Opened after a current plugin and before another: the layouts coexist.
    let current = open("provtarget-testkit");
    let lib = open_path(&fixture.path);
    let again = open("provtarget-dc-hint");
    assert_eq!(lib.interface_version(), "1.2.0");
    assert_eq!(lib.info().interface_version, "1.2.0");
    assert_eq!(current.interface_version(), INTERFACE_VERSION);
    assert_eq!(again.interface_version(), INTERFACE_VERSION);
    let host = TestHost::default();
    let list = lib.new_resolver().unwrap().targets(&host).unwrap();
    assert_eq!(list, [fixture.target.as_str()]);
    assert_eq!(list.provenance(), list.answer().provenance.as_deref());
    assert_eq!(
        list.provenance(),
        Some("fixture answer of interface 1.2"),
        "a 1.2 binary's provenance reaches the host"
    );
}

#[test]
fn the_generated_1_0_and_1_1_fixtures_behave_like_the_committed_ones() {
    // The committed workspaces stay (others' binaries rely on them); the generated
    // ones, built from plugin-abi's frozen files, must be indistinguishable through
    // the host API apart from their own texts.
    for (version, committed) in [
        ("1.0", provtarget_testsupport::legacy_1_0_plugin()),
        ("1.1", provtarget_testsupport::legacy_1_1_plugin()),
    ] {
        let generated = provtarget_testsupport::frozen::frozen_plugin(version);
        let committed = behaviour(&open_path(&committed));
        let generated = behaviour(&open_path(&generated.path));
        assert_eq!(generated, committed, "interface {version}");
        assert_eq!(committed.layout, format!("{version}.0"));
    }
}
