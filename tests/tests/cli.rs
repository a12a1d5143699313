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
    let cases: [(&[&str], &str); 4] = [
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
        (&["targets", "--timeout", "0"], "is not a duration"),
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
