//! The host library in-process: selection, configure failures, cancellation and the
//! runtime staying responsive while a plugin misbehaves. Real plugins, real dlopen.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use provtarget::{
    config::{keys, ConfigBuilder, HostConfig},
    host::{Failure, Host, Origin},
    resolver::CancelToken,
};
use provtarget_testsupport::{cdylib, cdylib_file_name, TempDir};

fn dir_with(label: &str, packages: &[&str]) -> TempDir {
    let dir = TempDir::new(label);
    for p in packages {
        dir.copy_in(&cdylib(p), &cdylib_file_name(p));
    }
    dir
}

fn config(dir: &TempDir, pairs: &[(&str, &str)]) -> HostConfig {
    let mut b = ConfigBuilder::new().flag(keys::DIRECTORIES, &dir.path().display().to_string());
    for (k, v) in pairs {
        b = b.flag(k, v);
    }
    b.build()
}

#[test]
fn a_resolver_whose_configure_panics_is_disabled_and_the_built_in_takes_over() {
    let dir = dir_with("host-cfg-panic", &["provtarget-testkit"]);
    let host = Host::start(config(&dir, &[("testkit.mode", "panic-configure")]));
    assert_eq!(host.disabled().len(), 1);
    assert_eq!(host.disabled()[0].name, "Test Kit");
    assert!(
        host.disabled()[0]
            .reason
            .contains("plugin Test Kit panicked in configure"),
        "{:?}",
        host.disabled()
    );
    assert_eq!(host.chain().len(), 1);
    assert_eq!(host.chain()[0].origin, Origin::BuiltIn);
    assert_eq!(host.resolver_name().0, "Choria JWT Resolver");
    assert!(host
        .warnings()
        .iter()
        .any(|w| w.contains("falling back to the built-in")));
}

#[test]
fn configure_settings_are_kept_for_buildinfo() {
    let dir = dir_with("host-settings", &["provtarget-testkit"]);
    let host = Host::start(config(&dir, &[("testkit.mode", "ok")]));
    assert_eq!(
        host.resolver_name(),
        ("Test Kit".to_string(), "0.3.1".to_string())
    );
    let settings = &host.chain()[0].settings;
    assert!(settings.contains(&("testkit.mode".to_string(), "ok".to_string())));
    let text = provtarget::buildinfo::text(&host);
    assert!(text.contains("testkit.token: *****"), "{text}");
    assert!(!text.contains("s3cr3t-token"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_runtime_stays_responsive_while_a_resolver_ignores_cancellation() {
    let dir = dir_with("host-hang", &["provtarget-testkit"]);
    let host = Host::start(config(
        &dir,
        &[
            ("testkit.mode", "hang"),
            ("testkit.hang_ms", "20000"),
            (keys::TIMEOUT, "200ms"),
        ],
    ));
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let err = host.resolve(&CancelToken::new()).await.unwrap_err();
    ticker.abort();
    assert!(
        matches!(&err.failure, Failure::DeadlineExceeded { resolver, last_error: Some(e) }
            if resolver == "Test Kit" && e.starts_with("the resolver ignored cancellation")),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(
        "could not determine provisioning servers using Test Kit provisioning target plugin: context deadline exceeded (last error: the resolver ignored cancellation"
    ), "{err}");
    // On a single-threaded runtime, other tasks only run if the resolver is off it.
    assert!(ticks.load(Ordering::SeqCst) >= 5, "runtime was blocked");
}

#[tokio::test(flavor = "current_thread")]
async fn cancelling_the_host_stops_a_waiting_resolver_cleanly() {
    let dir = dir_with("host-cancel", &["provtarget-testkit"]);
    let host = Host::start(config(&dir, &[("testkit.mode", "wait")]));
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let err = host.resolve(&cancel).await.unwrap_err();
    assert_eq!(
        err.failure,
        Failure::Cancelled {
            resolver: "Test Kit".into(),
            last_error: None,
        }
    );
    assert_eq!(
        err.to_string(),
        "could not determine provisioning servers using Test Kit provisioning target plugin: context canceled"
    );
    assert_eq!(err.failed.len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_missed_deadline_reports_the_resolvers_last_error() {
    let dir = dir_with("host-last-error", &["provtarget-testkit"]);
    let host = Host::start(config(
        &dir,
        &[("testkit.mode", "retry-error"), (keys::TIMEOUT, "300ms")],
    ));
    let err = host.resolve(&CancelToken::new()).await.unwrap_err();
    let Failure::DeadlineExceeded {
        resolver,
        last_error: Some(last),
    } = &err.failure
    else {
        panic!("expected a deadline with the last error: {err:?}");
    };
    assert_eq!(resolver, "Test Kit");
    assert!(
        last.starts_with("context canceled after ")
            && last.contains("last error: backend unreachable on try "),
        "{last}"
    );
    assert!(
        err.to_string().starts_with("could not determine provisioning servers using Test Kit provisioning target plugin: context deadline exceeded after "),
        "{err}"
    );
}

#[test]
fn resolvers_named_but_not_loaded_are_reported() {
    let dir = dir_with("host-missing", &["provtarget-testkit"]);
    let host = Host::start(config(&dir, &[(keys::RESOLVERS, "Nope, Test Kit")]));
    assert_eq!(host.resolver_name().0, "Test Kit");
    assert!(
        host.warnings().iter().any(|w| w.contains(
            "resolver Nope named in plugin.provtarget.resolvers is not loaded (loaded: Test Kit)"
        )),
        "{:?}",
        host.warnings()
    );
}

#[test]
fn configure_failures_and_hangs_disable_the_resolver_with_their_reason() {
    let dir = dir_with("host-cfg-fail", &["provtarget-testkit"]);
    let host = Host::start(config(&dir, &[("testkit.mode", "fail-configure")]));
    assert_eq!(
        host.disabled()[0].reason,
        "configure failed: testkit was told to fail in configure"
    );

    // A configure that ignores its deadline and cancellation is abandoned.
    let host = Host::start(config(
        &dir,
        &[
            ("testkit.mode", "hang-configure"),
            ("testkit.hang_ms", "20000"),
            (keys::TIMEOUT, "200ms"),
        ],
    ));
    assert_eq!(host.disabled().len(), 1);
    assert_eq!(
        host.disabled()[0].reason,
        "configure did not finish within 200ms and ignored cancellation; its thread was abandoned"
    );
    assert_eq!(host.chain()[0].origin, Origin::BuiltIn);
}

#[tokio::test(flavor = "current_thread")]
async fn a_resolver_still_running_after_abandonment_gets_no_second_thread() {
    let dir = dir_with("host-busy", &["provtarget-testkit"]);
    let host = Host::start(config(
        &dir,
        &[
            ("testkit.mode", "hang"),
            ("testkit.hang_ms", "20000"),
            (keys::TIMEOUT, "100ms"),
        ],
    ));
    let first = host.resolve(&CancelToken::new()).await.unwrap_err();
    assert!(first.to_string().contains("abandoned"), "{first}");
    let second = host.resolve(&CancelToken::new()).await.unwrap_err();
    assert_eq!(
        second.to_string(),
        "could not determine provisioning servers using Test Kit provisioning target plugin: its previous call ignored cancellation and is still running; not starting another"
    );
}

#[test]
fn start_up_warnings_are_typed_by_where_they_come_from() {
    use provtarget::{config::ConfigWarningKind, host::HostWarning};
    let dir = dir_with("host-warn-kinds", &[]);
    let host = Host::start(config(
        &dir,
        &[
            (keys::ISOLATION, "sandbox"),
            ("plugin.provtarget.timeot", "3"),
            (keys::RESOLVERS, "Nowhere"),
        ],
    ));
    let config_warning = |kind| {
        host.warnings().iter().find_map(|w| match w {
            HostWarning::Config(c) if c.kind == kind => Some(c.clone()),
            _ => None,
        })
    };
    let invalid = config_warning(ConfigWarningKind::InvalidValue).expect("the bad isolation mode");
    assert_eq!(invalid.key.as_deref(), Some(keys::ISOLATION));
    assert_eq!(invalid.source.as_deref(), Some("flag"));
    assert_eq!(
        invalid.to_string(),
        "plugin.provtarget.isolation = \"sandbox\" (flag) ignored: use none, probe or process"
    );
    let unknown = config_warning(ConfigWarningKind::UnknownKey).expect("the misspelt key");
    assert_eq!(unknown.key.as_deref(), Some("plugin.provtarget.timeot"));
    assert!(
        unknown.ends_with("did you mean plugin.provtarget.timeout?"),
        "{unknown}"
    );
    // The chain plan's warning about a name no library provides.
    assert!(
        host.warnings()
            .iter()
            .any(|w| matches!(w, HostWarning::Selection(t) if t.contains("Nowhere"))),
        "{:?}",
        host.warnings()
    );
}
