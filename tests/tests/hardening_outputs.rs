//! Hostile output channels and hostile answers, through the real binary: a closed or
//! full stdout, SIGTERM and a second signal, credentials in errors, escape sequences
//! in paths and log fields, hosts that would print as other URLs, one JSON policy,
//! floods of targets, and a named resolver that is not loaded.
mod common;
use common::*;

use std::{
    fs::OpenOptions,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const SECRET: &str = "SECRETPW";

/// `provtarget args...` with a clean environment and the given stdout, not waited for.
fn spawn(args: &[&str], stdout: Stdio) -> Child {
    Command::new(provtarget_testsupport::provtarget_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(RUN_TAG, args.join(" "))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start provtarget")
}

/// [`wait_exit`], then what the child wrote to `stderr` (as [`collect`]ed, after a
/// moment for the collector to take in its last bytes).
fn exit_and_stderr(child: &mut Child, stderr: &Arc<Mutex<String>>) -> (Option<i32>, String) {
    let code = wait_exit(child);
    std::thread::sleep(Duration::from_millis(50));
    let text = stderr.lock().unwrap().clone();
    (code, text)
}

/// Waits for the exit (liveness limit 60 s) and returns the exit code.
fn wait_exit(child: &mut Child) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("provtarget still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {}", child.id())])
        .status()
        .expect("sh");
    assert!(status.success(), "kill -{signal} failed");
}

fn testkit_args<'a>(dir: &'a str, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["targets", "--config", "/dev/null", "--plugin-dir", dir];
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

// ---- (1) output errors ------------------------------------------------------------

#[test]
fn a_closed_stdout_pipe_ends_quietly_with_141() {
    let dir = plugin_dir("ho-pipe", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    let runs: Vec<Vec<&str>> = vec![
        vec!["buildinfo", "--config", "/dev/null", "--plugin-dir", &d],
        vec![
            "buildinfo",
            "--json",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &d,
        ],
        testkit_args(&d, &["testkit.targets=a.example:1"]),
    ];
    for args in runs {
        let mut child = spawn(&args, Stdio::piped());
        // The reading end closes before the host writes: every write is EPIPE.
        drop(child.stdout.take());
        let stderr = collect(child.stderr.take().unwrap());
        let (code, stderr) = exit_and_stderr(&mut child, &stderr);
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
        assert_no_panic(&stderr);
        assert!(!stderr.contains("provtarget:"), "quiet: {stderr}");
    }
}

#[test]
fn a_full_disk_gives_one_line_and_74() {
    let dir = plugin_dir("ho-full", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    let lib = path_str(&dir.path().join(cdylib_file_name("provtarget-testkit")));
    let runs: Vec<Vec<&str>> = vec![
        vec!["buildinfo", "--config", "/dev/null", "--plugin-dir", &d],
        testkit_args(&d, &["testkit.targets=a.example:1"]),
        vec![
            "targets",
            "--json",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &d,
            "--set",
            "testkit.targets=a.example:1",
        ],
        vec!["plugins", "check", "--insecure-skip-owner-checks", &lib],
    ];
    for args in runs {
        let full = OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let mut child = spawn(&args, Stdio::from(full));
        let stderr = collect(child.stderr.take().unwrap());
        let (code, stderr) = exit_and_stderr(&mut child, &stderr);
        assert_eq!(code, Some(74), "{args:?}: {stderr}");
        assert_no_panic(&stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("provtarget:"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("No space left on device"), "{stderr}");
    }
}

// ---- (2) signals ------------------------------------------------------------------

#[test]
fn sigterm_cancels_the_resolution_like_sigint() {
    let dir = plugin_dir("ho-term", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let mut child = spawn(&testkit_args(&d, &["testkit.mode=wait"]), Stdio::piped());
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        wait_for(&stdout, "Attempting provisioner resolution", &mut child);
        send(&child, signal);
        let (exit, stderr) = exit_and_stderr(&mut child, &stderr);
        assert_eq!(exit, Some(code), "SIG{signal}");
        assert!(
            stderr.contains(&format!("received SIG{signal}; cancelling the resolution")),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "provtarget: could not determine provisioning servers using Test Kit provisioning target plugin: context canceled"
            ),
            "{stderr}"
        );
        assert_no_panic(&stderr);
    }
}

#[test]
fn a_second_signal_during_the_grace_period_exits_at_once() {
    let dir = plugin_dir("ho-second", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    // `hang` ignores cancellation: without the second signal the host would wait out
    // its grace (in this process: 2 s, then the resolver is abandoned; in process
    // isolation: 1.8 s for the child to answer the cancel request, then it is killed).
    for mode in ["none", "process"] {
        let isolation = format!("plugin.provtarget.isolation={mode}");
        let mut child = spawn(
            &testkit_args(
                &d,
                &["testkit.mode=hang", "testkit.hang_ms=30000", &isolation],
            ),
            Stdio::piped(),
        );
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        wait_for(&stdout, "Attempting provisioner resolution", &mut child);
        send(&child, "TERM");
        wait_for(&stderr, "cancelling the resolution", &mut child);
        send(&child, "INT");
        let (code, stderr) = exit_and_stderr(&mut child, &stderr);
        assert_eq!(code, Some(130), "{mode}: {stderr}");
        assert!(
            stderr.contains("provtarget: received SIGINT again while cancelling; exiting at once"),
            "{mode}: {stderr}"
        );
        assert!(
            !stderr.contains("abandoned") && !stderr.contains("was killed"),
            "{mode}: did not wait out the grace: {stderr}"
        );
        // The host exited at once, without ending its resolver process: the child
        // still ends by itself (its socket closed, its parent gone).
        assert_no_processes_tagged(&d);
    }
}

#[test]
fn a_signal_while_configuring_exits_at_once_with_one_line() {
    let dir = plugin_dir("ho-conf", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    for command in ["targets", "buildinfo"] {
        let args = [
            "--log-level",
            "info",
            command,
            "--config",
            "/dev/null",
            "--plugin-dir",
            &d,
            "--set",
            "testkit.mode=hang-configure",
            "--set",
            "testkit.hang_ms=30000",
        ];
        let mut child = spawn(&args, Stdio::piped());
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        // Logged after loading, before configure (which then hangs for 30 s).
        wait_for(&stderr, "loaded provtarget plugin", &mut child);
        send(&child, "TERM");
        let (code, stderr) = exit_and_stderr(&mut child, &stderr);
        assert_eq!(code, Some(143), "{command}");
        assert!(
            stderr.contains("provtarget: interrupted by SIGTERM; exiting"),
            "{command}: {stderr}"
        );
        assert_eq!(
            *stdout.lock().unwrap(),
            "",
            "{command}: nothing half-written"
        );
    }
}

// ---- (3) secrets ------------------------------------------------------------------

#[test]
fn broker_passwords_never_appear_in_any_message() {
    let empty = TempDir::new("ho-secret");
    let d = path_str(empty.path());
    let urls = format!("plugin.provtarget.broker_urls=nats://user:{SECRET}@h:x");
    let base = [
        "--plugin-dir",
        d.as_str(),
        "--set",
        "plugin.provtarget.jwt_file=",
        "--set",
        &urls,
    ];
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["targets"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        let run = provtarget(&args);
        run.failed(1);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains(SECRET), "{all}");
        assert!(
            all.contains("could not parse host nats://*****@h:x"),
            "{all}"
        );
        let mut args = vec!["buildinfo"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        let run = provtarget(&args);
        run.ok();
        assert!(!format!("{}{}", run.stdout, run.stderr).contains(SECRET));
    }
    // A plugin's answer, and an entry that is not a URL.
    let dir = plugin_dir("ho-secret2", &["provtarget-testkit"]);
    for entry in [
        format!("tls://u:{SECRET}@h:y"),
        format!("u:{SECRET}@h:4222"),
    ] {
        let set = format!("testkit.targets={entry}");
        let run = provtarget(&[
            "targets",
            "--json",
            "--plugin-dir",
            &path_str(dir.path()),
            "--set",
            &set,
        ]);
        run.failed(1);
        assert!(
            !format!("{}{}", run.stdout, run.stderr).contains(SECRET),
            "{run:?}"
        );
    }
}

// ---- (4) escaping -----------------------------------------------------------------

#[test]
fn file_names_with_escape_sequences_cannot_forge_lines() {
    let root = TempDir::new("ho-esc");
    let evil = "d\u{1b}[2J\nFORGED line \u{202e}x";
    let dir = root.path().join(evil);
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        cdylib("provtarget-testkit"),
        dir.join(format!(
            "k\u{1b}]0;t\u{7}\nFORGED {}",
            cdylib_file_name("provtarget-testkit")
        )),
    )
    .unwrap();
    let pins = root.write("pins\u{1b}[31m\nFORGED", "");
    let config = root.write("conf\u{1b}[31m\nFORGED", "");
    let d = path_str(&dir);
    let (p, c) = (path_str(&pins), path_str(&config));
    let places = ["--config", &c, "--plugin-dir", &d, "--pins", &p];
    for level in ["info", "debug"] {
        let run = provtarget(&[&["--log-level", level, "buildinfo"][..], &places].concat());
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains('\u{1b}'), "raw ESC: {text}");
            assert!(!text.contains('\u{202e}'), "raw RLO: {text}");
            assert!(
                !text.lines().any(|l| l.starts_with("FORGED")),
                "forged line: {text}"
            );
        }
        for label in [
            "Configuration File: ",
            "Plugin Directories: ",
            "Plugin Pins: ",
        ] {
            assert!(
                run.stdout
                    .lines()
                    .any(|l| l.contains(label) && l.contains("\\u{1b}")),
                "{label} escaped: {}",
                run.stdout
            );
        }
    }
    // JSON carries the raw paths (serde escapes them once).
    let run = provtarget(&[&["buildinfo", "--json"][..], &places].concat());
    let v = run.json();
    assert_eq!(v["config_file"], c.as_str());
    assert_eq!(v["directories"][0], d.as_str());
    assert_eq!(v["pin_file"], p.as_str());
}

#[test]
fn json_values_are_raw_and_messages_are_the_printed_line() {
    let dir = plugin_dir("ho-json", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    // A value: a setting the plugin reports back (testkit.mode) holding an escape
    // sequence is raw in JSON (escaped once, by JSON), escaped in text.
    let mode = "x\u{1b}[31m";
    let set = format!("testkit.mode={mode}");
    let run = provtarget(&["buildinfo", "--json", "--plugin-dir", &d, "--set", &set]);
    assert_eq!(run.json()["settings"]["testkit.mode"], mode);
    let run = provtarget(&["buildinfo", "--plugin-dir", &d, "--set", &set]);
    assert!(
        run.stdout.contains("testkit.mode: x\\u{1b}[31m"),
        "{}",
        run.stdout
    );

    // A message: the error is the line printed on stderr, in JSON too (one line,
    // escaped once, not again).
    let run = provtarget(&[
        "targets",
        "--json",
        "--plugin-dir",
        &d,
        "--set",
        "testkit.targets=ev\u{1b}il:4222",
    ]);
    run.failed(1);
    let v = run.json();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("could not parse host ev\\u{1b}il:4222"),
        "{error}"
    );
    assert!(
        !error.contains('\u{1b}') && !error.contains("\\\\"),
        "{error}"
    );
    assert_eq!(v["failed"][0]["error"], error);
    assert!(
        run.stderr.contains(&format!("provtarget: {error}")),
        "{}",
        run.stderr
    );
}

// ---- (5) hosts that would print as other URLs ----------------------------------------

#[test]
fn hosts_holding_url_delimiters_or_format_characters_are_refused() {
    let dir = plugin_dir("ho-url", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    // Through the binary: format characters (which must also come out escaped) and
    // a few delimiters; the parser's unit tests in core/src/targets.rs cover the rest.
    for entry in [
        "a\u{202e}b:4222",
        "good.example%2f@evil:4222",
        "a\u{200b}b:4222",
        "h#x:4222",
        "1.2.3:4222",
    ] {
        let set = format!("testkit.targets={entry}");
        let run = provtarget(&["targets", "--plugin-dir", &d, "--set", &set]);
        run.failed(1);
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("provtarget: could not determine"))
            .unwrap_or_else(|| panic!("{entry}: {}", run.stderr));
        assert!(line.contains("could not parse host"), "{line}");
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{200b}'),
            "escaped: {line}"
        );
        assert!(!run.stdout.contains("Provisioning using"), "{}", run.stdout);
    }
}

// ---- (7) unbounded answers ----------------------------------------------------------

fn flood(label: &str, set: &str) -> Run {
    let dir = plugin_dir(label, &["provtarget-test-flood"]);
    provtarget(&[
        "targets",
        "--plugin-dir",
        &path_str(dir.path()),
        "--set",
        set,
    ])
}

/// [`flood`], which must fail with exit code 1 saying `says` on stderr.
#[track_caller]
fn flood_refused(label: &str, set: &str, says: &str) -> Run {
    let run = flood(label, set);
    run.failed(1);
    assert!(run.stderr.contains(says), "{}", run.stderr);
    run
}

#[test]
fn an_answer_over_the_target_limit_is_refused_with_the_numbers() {
    let run = flood_refused(
        "ho-flood",
        "flood.count=1000000",
        "provtarget: could not determine provisioning servers using Flood provisioning target plugin: it returned 1000000 targets; the limit is 1000",
    );
    assert_eq!(
        run.stdout,
        "Attempting provisioner resolution using: Flood\n"
    );
    assert!(
        run.stderr.len() < 4096,
        "{} bytes of stderr",
        run.stderr.len()
    );

    let run = flood("ho-flood-max", "flood.count=1000");
    run.ok();
    assert!(
        run.stdout.contains("Provisioning using 1000 broker(s):"),
        "{}",
        run.stdout
    );
}

#[test]
fn host_names_over_the_dns_limits_are_refused_with_the_numbers() {
    flood_refused(
        "ho-host",
        "flood.host_len=254",
        "host name is 254 bytes; the limit is 253",
    );
    flood_refused(
        "ho-label",
        "flood.host_len=64",
        "host name has a label of 64 bytes; the limit is 63",
    );
    let run = flood_refused(
        "ho-huge",
        "flood.host_len=52428800",
        "could not parse host: an entry of 52428805 bytes is over the limit of 1024 bytes",
    );
    assert!(
        run.stderr.len() < 4096,
        "the entry is not shown: {} bytes",
        run.stderr.len()
    );
}

// ---- (8) unclear answers ------------------------------------------------------------

#[test]
fn a_resolver_name_that_is_not_loaded_is_named_in_the_final_error() {
    let empty = TempDir::new("ho-unknown");
    let d = path_str(empty.path());
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec![
            "targets",
            "--plugin-dir",
            &d,
            "--resolver",
            "Acme Typo",
            "--set",
            "plugin.provtarget.jwt_file=",
        ];
        args.extend_from_slice(extra);
        let run = provtarget(&args);
        run.failed(1);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("provtarget: provisioning target plugin Choria JWT Resolver returned no servers; note: resolver \"Acme Typo\" named in plugin.provtarget.resolvers (or --resolver) is not loaded"),
            "{}",
            run.stderr
        );
        if !extra.is_empty() {
            assert!(run.json()["note"]
                .as_str()
                .unwrap()
                .contains("\"Acme Typo\""));
        }
    }
}
