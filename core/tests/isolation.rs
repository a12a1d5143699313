//! The process-mode adapter through the library API, with the real `provtarget`
//! binary as the helper and the hostile Crasher plugin: a crashed resolver process is
//! restarted on a later call, after Choria's backoff, and configured again; children
//! started ahead of need are used, ended when not needed, and passed over when dead.
use std::time::{Duration, Instant};

use provtarget::{
    config::{keys, ConfigBuilder},
    host::{Failure, Host},
    plumbing::Helper,
    resolver::CancelToken,
};
use provtarget_testsupport::{cdylib, cdylib_file_name, provtarget_bin, TempDir};

#[test]
fn a_crashed_resolver_process_is_restarted_after_the_backoff() {
    let dir = TempDir::new("core-iso-restart");
    let package = "provtarget-test-crasher";
    dir.copy_in(&cdylib(package), &cdylib_file_name(package));
    let once = dir.path().join("crashed-once");
    let config = ConfigBuilder::new()
        .flag(keys::DIRECTORIES, &dir.path().display().to_string())
        .flag(keys::ISOLATION, "process")
        .flag(keys::JWT_FILE, "")
        .flag("crasher.targets", "null-write")
        .flag("crasher.once_file", &once.display().to_string())
        .flag("crasher.answer", "restarted.example:4222")
        .build();
    let host = Host::start_with_helper(config, provtarget_bin());
    assert_eq!(host.resolver_name().0, "Crasher");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancelToken::new();

    // 1. The child crashes in targets: an error naming how, not a dead host.
    let err = runtime.block_on(host.resolve(&cancel)).unwrap_err();
    match &err.failure {
        Failure::Failed { resolver, error } => {
            assert_eq!(resolver, "Crasher");
            assert_eq!(
                error,
                "the resolver process crashed: killed by signal 11 (SIGSEGV)"
            );
        }
        other => panic!("unexpected failure {other:?}"),
    }
    assert!(once.exists(), "the plugin did not run");

    // 2. At once again: still within the backoff, no new child yet.
    let err = runtime.block_on(host.resolve(&cancel)).unwrap_err();
    assert!(err.to_string().contains("restarting it in"), "{err}");

    // 3. After the backoff (FIVE_SEC's first step: at most 750 ms), a new child is
    //    started, configured again (the answer comes from configure) and answers.
    let started = Instant::now();
    let found = loop {
        std::thread::sleep(Duration::from_millis(100));
        match runtime.block_on(host.resolve(&cancel)) {
            Ok(found) => break found,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                assert!(e.to_string().contains("restarting it in"), "{e}")
            }
            Err(e) => panic!("never restarted: {e}"),
        }
    };
    let servers: Vec<String> = found.servers.iter().map(|s| s.to_string()).collect();
    assert_eq!(servers, ["nats://restarted.example:4222"]);
}

/// A directory holding the Crasher plugin (answering `answer`) and its configuration
/// for process isolation.
fn crasher_setup(
    label: &str,
    answer: &str,
    extra: &[(&str, &str)],
) -> (TempDir, provtarget::config::HostConfig) {
    let dir = TempDir::new(label);
    let package = "provtarget-test-crasher";
    dir.copy_in(&cdylib(package), &cdylib_file_name(package));
    let mut config = ConfigBuilder::new()
        .flag(keys::DIRECTORIES, &dir.path().display().to_string())
        .flag(keys::ISOLATION, "process")
        .flag(keys::JWT_FILE, "")
        .flag("crasher.answer", answer);
    for (k, v) in extra {
        config = config.flag(k, v);
    }
    (dir, config.build())
}

fn resolve_servers(host: &Host) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let found = runtime
        .block_on(host.resolve(&CancelToken::new()))
        .expect("resolve");
    found.servers.iter().map(|s| s.to_string()).collect()
}

/// Children started ahead of need wait for a library; the host uses one for its
/// resolver and ends the others once its chain is configured.
#[test]
fn children_started_ahead_of_need_are_used_and_the_rest_ended() {
    let (_dir, config) = crasher_setup("core-iso-spares", "spare.example:4222", &[]);
    let helper = Helper::new(provtarget_bin());
    helper.prestart(2);
    assert_eq!(helper.spares(), 2, "two children wait");
    let host = Host::start_isolated(config, None, Some(helper.clone()));
    assert_eq!(host.resolver_name().0, "Crasher");
    assert_eq!(helper.spares(), 0, "the unused child was not ended");
    assert_eq!(resolve_servers(&host), ["nats://spare.example:4222"]);
}

/// A child started ahead of need that died before it was needed is passed over: a
/// new one serves, and the resolver is not lost. The helper is a script that exits at
/// once the first time it is run as `__serve`, then runs the real binary.
#[test]
fn a_waiting_child_that_died_is_replaced() {
    let (dir, config) = crasher_setup("core-iso-dead-spare", "replaced.example:4222", &[]);
    let first = dir.path().join("first-serve");
    let script = dir.write(
        "helper.sh",
        format!(
            "#!/bin/sh\nif [ \"$1\" = __serve ] && mkdir {first:?} 2>/dev/null; then exit 0; fi\nexec {:?} \"$@\"\n",
            provtarget_bin()
        ),
    );
    provtarget_testsupport::set_mode(&script, 0o755);
    let helper = Helper::new(&script);
    helper.prestart(1);
    // The waiting child ends on its own; it is still listed until someone looks.
    let started = Instant::now();
    while !first.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the helper never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let host = Host::start_isolated(config, None, Some(helper));
    assert_eq!(
        host.resolver_name().0,
        "Crasher",
        "the dead child was used: {:?}",
        host.disabled()
    );
    assert_eq!(resolve_servers(&host), ["nats://replaced.example:4222"]);
}

/// No resolver process is started ahead of need for directories that cannot hold a
/// plugin (missing, empty, or only other files); one is for a directory listing a
/// library name.
#[test]
fn children_are_started_ahead_of_need_only_where_plugins_may_be() {
    let dir = TempDir::new("core-iso-may-hold");
    let options = |d: &std::path::Path| provtarget_loader::LoaderOptions {
        directories: vec![d.to_path_buf()],
        ..provtarget_loader::LoaderOptions::default()
    };
    let may_hold = |d: &std::path::Path| provtarget::plumbing::may_hold_plugins(&options(d));
    assert!(!may_hold(&dir.path().join("missing")));
    assert!(!may_hold(dir.path()), "empty");
    dir.write("README", "not a plugin");
    dir.write(".hidden.so", "hidden");
    assert!(!may_hold(dir.path()), "no library name");
    dir.write(
        "libacme.so",
        "a library name (its contents are judged later)",
    );
    assert!(may_hold(dir.path()));
}

/// A child that writes one endless line to stderr (64 MiB) cannot make the host keep
/// it: the line is re-logged cut at 64 KiB (marked so), and the resolver still works.
#[test]
fn a_childs_endless_stderr_line_is_cut_not_kept() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Captured::default();
    let writer = log.clone();
    // Global: the re-logging happens on a thread of the host's own.
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .init();
    let (_dir, config) = crasher_setup(
        "core-iso-stderr-flood",
        "flood.example:4222",
        &[("crasher.configure", "stderr-flood")],
    );
    let host = Host::start_with_helper(config, provtarget_bin());
    assert_eq!(host.resolver_name().0, "Crasher", "{:?}", host.disabled());
    assert_eq!(resolve_servers(&host), ["nats://flood.example:4222"]);
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
        if text.contains("[line cut at 64 KiB]") {
            assert!(
                text.contains("plugin output: xxxx"),
                "{}",
                &text[..text.len().min(500)]
            );
            assert!(
                text.len() < 1 << 20,
                "the host kept and logged {} bytes",
                text.len()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the cut line was never logged: {}",
            &text[..text.len().min(500)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A helper that is not this build's speaks another handshake: the library it was
/// handed is refused with one line saying which, in both modes that load in a child,
/// never read as a default. The helper is a script: as `__probe` it writes `line` on
/// the report descriptor, as `__serve` it reads the `load` request off its socket and
/// answers `line` there.
#[test]
fn a_handshake_of_another_build_or_program_is_refused_in_one_line() {
    let cases = [
        (
            r#"{"magic":"provtarget-plugin-child-7c1e4b9a","protocol":3,"report":{}}"#,
            "the child speaks protocol 3, this host 5; use the same provtarget build",
        ),
        (
            "Usage: some-other-program [OPTIONS]",
            "the child is not a provtarget helper (no handshake)",
        ),
        (
            r#"{"magic":"provtarget-plugin-child-7c1e4b9a","protocol":5}"#,
            "a malformed handshake: field `.`: missing field `report`",
        ),
        (
            r#"{"magic":"provtarget-plugin-child-7c1e4b9a","protocol":5,"report":{},"verdict":"loaded"}"#,
            "a malformed handshake: field `verdict`: unknown field `verdict`",
        ),
    ];
    for (i, (line, expected)) in cases.into_iter().enumerate() {
        for mode in ["probe", "process"] {
            let dir = TempDir::new(&format!("core-iso-handshake-{i}-{mode}"));
            let package = "provtarget-test-crasher";
            dir.copy_in(&cdylib(package), &cdylib_file_name(package));
            let script = dir.write(
                "helper.sh",
                format!(
                    "#!/bin/sh\ncase \"$1\" in\n__probe) printf '%s\\n' '{line}' >&4 ;;\n\
                     __serve) read -r request || exit 0; printf '%s\\n' '{line}' >&0; exec sleep 5 ;;\n\
                     esac\n"
                ),
            );
            provtarget_testsupport::set_mode(&script, 0o755);
            let config = ConfigBuilder::new()
                .flag(keys::DIRECTORIES, &dir.path().display().to_string())
                .flag(keys::ISOLATION, mode)
                .flag(keys::JWT_FILE, "")
                .build();
            let host = Host::start_isolated(config, None, Some(Helper::new(&script)));
            let library = host
                .report()
                .libraries
                .iter()
                .find(|l| l.path.ends_with(cdylib_file_name(package)))
                .expect("the library is listed");
            let reason = library.verdict.reason().unwrap_or("loaded");
            assert!(reason.contains(expected), "{mode}, {line}: {reason}");
            assert!(!reason.contains('\n'), "{reason}");
            assert_ne!(host.resolver_name().0, "Crasher", "{mode}");
        }
    }
}
