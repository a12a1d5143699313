//! `provtarget plugins check FILE`, the vendor's CI gate.
mod common;
use common::*;

#[test]
fn a_good_plugin_passes_and_prints_its_info() {
    let dir = plugin_dir("pc-good", &["provtarget-dc-hint"]);
    let file = dir.path().join(cdylib_file_name("provtarget-dc-hint"));
    let run = provtarget(&["plugins", "check", &path_str(&file)]);
    run.ok();
    assert!(
        run.stdout
            .starts_with(&format!("{}\n    Status: loaded\n", path_str(&file))),
        "{}",
        run.stdout
    );
    // The plugin was built against this SDK: it declares the interface the host's
    // build exports (no literal to edit on an interface bump).
    let built = provtarget(&["buildinfo", "--json"]).json();
    let interface = format!(
        "Interface: {}",
        built["build"]["interface_version"].as_str().unwrap()
    );
    assert!(interface.starts_with("Interface: 1."), "{interface}");
    for want in [
        "Plugin: Acme DC hints Provisioning Target version 1.0.0",
        "Type: Provisioning Target Resolver",
        &interface,
        "Config: plugin.acme.dc_hint.file (default \"/etc/dc.json\")",
        "File: sha256:",
    ] {
        assert!(run.stdout.contains(want), "{want}:\n{}", run.stdout);
    }
    let json = provtarget(&["plugins", "check", "--json", &path_str(&file)]);
    json.ok();
    assert_eq!(json.json()["status"], "loaded");
}

#[test]
fn bad_files_fail_with_their_reason() {
    let dir = plugin_dir("pc-bad", &["provtarget-test-wrongtype"]);
    let text = dir.write("notes.so", "just text");
    let run = provtarget(&["plugins", "check", &path_str(&text)]);
    run.failed(1);
    assert!(
        run.stdout.starts_with(&format!(
            "{}\n    Status: rejected at format (not-elf)\n    Reason: ",
            path_str(&text)
        )),
        "{}",
        run.stdout
    );

    let agent = dir
        .path()
        .join(cdylib_file_name("provtarget-test-wrongtype"));
    let run = provtarget(&["plugins", "check", &path_str(&agent)]);
    run.failed(1);
    assert!(
        run.stdout
            .contains("\n    Status: rejected at plugin-type (wrong-type)\n    Reason: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("plugin Acme Agent is not a valid ProvisionTargetResolver"),
        "{}",
        run.stdout
    );

    let run = provtarget(&["plugins", "check", "--json", "/nonexistent/lib.so"]);
    run.failed(1);
    assert_eq!(run.json()["status"], "rejected");
    assert_eq!(run.json()["stage"], "open");
    assert_eq!(run.json()["kind"], "unreadable");
}
