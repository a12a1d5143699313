//! `provtarget targets`: success, failure, timeouts, chains and Choria's parsing rules,
//! through the real binary and real plugins.
mod common;
use common::*;

const DC_HINT: &str = "Acme DC hints Provisioning Target";

fn testkit_dir(label: &str) -> TempDir {
    plugin_dir(label, &["provtarget-testkit"])
}

#[test]
fn dc_hint_resolves_like_choria_tool_provisioner() {
    let dir = plugin_dir("tg-dc", &["provtarget-dc-hint"]);
    let hint = dir.write("dc.json", r#"{"datacenter": "lon1"}"#);
    let run = targets_in(
        &dir,
        &[&format!("plugin.acme.dc_hint.file={}", path_str(&hint))],
        &[],
    );
    run.ok();
    assert_eq!(
        run.stdout,
        format!(
            "Attempting provisioner resolution using: {DC_HINT}\nProvisioning using 1 broker(s):\n   nats://_provision.lon1.example.net:4222\n\
             Provenance: datacenter hint {} over template _provision.{{dc}}.example.net:4222\n",
            path_str(&hint)
        )
    );
}

#[test]
fn json_output_lists_servers() {
    let dir = testkit_dir("tg-json");
    let run = targets_in(
        &dir,
        &["testkit.targets=a.example:4222, tls://B.example:4223"],
        &["--json"],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["resolver"], "Test Kit");
    assert_eq!(
        v["servers"],
        serde_json::json!(["nats://a.example:4222", "tls://B.example:4223"])
    );
}

#[test]
fn resolver_errors_and_empty_results_use_choria_texts() {
    let dir = testkit_dir("tg-err");
    let run = targets_in(&dir, &["testkit.mode=error"], &[]);
    run.failed(1);
    run.stderr_has("could not determine provisioning servers using Test Kit provisioning target plugin: testkit was told to fail");

    let run = targets_in(&dir, &["testkit.mode=empty"], &[]);
    run.failed(1);
    run.stderr_has("provisioning target plugin Test Kit returned no servers");

    let run = targets_in(&dir, &["testkit.mode=panic-targets"], &[]);
    run.failed(1);
    run.stderr_has("plugin Test Kit panicked in targets: testkit was told to panic in targets");
}

#[test]
fn timeout_cancels_a_resolver_that_waits_on_the_host() {
    let dir = testkit_dir("tg-timeout");
    let run = targets_in(&dir, &["testkit.mode=wait"], &["--timeout", "300ms"]);
    // A cooperative resolver is not abandoned.
    run.deadline_honoured().stderr_has(
        "could not determine provisioning servers using Test Kit provisioning target plugin: context deadline exceeded",
    );
}

#[test]
fn a_resolver_ignoring_cancellation_is_abandoned_and_reported() {
    // In-process (isolation none): a thread cannot be killed, only abandoned. (In a
    // child process it is killed: tests/tests/isolation.rs.)
    let dir = testkit_dir("tg-hang");
    let run = targets_in(
        &dir,
        &[
            "testkit.mode=hang",
            "testkit.hang_ms=30000",
            "plugin.provtarget.isolation=none",
        ],
        &["--timeout", "200ms"],
    );
    run.failed(1);
    run.stderr_has("context deadline exceeded (last error: the resolver ignored cancellation");
    run.stderr_has("abandoned");
}

#[test]
fn the_chain_falls_back_to_the_next_resolver() {
    let dir = plugin_dir("tg-chain", &["provtarget-testkit", "provtarget-dc-hint"]);
    let hint = dir.write("dc.json", r#"{"datacenter": "par3"}"#);
    let hint_set = format!("plugin.acme.dc_hint.file={}", path_str(&hint));
    let chain = [
        "--resolver",
        "Test Kit",
        "--resolver",
        DC_HINT,
        "--timeout",
        "5s",
    ];

    // Test Kit fails: dc-hint answers.
    let run = targets_in(&dir, &["testkit.mode=error", &hint_set], &chain);
    run.ok();
    assert!(
        run.stdout
            .starts_with("Attempting provisioner resolution using: Test Kit\n"),
        "{}",
        run.stdout
    );
    run.stdout_has(&format!("Resolved by: {DC_HINT}"));
    run.stdout_has("   nats://_provision.par3.example.net:4222\n");
    run.stderr_has("testkit was told to fail; trying Acme DC hints");

    // Test Kit misses its deadline: dc-hint answers.
    let run = targets_in(
        &dir,
        &["testkit.mode=wait", &hint_set],
        &[
            "--resolver",
            "Test Kit",
            "--resolver",
            DC_HINT,
            "--timeout",
            "300ms",
        ],
    );
    run.ok();
    run.stdout_has("nats://_provision.par3.example.net:4222");

    // Test Kit returns nothing: the built-in default with broker URLs answers.
    let run = targets_in(
        &dir,
        &[
            "testkit.mode=empty",
            "plugin.provtarget.broker_urls=fallback.example:4222",
        ],
        &[
            "--resolver",
            "Test Kit",
            "--resolver",
            "default",
            "--timeout",
            "5s",
        ],
    );
    run.ok();
    run.stdout_has("Resolved by: Choria JWT Resolver");
    run.stdout_has("   nats://fallback.example:4222\n");
}

#[test]
fn several_plugins_without_a_choice_use_the_first_by_file_name_and_warn() {
    // libprovtarget_dc_hint.so sorts before libprovtarget_testkit.so.
    let dir = plugin_dir("tg-several", &["provtarget-testkit", "provtarget-dc-hint"]);
    let run = provtarget(&["buildinfo", "--json", "--plugin-dir", &path_str(dir.path())]);
    run.ok();
    assert_eq!(run.json()["resolver"]["name"], DC_HINT);
    run.stderr_has("several resolver plugins are loaded; using Acme DC hints Provisioning Target");
    run.stderr_has("ignoring Test Kit");
}

#[test]
fn plugin_log_lines_carry_the_plugin_field() {
    let dir = testkit_dir("tg-log");
    let run = targets_in(
        &dir,
        &["testkit.mode=log", "testkit.targets=x.example:1"],
        &["--log-level", "trace"],
    );
    run.ok();
    for line in [
        "testkit error line",
        "testkit warn line",
        "testkit info line",
        "testkit debug line",
        "testkit trace line",
    ] {
        let found = run
            .stderr
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{line} missing:\n{}", run.stderr));
        assert!(found.contains("plugin=\"Test Kit\""), "{found}");
    }
    // The default level hides info and below.
    let run = targets_in(
        &dir,
        &["testkit.mode=log", "testkit.targets=x.example:1"],
        &[],
    );
    run.ok();
    run.stderr_has("testkit warn line");
    run.stderr_lacks("testkit info line");
}

/// Every parsing example of DESIGN §4, end to end.
#[test]
fn returned_strings_are_parsed_like_choria() {
    let dir = testkit_dir("tg-parse");
    let good = [
        ("foo:4222", "nats://foo:4222"),
        ("tls://h:4222", "tls://h:4222"),
        ("TLS://h:4222", "tls://h:4222"),
        ("nats://u:p@h:4222/p", "nats://h:4222"),
        ("[::1]:4222", "nats://[::1]:4222"),
    ];
    for (entry, want) in good {
        let run = targets_in(&dir, &[&format!("testkit.targets={entry}")], &["--json"]);
        run.ok();
        assert_eq!(run.json()["servers"], serde_json::json!([want]), "{entry}");
    }
    let bad = [
        (
            "foo",
            "could not parse host foo: address foo: missing port in address",
        ),
        ("x:x", "could not parse host port x:x"),
        ("h:99999", "out of range"),
        ("a:b:c", "too many colons"),
    ];
    for (entry, want) in bad {
        let run = targets_in(
            &dir,
            &[&format!("testkit.targets=ok.example:1,{entry}")],
            &[],
        );
        run.failed(1);
        assert!(
            run.stderr.contains("could not determine provisioning servers using Test Kit provisioning target plugin: ")
                && run.stderr.contains(want),
            "{entry}: {}",
            run.stderr
        );
    }
}
