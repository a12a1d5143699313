//! The process-mode adapter through the library API, with the real `provtarget`
//! binary as the helper and the hostile Crasher plugin: a crashed resolver process is
//! restarted on a later call, after Choria's backoff, and configured again.
use std::time::{Duration, Instant};

use provtarget::{
    config::{keys, ConfigBuilder},
    host::{Failure, Host},
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
