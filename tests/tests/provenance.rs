//! Interface 1.2's provenance, end to end through the real binary: a 1.2 plugin's
//! "where the answer came from" reaches `targets` text, JSON and the log in both
//! isolation modes, bounded and escaped; plugins built against the frozen 1.0 and 1.1
//! contracts (separate workspaces) keep resolving, with no provenance.

mod common;

use common::*;
use serde_json::Value;

const MODES: [&str; 2] = ["none", "process"];

fn isolation(mode: &str) -> String {
    format!("plugin.provtarget.isolation={mode}")
}

/// The `Provenance:` lines `targets` printed.
fn provenance_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Provenance:"))
        .collect()
}

#[test]
fn a_1_2_plugins_provenance_is_shown_in_text_json_and_log_in_every_isolation_mode() {
    let dir = plugin_dir("pv-ok", &["provtarget-testkit"]);
    let said = "etcd key /choria/prov revision 42 via http://10.1.2.3:2379";
    for mode in MODES {
        let sets = [
            isolation(mode),
            "testkit.targets=prov1.example.net:4222".to_string(),
            format!("testkit.provenance={said}"),
        ];
        let run = targets_in(&dir, &sets, &["--log-level", "info"]);
        run.ok();
        assert_eq!(
            provenance_lines(&run.stdout),
            [format!("Provenance: {said}")],
            "{mode}: {}",
            run.stdout
        );
        // After the broker list.
        let brokers = run.stdout.find("prov1.example.net:4222").unwrap();
        assert!(run.stdout.find("Provenance:").unwrap() > brokers, "{mode}");
        let logged = run
            .stderr
            .lines()
            .find(|l| l.contains("answer provenance"))
            .unwrap_or_else(|| panic!("{mode}: not logged:\n{}", run.stderr));
        assert!(logged.contains(said), "{mode}: {logged}");
        assert!(logged.contains("plugin=\"Test Kit\""), "{mode}: {logged}");

        let run = targets_in(&dir, &sets, &["--json"]);
        run.ok();
        let doc = run.json();
        assert_eq!(doc["provenance"], said, "{mode}: {doc:#}");
        assert_eq!(doc["servers"][0], "nats://prov1.example.net:4222");
    }
}

#[test]
fn a_hostile_provenance_is_cut_to_512_bytes_and_escaped_in_every_isolation_mode() {
    let dir = plugin_dir("pv-hostile", &["provtarget-testkit"]);
    let hostile = format!(
        "from nats://user:hunter2@10.0.0.1:4222\n\x1b[2Jfake line {}",
        "é".repeat(5000)
    );
    for mode in MODES {
        let sets = [
            isolation(mode),
            "testkit.targets=prov1.example.net:4222".to_string(),
            format!("testkit.provenance={hostile}"),
        ];
        for json in [false, true] {
            let extra: &[&str] = if json { &["--json"] } else { &[] };
            let run = targets_in(&dir, &sets, extra);
            run.ok();
            let shown = if json {
                run.json()["provenance"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{mode}: {}", run.stdout))
                    .to_string()
            } else {
                let lines = provenance_lines(&run.stdout);
                assert_eq!(lines.len(), 1, "{mode}: {}", run.stdout);
                lines[0].trim_start_matches("Provenance: ").to_string()
            };
            assert!(
                shown.len() <= 512,
                "{mode} json={json}: {} bytes",
                shown.len()
            );
            assert!(shown.ends_with('…'), "{mode} json={json}: {shown}");
            assert!(
                shown.starts_with("from nats://*****@10.0.0.1:4222\\n\\u{1b}[2Jfake line é"),
                "{mode} json={json}: {shown}"
            );
            assert!(!shown.contains("hunter2"), "{mode} json={json}: {shown}");
            assert!(
                !shown.chars().any(char::is_control),
                "{mode} json={json}: {shown:?}"
            );
            // Nothing of it leaked on other lines of the text output.
            assert!(!run.stdout.contains("hunter2"), "{mode}: {}", run.stdout);
        }
    }
}

#[test]
fn a_resolver_that_says_nothing_has_no_provenance() {
    let dir = plugin_dir("pv-none", &["provtarget-testkit"]);
    for mode in MODES {
        let sets = [
            isolation(mode),
            "testkit.targets=prov1.example.net:4222".to_string(),
        ];
        let run = targets_in(&dir, &sets, &[]);
        run.ok();
        assert!(provenance_lines(&run.stdout).is_empty(), "{}", run.stdout);
        let doc = targets_in(&dir, &sets, &["--json"]).json();
        assert_eq!(doc.get("provenance"), Some(&Value::Null), "{mode}: {doc:#}");
    }
}

#[test]
fn plugins_built_against_1_0_and_1_1_resolve_unchanged_without_provenance() {
    let fixtures = [
        (
            provtarget_testsupport::legacy_1_0_plugin(),
            "Legacy 1.0 Resolver",
            "legacy.example.net:4222",
        ),
        (
            provtarget_testsupport::legacy_1_1_plugin(),
            "Legacy 1.1 Resolver",
            "legacy11.example.net:4222",
        ),
    ];
    for (lib, name, target) in fixtures {
        let dir = TempDir::new("pv-legacy");
        dir.copy_in(&lib, &cdylib_file_name("provtarget-test-legacy"));
        for mode in MODES {
            let sets = [isolation(mode)];
            let run = targets_in(&dir, &sets, &[]);
            run.ok();
            run.stdout_has(&format!("Attempting provisioner resolution using: {name}"));
            run.stdout_has(&format!("   nats://{target}"));
            assert!(provenance_lines(&run.stdout).is_empty(), "{}", run.stdout);

            let doc = targets_in(&dir, &sets, &["--json"]).json();
            assert_eq!(doc["resolver"], name, "{mode}: {doc:#}");
            assert_eq!(doc["servers"][0], format!("nats://{target}"));
            assert_eq!(doc.get("provenance"), Some(&Value::Null), "{mode}: {doc:#}");
        }
    }
}

#[test]
fn buildinfo_reads_each_fixture_through_its_own_interface() {
    let dir = TempDir::new("pv-buildinfo");
    dir.copy_in(
        &provtarget_testsupport::legacy_1_1_plugin(),
        &cdylib_file_name("provtarget-test-legacy-1-1"),
    );
    let run = run_in::<&str>("buildinfo", &dir, &[], &["--json"]);
    run.ok();
    let text = run.stdout.clone();
    assert!(text.contains("\"1.1.0\""), "{text}");
    assert!(text.contains("plugin.legacy11.zone"), "{text}");
}
