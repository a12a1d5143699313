//! Hardening of the host itself (issue 20), through the real binary: logging that
//! can never stop provisioning, signals that end the process whatever it is doing,
//! honest exit paths, bounded scanning, children that start with only what the host
//! gives them, masking of malformed lines, pins read like the configuration, and the
//! verdict cache as a hint, never an authority.
mod common;
use common::*;

use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `provtarget args...` with a clean environment (plus `env`), not waited for.
fn spawn_with(args: &[&str], stdout: Stdio, stderr: Stdio, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(provtarget_testsupport::provtarget_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PROVTARGET_CACHE_DIR", test_cache_dir())
        .env(RUN_TAG, args.join(" "))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits for the exit (killing it and failing after `limit`, a liveness limit) and
/// returns the exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("provtarget still running {limit:?} after it was told to end");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(how: &str) {
    let status = Command::new("sh").args(["-c", how]).status().expect("sh");
    assert!(status.success(), "{how} failed");
}

fn testkit_args<'a>(dir: &'a str, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["targets", "--config", "/dev/null", "--plugin-dir", dir];
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

fn output_of(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("cannot run provtarget");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- (1) an unwritable stderr ---------------------------------------------------------

#[test]
fn a_full_or_closed_stderr_never_stops_provisioning() {
    let dir = plugin_dir("hs-stderr", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    let mut args = vec!["--log-level", "info"];
    // Warnings too: a key nobody declares, and the default directory after ours.
    args.extend(testkit_args(
        &d,
        &[
            "testkit.mode=log",
            "testkit.targets=nats://prov.example.net:4222",
            "plugin.provtarget.no_such_key=1",
        ],
    ));
    for isolation in ["none", "process"] {
        let set = format!("plugin.provtarget.isolation={isolation}");
        let mut a = args.clone();
        a.extend(["--set", &set]);
        // A full disk.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (code, stdout, _) = output_of(spawn_with(&a, Stdio::piped(), full.into(), &[]));
        assert_eq!(code, Some(0), "{isolation}: {stdout}");
        assert!(
            stdout.contains("Provisioning using 1 broker(s):")
                && stdout.contains("nats://prov.example.net:4222"),
            "{isolation}: {stdout}"
        );
        // Reported once, on the one channel left (text output).
        assert_eq!(
            stdout.matches("could not be written to stderr").count(),
            1,
            "{isolation}: {stdout}"
        );
        assert!(stdout.contains("No space left on device"), "{stdout}");
        // A pipe whose reader has gone.
        let mut child = spawn_with(&a, Stdio::piped(), Stdio::piped(), &[])
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        let out = collect(child.stdout.take().unwrap());
        let code = wait_exit(&mut child, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
        let stdout = out.lock().unwrap().clone();
        assert_eq!(code, Some(0), "{isolation}: {stdout}");
        assert!(
            stdout.contains("nats://prov.example.net:4222"),
            "{isolation}: {stdout}"
        );
    }
    // buildinfo, and JSON is never mixed with the summary.
    for json in [false, true] {
        let mut a = vec!["buildinfo", "--config", "/dev/null", "--plugin-dir", &d];
        if json {
            a.push("--json");
        }
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (code, stdout, _) = output_of(spawn_with(&a, Stdio::piped(), full.into(), &[]));
        assert_eq!(code, Some(0), "{stdout}");
        assert!(stdout.contains("Test Kit"), "{stdout}");
        if json {
            serde_json::from_str::<serde_json::Value>(&stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
        }
    }
}

// ---- (3) signals ----------------------------------------------------------------------

#[test]
fn sigterm_ends_a_process_stuck_in_a_library_constructor() {
    let dir = plugin_dir("hs-ctor-hang", &["provtarget-test-ctor-hang"]);
    let d = path_str(dir.path());
    for signal in ["TERM", "INT"] {
        let args = [
            "--log-level",
            "debug",
            "targets",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &d,
            "--set",
            "plugin.provtarget.isolation=none",
        ];
        let mut child = spawn_with(&args, Stdio::piped(), Stdio::piped(), &[])
            .spawn()
            .unwrap();
        let _out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        // Past the checks made from its bytes: the constructor runs (and hangs) next.
        wait_for(
            &err,
            "dlopen: the library's constructors run now",
            &mut child,
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the constructor should hang"
        );
        kill(&format!("kill -{signal} {}", child.id()));
        // Liveness limit: "promptly" is seconds; before the fix it was never.
        let code = wait_exit(&mut child, Duration::from_secs(20));
        let expected = if signal == "TERM" { 143 } else { 130 };
        assert_eq!(code, Some(expected), "{}", err.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let stderr = err.lock().unwrap().clone();
        assert!(
            stderr.contains(&format!("provtarget: interrupted by SIG{signal}; exiting")),
            "{stderr}"
        );
    }
}

#[test]
fn one_term_to_the_process_and_its_group_reports_the_failure_once() {
    let dir = plugin_dir("hs-group-term", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    for isolation in ["none", "process"] {
        let set = format!("plugin.provtarget.isolation={isolation}");
        let args = testkit_args(&d, &["testkit.mode=wait", &set]);
        let mut cmd = spawn_with(&args, Stdio::piped(), Stdio::piped(), &[]);
        // Its own process group, as under GNU timeout.
        cmd.process_group(0);
        let mut child = cmd.spawn().unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        wait_for(&out, "Attempting provisioner resolution", &mut child);
        std::thread::sleep(Duration::from_millis(200));
        // What GNU timeout does: the process, then its group.
        let pid = child.id();
        kill(&format!("kill -TERM {pid}; kill -TERM -{pid}"));
        let code = wait_exit(&mut child, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
        let stderr = err.lock().unwrap().clone();
        assert_eq!(code, Some(143), "{isolation}: {stderr}");
        assert!(!stderr.contains("exiting at once"), "{isolation}: {stderr}");
        assert_eq!(
            stderr.matches("cancelling the resolution").count(),
            1,
            "{isolation}: {stderr}"
        );
        assert_eq!(
            stderr
                .matches("could not determine provisioning servers using Test Kit")
                .count(),
            1,
            "{isolation}: the failure reason, once: {stderr}"
        );
        assert_no_processes_tagged(&d);
    }
}

// ---- (7) honest exit paths ------------------------------------------------------------

#[test]
fn help_version_and_a_closed_stdout_follow_the_exit_code_table() {
    for flag in ["--help", "--version"] {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (code, _, stderr) = output_of(spawn_with(&[flag], full.into(), Stdio::piped(), &[]));
        assert_eq!(code, Some(74), "{flag} into /dev/full: {stderr}");
        assert!(
            stderr.contains("cannot write the output to stdout"),
            "{stderr}"
        );
        // Into a pipe: all of it, exit 0.
        let (code, stdout, _) = output_of(spawn_with(&[flag], Stdio::piped(), Stdio::piped(), &[]));
        assert_eq!(code, Some(0));
        assert!(stdout.contains("provtarget"), "{stdout}");
    }
    // A closed descriptor 1 (the shell's `>&-`): an error, not a silent exit 0.
    let bin = provtarget_testsupport::provtarget_bin();
    for command in [
        "--version",
        "buildinfo --config /dev/null --plugin-dir /nonexistent",
    ] {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("exec \"$0\" {command} >&-"))
            .arg(&bin)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (code, _, stderr) = output_of(cmd);
        assert_eq!(code, Some(74), "{command}: {stderr}");
        assert!(
            stderr.contains("stdout (descriptor 1) was closed"),
            "{stderr}"
        );
    }
    // `>/dev/null` is not a closed stdout.
    let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
    let (code, _, stderr) = output_of(spawn_with(&["--version"], null.into(), Stdio::piped(), &[]));
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- (6) children start with only what the host gives them ----------------------------

/// What descriptor `fd` of process `pid` is (its `/proc` link), if open.
fn fd_target(pid: u32, fd: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Every open descriptor of `pid` as (number, target).
fn fds_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((n, fd_target(pid, n)?))
        })
        .collect()
}

#[test]
fn children_inherit_no_descriptor_and_no_configuration_variable_of_the_caller() {
    let dir = plugin_dir(
        "hs-fds",
        &["provtarget-testkit", "provtarget-test-ctor-hang"],
    );
    let d = path_str(dir.path());
    let secret_dir = TempDir::new("hs-fds-secret");
    let secret = secret_dir.write("secret.txt", "top secret\n");
    let secret = path_str(&secret);
    let bin = provtarget_testsupport::provtarget_bin();
    // probe: the ctor-hang library hangs in its `__probe` child (exec'd); process:
    // it hangs in a resolver child, and Test Kit waits in another. Without
    // configuration variables the first resolver child is forked at start-up (its
    // descriptors closed), with them every child is exec'd (its environment cut).
    for (isolation, with_env) in [("probe", true), ("process", true), ("process", false)] {
        let tag = format!("hs-fds {isolation} {with_env} {}", std::process::id());
        let script = format!(
            "exec 7<'{secret}'; exec \"$0\" targets --config /dev/null --plugin-dir '{d}' \
             --set testkit.mode=wait --set plugin.provtarget.isolation={isolation} \
             --set plugin.provtarget.probe_timeout=20s --set plugin.provtarget.cache_dir=none"
        );
        let mut cmd = Command::new("sh");
        cmd.env_clear();
        if with_env {
            // A secret in the host's configuration variables: no child is forked
            // (a fork keeps the environment block), and no child gets it.
            cmd.env("PROVTARGET_ETCD_PASSWORD", "env-S3CRET");
        }
        let mut host = cmd
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(RUN_TAG, &tag)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(host.stdout.take().unwrap());
        let err = collect(host.stderr.take().unwrap());
        let host_pid = host.id();
        // Watch every child of the run while it runs (liveness limit 60 s).
        let started = Instant::now();
        let mut host_had_it = false;
        let mut children_seen = std::collections::BTreeSet::new();
        loop {
            let ready = out
                .lock()
                .unwrap()
                .contains("Attempting provisioner resolution");
            if fd_target(host_pid, 7).is_some_and(|t| t == secret) {
                host_had_it = true;
            }
            for (pid, _) in processes_tagged(&tag) {
                if pid == host_pid {
                    continue;
                }
                let fds = fds_of(pid);
                if fds.is_empty() {
                    continue;
                }
                children_seen.insert(pid);
                let leaks = |fds: &[(u32, String)]| {
                    fds.iter()
                        .any(|(n, t)| *t == secret || (*n > 2 && t.contains("secret")))
                };
                if leaks(&fds) {
                    // A child caught between its fork and its `exec` (or, forked, before
                    // it closes what it inherited) still runs the host's code: judged
                    // again a moment later, once it runs as a child.
                    std::thread::sleep(Duration::from_millis(300));
                    let again = fds_of(pid);
                    assert!(
                        !leaks(&again),
                        "{isolation}: child {pid} holds the caller's descriptor: {again:?}"
                    );
                }
                let read_environ = || {
                    let bytes = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                let mut environ = read_environ();
                if environ.contains("env-S3CRET") {
                    // Perhaps caught before its `exec`, as above.
                    std::thread::sleep(Duration::from_millis(300));
                    environ = read_environ();
                }
                assert!(
                    !environ.contains("env-S3CRET"),
                    "{isolation}: child {pid} has the host's configuration variables: {environ}"
                );
            }
            let wanted = if isolation == "process" { 2 } else { 1 };
            if ready && children_seen.len() >= wanted && started.elapsed() > Duration::from_secs(1)
            {
                break;
            }
            if let Ok(Some(status)) = host.try_wait() {
                panic!(
                    "{isolation}: provtarget ended ({status}) early:\n{}\n{}",
                    out.lock().unwrap(),
                    err.lock().unwrap()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{isolation}: children seen {children_seen:?}; stdout {}; stderr {}",
                out.lock().unwrap(),
                err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The test can fail: the host itself did hold the descriptor.
        assert!(host_had_it, "{isolation}: the host never had descriptor 7");
        kill(&format!("kill -TERM {host_pid}"));
        let _ = wait_exit(&mut host, Duration::from_secs(60));
        assert_no_processes_tagged(&tag);
    }
}

// ---- (2) secrets in malformed lines ---------------------------------------------------

#[test]
fn malformed_lines_flags_and_values_naming_a_secret_are_masked_everywhere() {
    let dir = TempDir::new("hs-mask");
    let conf = dir.write(
        "server.conf",
        "plugin.provtarget.etcd.password: S3CRET-1\n\
         plugin.provtarget.http.header.Authorization: Bearer S3CRET-2\n\
         plugin.provtarget.etcd.password S3CRET-3\n\
         plugin.provtarget.jwt_file =\n\
         plugin.provtarget.broker_urls = nats://u:S3CRET-4@h:x\n",
    );
    let conf = path_str(&conf);
    let empty = TempDir::new("hs-mask-plugins");
    let d = path_str(empty.path());
    for args in [
        vec!["buildinfo", "--config", &conf, "--plugin-dir", &d],
        vec!["buildinfo", "--json", "--config", &conf, "--plugin-dir", &d],
        vec!["targets", "--config", &conf, "--plugin-dir", &d],
        vec!["targets", "--json", "--config", &conf, "--plugin-dir", &d],
    ] {
        let run = provtarget(&args);
        for n in 1..=4 {
            let secret = format!("S3CRET-{n}");
            run.stdout_lacks(&secret).stderr_lacks(&secret);
        }
        // The lines are still reported, masked.
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("plugin.provtarget.etcd.password: *****"),
            "{args:?}: {all}"
        );
        assert!(
            all.contains("plugin.provtarget.http.header.Authorization: *****"),
            "{args:?}: {all}"
        );
    }
    // A usage error of --set.
    let run = provtarget(&[
        "targets",
        "--plugin-dir",
        &d,
        "--set",
        "plugin.provtarget.etcd.password:S3CRET-5",
    ]);
    run.failed(2)
        .stderr_lacks("S3CRET-5")
        .stderr_has("plugin.provtarget.etcd.password: *****")
        .stderr_has("expected KEY=VALUE");
}

// ---- (4) the verdict cache is a hint, never an authority -------------------------------

#[test]
fn a_forged_cache_entry_never_runs_one_library_under_another_name() {
    const DC_HINT: &str = "Acme DC hints Provisioning Target";
    let plugins = plugin_dir("hs-forged", &["provtarget-dc-hint"]);
    let d = path_str(plugins.path());
    for mode in ["process", "none", "probe"] {
        let cache = TempDir::new("hs-forged-cache");
        provtarget_testsupport::set_mode(cache.path(), 0o755);
        let cache_set = format!("plugin.provtarget.cache_dir={}", cache.path().display());
        let isolation = format!("plugin.provtarget.isolation={mode}");
        // A cold run writes the entry.
        provtarget(&[
            "buildinfo",
            "--plugin-dir",
            &d,
            "--set",
            &cache_set,
            "--set",
            &isolation,
        ])
        .ok();
        let file = cache.path().join("verdicts.json");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(DC_HINT), "{text}");
        // Edited in place (same file, same owner and mode: the cache trusts it).
        std::fs::write(&file, text.replace(DC_HINT, "Test Kit")).unwrap();
        let run = provtarget(&[
            "--log-level",
            "info",
            "targets",
            "--plugin-dir",
            &d,
            "--set",
            &cache_set,
            "--set",
            &isolation,
            "--set",
            "plugin.provtarget.resolvers=Test Kit",
        ]);
        run.stderr_has("is not the plugin its verdict-cache entry describes")
            .stderr_has(&format!("name \"{DC_HINT}\", not \"Test Kit\""))
            .stdout_lacks("Resolved by: Test Kit");
        // The entry is dropped (or rewritten from the real library).
        let after = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(!after.contains("Test Kit"), "{mode}: {after}");
        // A following run is checked in full and tells the truth.
        let run = provtarget(&[
            "buildinfo",
            "--json",
            "--plugin-dir",
            &d,
            "--set",
            &cache_set,
            "--set",
            &isolation,
        ]);
        run.ok().stdout_lacks("Test Kit").stdout_has(DC_HINT);
    }
}

// ---- (5) scanning: bounded log, duplicates from the cache ------------------------------

#[test]
fn junk_files_are_named_a_few_times_then_counted() {
    let dir = plugin_dir("hs-junk", &["provtarget-testkit"]);
    for i in 0..200 {
        dir.write(&format!("libjunk{i:04}.so"), "");
    }
    let d = path_str(dir.path());
    for isolation in ["none", "process"] {
        let set = format!("plugin.provtarget.isolation={isolation}");
        let run = provtarget(&[
            "buildinfo",
            "--json",
            "--plugin-dir",
            &d,
            "--set",
            "plugin.provtarget.cache_dir=none",
            "--set",
            &set,
        ]);
        run.ok();
        // Every file is still in the report.
        let report = run.json();
        let libraries = report["plugins"].as_array().expect("plugins[]");
        assert_eq!(libraries.len(), 201, "{isolation}");
        // The log names a few, then counts the rest, on one line.
        let named = run.stderr.matches("refused plugin library").count();
        assert!(named <= 10, "{isolation}: {named} lines:\n{}", run.stderr);
        run.stderr_has("190 more plugin libraries were refused (200 in all");
        assert!(
            run.stderr.lines().count() < 30,
            "{isolation}: the log is not bounded:\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_duplicate_is_answered_from_the_cache_and_its_refusal_names_the_winner() {
    let dir = TempDir::new("hs-dup");
    let lib = cdylib("provtarget-dc-hint");
    // An upgrade left the old file beside the new one: one plugin name, two files.
    dir.copy_in(&lib, "libacme-1.0.so");
    dir.copy_in(&lib, "libacme-1.1.so");
    let d = path_str(dir.path());
    let cache = TempDir::new("hs-dup-cache");
    provtarget_testsupport::set_mode(cache.path(), 0o755);
    let cache_set = format!("plugin.provtarget.cache_dir={}", cache.path().display());
    let args = [
        "buildinfo",
        "--json",
        "--plugin-dir",
        &d,
        "--set",
        &cache_set,
        "--set",
        "plugin.provtarget.isolation=none",
    ];
    let record = |run: &Run, file: &str| {
        run.json()["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(file))
            .cloned()
            .unwrap_or_else(|| panic!("no record of {file}"))
    };
    let cold = provtarget(&args);
    cold.ok();
    let dup = record(&cold, "libacme-1.1.so");
    assert_eq!(dup["kind"], "duplicate", "{dup}");
    let reason = dup["reason"].as_str().unwrap();
    assert!(
        reason.contains("libacme-1.0.so (version 1.0.0), which wins (the higher plugin version"),
        "{reason}"
    );
    // Warm: the duplicate is judged from the cache, not loaded again.
    let warm = provtarget(&args);
    warm.ok();
    let dup = record(&warm, "libacme-1.1.so");
    assert_eq!(dup["kind"], "duplicate", "{dup}");
    assert_eq!(dup["cached"], true, "{dup}");
}

#[test]
fn of_two_files_with_one_plugin_name_the_higher_version_wins() {
    let dir = TempDir::new("hs-dup-version");
    let lib = cdylib("provtarget-dc-hint");
    let bytes = std::fs::read(&lib).unwrap();
    // The plugin's version string (not abi_stable's `std;1.0.0` layout names).
    let at = bytes
        .windows(5)
        .enumerate()
        .position(|(i, w)| w == b"1.0.0" && i > 0 && bytes[i - 1] != b';')
        .expect("the plugin's version string");
    let mut newer = bytes.clone();
    newer[at..at + 5].copy_from_slice(b"1.9.0");
    // The old file sorts first: scan order alone would keep it.
    dir.copy_in(&lib, "libacme-1.0.so");
    let newer_path = dir.write("libacme-1.1.so", "");
    std::fs::write(&newer_path, &newer).unwrap();
    provtarget_testsupport::set_mode(&newer_path, 0o644);
    let d = path_str(dir.path());
    for isolation in ["none", "process"] {
        let set = format!("plugin.provtarget.isolation={isolation}");
        let run = provtarget(&[
            "buildinfo",
            "--json",
            "--plugin-dir",
            &d,
            "--set",
            "plugin.provtarget.cache_dir=none",
            "--set",
            &set,
        ]);
        run.ok();
        let report = run.json();
        let find = |file: &str| {
            report["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["path"].as_str().unwrap().ends_with(file))
                .cloned()
                .unwrap()
        };
        let (old, new) = (find("libacme-1.0.so"), find("libacme-1.1.so"));
        assert_eq!(new["status"], "loaded", "{isolation}: {new}");
        assert_eq!(
            report["resolver"]["version"], "1.9.0",
            "{isolation}: {report}"
        );
        assert_eq!(old["kind"], "duplicate", "{isolation}: {old}");
        let reason = old["reason"].as_str().unwrap();
        assert!(
            reason
                .contains("libacme-1.1.so (version 1.9.0), which wins (the higher plugin version"),
            "{isolation}: {reason}"
        );
    }
}

// ---- (7) bounded log lines ------------------------------------------------------------

#[test]
fn a_huge_value_is_never_a_huge_log_line() {
    let empty = TempDir::new("hs-long");
    let d = path_str(empty.path());
    // In the configuration file (one argument or variable may hold 128 KiB at most).
    let huge = "r".repeat(500 * 1024);
    let conf = empty.write(
        "server.conf",
        format!("plugin.provtarget.resolvers = {huge}\n"),
    );
    let conf = path_str(&conf);
    let run = provtarget(&["targets", "--config", &conf, "--plugin-dir", &d]);
    // It is reported (the resolver is not loaded), in lines of bounded length.
    assert!(
        run.stderr.contains("rrrr"),
        "{}",
        &run.stderr[..run.stderr.len().min(500)]
    );
    let longest = run.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 17 * 1024, "a log line of {longest} bytes");
}

#[test]
fn a_plugin_name_cannot_forge_log_fields() {
    let dir = TempDir::new("hs-forge");
    let bytes = std::fs::read(cdylib("provtarget-testkit")).unwrap();
    // "Test Kit" renamed, same length, to a name that reads as two log fields.
    let mut forged = bytes.clone();
    let mut found = 0;
    let mut i = 0;
    while i + 8 <= forged.len() {
        if &forged[i..i + 8] == b"Test Kit" {
            forged[i..i + 8].copy_from_slice(b"x=1 ok=2");
            found += 1;
        }
        i += 1;
    }
    assert!(found > 0, "the plugin's name is in its library");
    let lib = dir.write("libforged.so", "");
    std::fs::write(&lib, &forged).unwrap();
    provtarget_testsupport::set_mode(&lib, 0o644);
    let d = path_str(dir.path());
    for (command, isolation) in [
        ("buildinfo", "none"),
        ("buildinfo", "process"),
        ("targets", "none"),
    ] {
        let set = format!("plugin.provtarget.isolation={isolation}");
        let run = provtarget(&[
            "--log-level",
            "info",
            command,
            "--plugin-dir",
            &d,
            "--set",
            "plugin.provtarget.cache_dir=none",
            "--set",
            &set,
        ]);
        run.stdout_has("x=1 ok=2");
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("loaded provtarget plugin"))
            .unwrap_or_else(|| panic!("{isolation}: no load line:\n{}", run.stderr));
        assert!(line.contains("plugin=\"x=1 ok=2\""), "{isolation}: {line}");
        assert!(!line.contains("plugin=x=1"), "{isolation}: {line}");
        // Nor an empty field (targets hashes nothing without pins or a cache).
        assert!(!line.contains("sha256= "), "{command} {isolation}: {line}");
        assert_eq!(
            run.stderr.matches("loaded provtarget plugin").count(),
            1,
            "{command} {isolation}: one line per verdict:\n{}",
            run.stderr
        );
    }
}

#[test]
fn plugins_check_shows_its_refusal_once() {
    let dir = plugin_dir("hs-check-once", &["provtarget-test-noroot"]);
    let file = dir.path().join(cdylib_file_name("provtarget-test-noroot"));
    let file = path_str(&file);
    let run = provtarget(&["plugins", "check", &file]);
    run.failed(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(
        all.matches("it does not export the provtarget root module")
            .count(),
        1,
        "{all}"
    );
}
