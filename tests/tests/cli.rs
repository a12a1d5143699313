//! Command-line surface: help on every command, one-line errors for bad input.
mod common;
use common::*;

#[test]
fn every_command_has_help() {
    for (args, wants) in [
        (
            vec!["--help"],
            vec!["buildinfo", "targets", "plugins", "--log-level"],
        ),
        (
            vec!["buildinfo", "--help"],
            vec!["--config", "--plugin-dir", "--json", "--resolver", "--set"],
        ),
        (
            vec!["targets", "--help"],
            vec!["--timeout", "--json", "--plugin-dir"],
        ),
        (vec!["plugins", "--help"], vec!["check"]),
        (
            vec!["plugins", "check", "--help"],
            vec!["FILE", "--pins", "--json"],
        ),
    ] {
        let run = provtarget(&args);
        run.ok();
        for want in wants {
            assert!(
                run.stdout.contains(want),
                "{args:?} help lacks {want}:\n{}",
                run.stdout
            );
        }
    }
}

#[test]
fn bad_flag_values_are_one_line_errors_naming_the_fix() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--log-level", "loud", "buildinfo"],
            "--log-level \"loud\" is not a level or filter",
        ),
        (
            &["buildinfo", "--set", "novalue"],
            "--set \"novalue\": expected KEY=VALUE",
        ),
        (
            &["targets", "--timeout", "soon"],
            "--timeout \"soon\" is not a duration; use seconds (30), or 500ms, 30s, 2m",
        ),
        (
            &["targets", "--timeout", "0"],
            "is too short to resolve anything",
        ),
        (&["targets", "--timeout", "0.5ms"], "use at least 10ms"),
        (
            &["targets", "--timeout", "99999h"],
            "longer than the maximum of 24h",
        ),
    ];
    for (args, want) in cases {
        let run = provtarget(args);
        run.failed(2);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
}

#[cfg(unix)]
#[test]
fn a_non_utf8_environment_variable_is_not_a_crash() {
    use std::{ffi::OsString, os::unix::ffi::OsStringExt};
    let dir = TempDir::new("cli-env");
    let none = path_str(&dir.path().join("none"));
    let run = provtarget_env(
        &["buildinfo", "--plugin-dir", &none],
        &[
            ("LANG_JUNK", OsString::from_vec(vec![0xff, 0xfe])),
            (
                "PROVTARGET_SRV_DOMAIN",
                OsString::from_vec(vec![b'x', 0xff]),
            ),
        ],
    );
    run.ok();
    assert!(
        run.stderr
            .contains("environment variable PROVTARGET_SRV_DOMAIN is not valid UTF-8; ignored"),
        "{}",
        run.stderr
    );
}

#[test]
fn credentials_in_broker_urls_are_not_shown() {
    let dir = TempDir::new("cli-creds");
    let none = path_str(&dir.path().join("none"));
    let run = provtarget(&[
        "buildinfo",
        "--plugin-dir",
        &none,
        "--set",
        "plugin.provtarget.broker_urls=nats://prov:hunter2@b.example:4222",
    ]);
    run.ok();
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert!(
        run.stdout.contains("nats://*****@b.example:4222"),
        "{}",
        run.stdout
    );
}
