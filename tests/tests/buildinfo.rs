//! `provtarget buildinfo`, text and JSON, against plugin directories built from real
//! cdylibs.
mod common;
use common::*;

const DC_HINT: &str = "Acme DC hints Provisioning Target";

#[test]
fn text_report_names_the_active_resolver_first_and_lists_every_library() {
    let dir = plugin_dir(
        "bi-text",
        &["provtarget-dc-hint", "provtarget-test-wrongtype"],
    );
    dir.write("README.txt", "not a plugin");
    dir.write("broken.so", "this is text, not a library");
    let run = provtarget(&["buildinfo", "--plugin-dir", &path_str(dir.path())]);
    run.ok();
    let out = &run.stdout;
    let settings = out
        .split("Server Settings:\n")
        .nth(1)
        .expect("Server Settings section");
    assert!(
        settings.starts_with(&format!(
            "    Provisioning Target Resolver: {DC_HINT} version 1.0.0\n"
        )),
        "{out}"
    );
    let plugins = out
        .split("Provisioning Target Plugins:\n")
        .nth(1)
        .expect("plugins section");
    // dc-hint: loaded and active, with version and a sha256 prefix.
    assert!(
        plugins.contains("libprovtarget_dc_hint.so\n        Status: loaded (active)"),
        "{out}"
    );
    assert!(
        plugins.contains(&format!("Plugin: {DC_HINT} version 1.0.0")),
        "{out}"
    );
    assert!(plugins.contains("File: sha256:"), "{out}");
    // The agent-typed plugin is refused with Choria's text, and the host went on.
    assert!(
        plugins
            .contains("libprovtarget_test_wrongtype.so\n        Status: rejected at plugin-type (wrong-type)\n"),
        "{out}"
    );
    assert!(
        plugins.contains(": plugin Acme Agent is not a valid ProvisionTargetResolver"),
        "{out}"
    );
    // The text file posing as a library is refused before anything runs.
    assert!(
        plugins.contains("broken.so\n        Status: rejected at format (not-elf)\n"),
        "{out}"
    );
    assert!(
        plugins.contains("README.txt\n        Status: skipped"),
        "{out}"
    );
}

#[test]
fn json_report_has_resolver_and_one_entry_per_library() {
    let dir = plugin_dir(
        "bi-json",
        &["provtarget-dc-hint", "provtarget-test-badctor"],
    );
    let run = provtarget(&["buildinfo", "--json", "--plugin-dir", &path_str(dir.path())]);
    run.ok();
    let v = run.json();
    assert_eq!(v["resolver"]["name"], DC_HINT);
    assert_eq!(v["resolver"]["version"], "1.0.0");
    let plugins = v["plugins"].as_array().expect("plugins array");
    assert_eq!(plugins.len(), 2, "{v:#}");
    let by_name = |file: &str| {
        plugins
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file} missing: {v:#}"))
    };
    let dc = by_name("libprovtarget_dc_hint.so");
    assert_eq!(dc["status"], "loaded");
    assert_eq!(dc["name"], DC_HINT);
    assert_eq!(dc["version"], "1.0.0");
    assert_eq!(dc["type"], "Provisioning Target Resolver");
    assert_eq!(dc["sha256"].as_str().unwrap().len(), 64);
    assert!(dc["reason"].is_null());
    let bad = by_name("libprovtarget_test_badctor.so");
    assert_eq!(bad["status"], "rejected");
    assert_eq!(bad["stage"], "constructor");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("constructor exploded on purpose"),
        "{bad:#}"
    );
    for p in plugins {
        for key in [
            "path", "status", "reason", "name", "version", "type", "sha256",
        ] {
            assert!(p.get(key).is_some(), "{key} missing in {p:#}");
        }
    }
}

#[test]
fn no_plugins_means_the_built_in_resolver_with_masked_secrets() {
    let dir = TempDir::new("bi-default");
    let token = jwt(&serde_json::json!({
        "cht": "s3cret-token", "chu": "prov.example.net:4222", "chs": true,
        "chusr": "prov", "chpwd": "hunter2"
    }));
    let jwt_file = dir.write("provisioning.jwt", &token);
    let run = provtarget(&[
        "buildinfo",
        "--plugin-dir",
        &path_str(&dir.path().join("none")),
        "--set",
        &format!("plugin.provtarget.jwt_file={}", path_str(&jwt_file)),
    ]);
    run.ok();
    run.stdout_has("    Provisioning Target Resolver: Choria JWT Resolver version ");
    assert!(
        !run.stdout.contains("s3cret-token"),
        "token leaked:\n{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("hunter2"),
        "password leaked:\n{}",
        run.stdout
    );
    run.stdout_has("*****");
    run.stdout_has("prov.example.net:4222");
}

#[test]
fn unknown_host_keys_and_developer_override_are_visible() {
    let dir = plugin_dir("bi-warn", &["provtarget-dc-hint"]);
    let conf = dir.write(
        "server.conf",
        format!(
            "# test\nplugin.provtarget.directories = {}\nplugin.provtarget.timeuot = 5\n",
            path_str(dir.path())
        ),
    );
    let run = provtarget(&[
        "buildinfo",
        "--config",
        &path_str(&conf),
        "--insecure-skip-owner-checks",
    ]);
    run.ok();
    run.stderr_has(&format!(
            "unknown configuration key plugin.provtarget.timeuot ({} line 3); did you mean plugin.provtarget.timeout?",
            path_str(&conf)
        ));
    run.stdout_has("Plugin Owner Checks: DISABLED");
    // The start-up warning is logged exactly once, and listed in the report.
    assert_eq!(
        run.stderr
            .matches("insecure_skip_owner_checks is on")
            .count(),
        1,
        "{}",
        run.stderr
    );
    run.stdout_has("Warnings:\n    insecure_skip_owner_checks is on");
    run.stdout_has(&format!("Configuration File: {}", path_str(&conf)));
}

#[test]
fn a_missing_explicit_config_file_is_a_one_line_error() {
    let run = provtarget(&["buildinfo", "--config", "/nonexistent/server.conf"]);
    run.failed(2);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    run.stderr_has("cannot read configuration file /nonexistent/server.conf");
}

#[test]
fn plugin_supplied_text_never_reaches_the_terminal_raw() {
    let dir = plugin_dir("bi-hostile", &["provtarget-test-hostileinfo"]);
    let run = provtarget(&["buildinfo", "--plugin-dir", &path_str(dir.path())]);
    run.ok();
    assert!(
        !run.stdout.contains('\x1b'),
        "raw escape in:\n{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x07'), "raw BEL in:\n{}", run.stdout);
    run.stdout_lacks("\nVendor: forged line");
    run.stdout_has("Plugin: Hostile\\u{1b}[31mRED version 0.1.0");
    run.stdout_has("Vendor: Evil\\nVendor: forged line");
    assert!(
        !run.stderr.contains('\x1b'),
        "raw escape in logs:\n{}",
        run.stderr
    );

    let file = dir
        .path()
        .join(cdylib_file_name("provtarget-test-hostileinfo"));
    let run = provtarget(&["plugins", "check", &path_str(&file)]);
    run.failed(1);
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
    run.stdout_has("Description: \\u{1b}]0;pwned title\\u{7}");
}
