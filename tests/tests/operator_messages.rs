//! Every mistake named where the operator looks (issue 21, host side), through the
//! real binary and real plugins: the chain result in text and JSON, the one JSON shape
//! of each command validated against its schema in `schemas/`, the last error after
//! SIGTERM, and a stop signal to the process group told as an interruption.
mod common;
use common::*;

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

const TESTKIT: &str = "Test Kit";

/// Validates `doc` against `schemas/<file>` (itself checked against the JSON Schema
/// meta-schema first), failing with every error and the document.
#[track_caller]
fn assert_matches_schema(file: &str, doc: &Value) {
    let path = provtarget_testsupport::workspace_root()
        .join("schemas")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {e}", path.display());
    }
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("cannot compile {}: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match {file}:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

/// The sets that make the built-in resolver answer with one broker.
fn builtin_answers() -> [&'static str; 2] {
    [
        "plugin.provtarget.jwt_file=",
        "plugin.provtarget.broker_urls=prov.example.net:4222",
    ]
}

fn keys(doc: &Value) -> Vec<String> {
    let mut k: Vec<String> = doc
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn targets_json_is_one_shape_for_success_and_failure_and_matches_its_schema() {
    let dir = plugin_dir("om-shape", &["provtarget-testkit"]);
    let ok = targets_in(&dir, &["testkit.targets=a.example:4222"], &["--json"]);
    ok.ok();
    let ok = ok.json();
    assert_matches_schema("targets.schema.json", &ok);
    assert_eq!(ok["schema"], "provtarget/targets/1");
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["resolver"], TESTKIT);
    assert_eq!(ok["servers"], serde_json::json!(["nats://a.example:4222"]));
    assert_eq!(
        ok["chain"],
        serde_json::json!([{"resolver": TESTKIT, "state": "answered", "reason": null}])
    );

    for (mode, kind) in [("error", "failed"), ("empty", "no-servers")] {
        let run = targets_in(&dir, &[format!("testkit.mode={mode}")], &["--json"]);
        run.failed(1);
        let failed = run.json();
        assert_matches_schema("targets.schema.json", &failed);
        assert_eq!(
            keys(&failed),
            keys(&ok),
            "one shape for success and failure"
        );
        assert_eq!(failed["ok"], false);
        assert_eq!(failed["kind"], kind);
        assert_eq!(failed["servers"], serde_json::json!([]));
        assert!(failed["resolver"].is_null());
        // The error is the very line printed last.
        let last = run.stderr.lines().last().unwrap_or_default();
        assert_eq!(
            format!("provtarget: {}", failed["error"].as_str().unwrap()),
            last
        );
        assert_eq!(failed["chain"][0]["state"], "failed");
        assert_eq!(failed["chain"][0]["reason"], failed["error"]);
    }
}

#[test]
fn a_chosen_resolver_that_cannot_start_is_named_in_the_final_line_and_the_chain() {
    let dir = plugin_dir("om-disabled", &["provtarget-testkit"]);
    let sets = ["testkit.mode=fail-configure", "plugin.provtarget.jwt_file="];
    let run = targets_in(&dir, &sets, &["--resolver", TESTKIT, "--json"]);
    run.failed(1);
    let doc = run.json();
    assert_matches_schema("targets.schema.json", &doc);
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    // The built-in resolver stood in and found nothing; the final line still names
    // the resolver that was chosen, and why it could not start.
    assert!(
        last.contains("resolver \"Test Kit\" could not start")
            && last.contains("testkit was told to fail in configure"),
        "{last}"
    );
    assert_eq!(doc["chain"][0]["resolver"], TESTKIT);
    assert_eq!(doc["chain"][0]["state"], "disabled");
    assert!(
        doc["chain"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("testkit was told to fail in configure"),
        "{doc:#}"
    );
    assert_eq!(doc["chain"][1]["resolver"], "Choria JWT Resolver");
    assert_eq!(doc["chain"][1]["state"], "failed");
    assert!(
        doc["note"].as_str().unwrap().contains("Test Kit"),
        "{doc:#}"
    );
}

#[test]
fn every_member_of_the_chain_is_named_in_order_with_what_happened_to_it() {
    let dir = plugin_dir("om-chain", &["provtarget-testkit"]);
    let mut sets = vec!["testkit.mode=error", "plugin.provtarget.timeout=10s"];
    sets.extend(builtin_answers());
    let chain = [
        "--resolver",
        "Missing Resolver",
        "--resolver",
        TESTKIT,
        "--resolver",
        "default",
    ];
    let run = targets_in(&dir, &sets, &[&chain[..], &["--json"]].concat());
    run.ok();
    let doc = run.json();
    assert_matches_schema("targets.schema.json", &doc);
    let states: Vec<(&str, &str)> = doc["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["resolver"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("Missing Resolver", "disabled"),
            (TESTKIT, "failed"),
            ("Choria JWT Resolver", "answered"),
        ]
    );
    assert!(doc["chain"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not loaded"));
    assert!(doc["chain"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("testkit was told to fail"));

    // In text: a numbered list between the resolver line and the brokers.
    let run = targets_in(&dir, &sets, &chain);
    run.ok();
    run.stdout_has("Resolver chain:\n   1. Missing Resolver: disabled: not loaded")
        .stdout_has("\n   2. Test Kit: failed: could not determine provisioning servers using Test Kit provisioning target plugin: testkit was told to fail\n")
        .stdout_has("\n   3. Choria JWT Resolver: answered\nProvisioning using 1 broker(s):\n");

    // A member after the one that answered is named as not run.
    let run = targets_in(
        &dir,
        &sets,
        &["--resolver", "default", "--resolver", TESTKIT, "--json"],
    );
    run.ok();
    let doc = run.json();
    assert_matches_schema("targets.schema.json", &doc);
    assert_eq!(doc["chain"][1]["resolver"], TESTKIT);
    assert_eq!(doc["chain"][1]["state"], "not-run");
    assert_eq!(doc["chain"][1]["reason"], "an earlier resolver answered");
}

#[test]
fn buildinfo_and_plugins_check_json_match_their_schemas() {
    let dir = plugin_dir("om-schemas", &["provtarget-testkit", "provtarget-fqdn"]);
    // A refused library too: not a shared object at all.
    dir.write("libjunk.so", b"not an ELF file");
    provtarget_testsupport::set_mode(&dir.path().join("libjunk.so"), 0o644);
    let d = path_str(dir.path());
    let run = provtarget(&plugin_args::<&str>("buildinfo", &d, &[], &["--json"]));
    run.ok();
    let doc = run.json();
    assert_matches_schema("buildinfo.schema.json", &doc);
    assert_eq!(doc["schema"], "provtarget/buildinfo/1");
    let statuses: Vec<&str> = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"loaded") && statuses.contains(&"rejected"),
        "{statuses:?}"
    );

    for (file, code) in [
        (dir.path().join(cdylib_file_name("provtarget-fqdn")), 0),
        (dir.path().join("libjunk.so"), 1),
    ] {
        let run = provtarget(&["plugins", "check", &path_str(&file), "--json"]);
        run.failed(code);
        let doc = run.json();
        assert_matches_schema("plugins-check.schema.json", &doc);
        assert_eq!(doc["schema"], "provtarget/plugins-check/1");
    }
}

// ---- signals ------------------------------------------------------------------------

/// Starts `provtarget args` in a process group of its own (as a shell job, a
/// `timeout` child or a systemd unit is), with this test process's verdict cache.
fn spawn_group(args: &[&str]) -> Child {
    Command::new(provtarget_testsupport::provtarget_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PROVTARGET_CACHE_DIR", test_cache_dir())
        .env(RUN_TAG, args.join(" "))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("cannot start provtarget")
}

/// Sends SIGTERM to `target` (a pid, or `-PGID` for a whole process group).
fn sigterm(target: &str) {
    let status = Command::new("kill")
        .args(["-TERM", "--", target])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM -- {target} failed");
}

/// Waits for the exit (liveness limit 60 s); the exit code and all of stderr.
fn finish(child: &mut Child, stderr: &Arc<Mutex<String>>) -> (Option<i32>, String) {
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("provtarget still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(100));
    let text = stderr.lock().unwrap().clone();
    (code, text)
}

fn targets_args<'a>(dir: &'a str, sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--log-level",
        "info",
        "targets",
        "--config",
        "/dev/null",
        "--plugin-dir",
        dir,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

#[test]
fn after_sigterm_the_final_line_carries_the_resolvers_last_error() {
    let dir = plugin_dir("om-term-last", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    for mode in ["none", "process"] {
        let isolation = format!("plugin.provtarget.isolation={mode}");
        let args = targets_args(&d, &["testkit.mode=retry-error", &isolation]);
        let mut child = spawn_group(&args);
        let _stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        // The SDK's retry logs each failed try: once one has, there is a last error.
        wait_for(&stderr, "backend unreachable on try 1", &mut child);
        sigterm(&child.id().to_string());
        let (code, stderr) = finish(&mut child, &stderr);
        assert_eq!(code, Some(143), "{mode}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "provtarget: could not determine provisioning servers using Test Kit provisioning target plugin: context canceled after "
            ) && last.contains("; last error: backend unreachable on try "),
            "{mode}: {stderr}"
        );
    }
}

#[test]
fn a_stop_signal_to_the_process_group_is_an_interruption_not_a_crash() {
    let dir = plugin_dir("om-group", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    for mode in ["none", "probe", "process"] {
        let isolation = format!("plugin.provtarget.isolation={mode}");
        let args = targets_args(&d, &["testkit.mode=wait", &isolation]);
        let mut child = spawn_group(&args);
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        wait_for(&stdout, "Attempting provisioner resolution", &mut child);
        // Give the resolver time to be waiting in its call (in its own process under
        // process isolation), then stop the whole group, as Ctrl-C, GNU timeout and
        // systemd do.
        std::thread::sleep(Duration::from_millis(300));
        sigterm(&format!("-{}", child.id()));
        let (code, stderr) = finish(&mut child, &stderr);
        assert_eq!(code, Some(143), "{mode}: {stderr}");
        assert!(
            !stderr.contains("crash") && !stderr.contains("ERROR"),
            "{mode}: a stop reported as a crash or an error:\n{stderr}"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "provtarget: could not determine provisioning servers using Test Kit provisioning target plugin: context canceled"
            ),
            "{mode}: {stderr}"
        );
        assert_no_processes_tagged(&d);
    }
}

// ---- configuration: one environment rule, closest-key suggestions ------------------

#[test]
fn every_declared_key_has_one_environment_variable_a_shell_can_export() {
    let dir = plugin_dir("om-env", &["provtarget-fqdn", "provtarget-dc-hint"]);
    let hint = dir.write("dc.json", r#"{"datacenter": "lon1"}"#);
    let d = path_str(dir.path());
    // A shipped plugin's key: plugin.provtarget.fqdn.identity.
    let run = provtarget_env(
        &plugin_args::<&str>(
            "targets",
            &d,
            &[],
            &["--resolver", "FQDN Provisioning Target", "--timeout", "10s"],
        ),
        &[("PROVTARGET_FQDN_IDENTITY", "web1.lon1.example.net")],
    );
    run.ok()
        .stdout_has("   nats://provision.lon1.example.net:4222\n")
        .stderr_lacks("unknown configuration key");
    // A vendor's key outside plugin.provtarget.: plugin.acme.dc_hint.file.
    let run = provtarget_env(
        &plugin_args::<&str>(
            "targets",
            &d,
            &[],
            &["--resolver", "Acme DC hints Provisioning Target"],
        ),
        &[("PROVTARGET_PLUGIN_ACME_DC_HINT_FILE", path_str(&hint))],
    );
    run.ok()
        .stdout_has("   nats://_provision.lon1.example.net:4222\n")
        .stderr_lacks("unknown configuration key");
    // `plugins check` names each key's variable, in text and JSON.
    let file = dir.path().join(cdylib_file_name("provtarget-fqdn"));
    let run = provtarget(&["plugins", "check", &path_str(&file)]);
    run.ok().stdout_has(
        "Config: plugin.provtarget.fqdn.identity (default \"\"): identity to match instead of the host's",
    );
    run.stdout_has("[environment: PROVTARGET_FQDN_IDENTITY]\n");
    let run = provtarget(&["plugins", "check", "--json", &path_str(&file)]);
    let keys = run.json()["config_keys"].clone();
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["key"] == "plugin.provtarget.fqdn.identity"
                && k["env"] == "PROVTARGET_FQDN_IDENTITY"),
        "{keys:#}"
    );
}

#[test]
fn misspelt_keys_of_the_host_and_of_loaded_plugins_get_the_closest_key() {
    let dir = plugin_dir("om-typo", &["provtarget-fqdn", "provtarget-dc-hint"]);
    let run = run_in(
        "buildinfo",
        &dir,
        &[
            "plugin.provtarget.fqdn.templte=x",
            "plugin.acme.dc_hint.fiel=/x.json",
            "plugin.provtarget.timout=5",
        ],
        &[],
    );
    run.ok()
        .stderr_has("unknown configuration key plugin.provtarget.fqdn.templte (flag); did you mean plugin.provtarget.fqdn.template?")
        .stderr_has("unknown configuration key plugin.acme.dc_hint.fiel (flag); did you mean plugin.acme.dc_hint.file?")
        .stderr_has("unknown configuration key plugin.provtarget.timout (flag); did you mean plugin.provtarget.timeout?")
        .stderr_lacks("install the fqdn plugin");
    // From the environment, the suggestion names the variable to use.
    let d = path_str(dir.path());
    let run = provtarget_env(
        &plugin_args::<&str>("buildinfo", &d, &[], &[]),
        &[("PROVTARGET_FQDN_IDENTTY", "web1.lon1.example.net")],
    );
    run.ok().stderr_has(
        "unknown configuration key plugin.provtarget.fqdn_identty (environment variable PROVTARGET_FQDN_IDENTTY); did you mean plugin.provtarget.fqdn.identity (environment variable PROVTARGET_FQDN_IDENTITY)?",
    );
}

#[test]
fn buildinfo_shows_where_every_setting_came_from() {
    let dir = plugin_dir("om-sources", &["provtarget-fqdn"]);
    let conf = dir.write(
        "server.conf",
        "# provisioning\nplugin.provtarget.probe_timeout = 5s\nplugin.provtarget.fqdn.template = f:4222\n",
    );
    let d = path_str(dir.path());
    let c = path_str(&conf);
    let args = [
        "buildinfo",
        "--config",
        &c,
        "--plugin-dir",
        &d,
        "--set",
        "plugin.provtarget.timeout=5s",
    ];
    let env = [("PROVTARGET_FQDN_IDENTITY", "web1.lon1.example.net")];
    let run = provtarget_env(&[&args[..], &["--json"]].concat(), &env);
    run.ok();
    let doc = run.json();
    assert_matches_schema("buildinfo.schema.json", &doc);
    let source = |key: &str| -> (Value, Value, Value) {
        let s = doc["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no source for {key}: {doc:#}"));
        (s["value"].clone(), s["source"].clone(), s["origin"].clone())
    };
    assert_eq!(
        source("plugin.provtarget.timeout"),
        ("5s".into(), "flag".into(), "flag".into())
    );
    assert_eq!(
        source("plugin.provtarget.fqdn.identity"),
        (
            "web1.lon1.example.net".into(),
            "environment".into(),
            "environment variable PROVTARGET_FQDN_IDENTITY".into()
        )
    );
    assert_eq!(
        source("plugin.provtarget.probe_timeout"),
        ("5s".into(), "file".into(), format!("{c} line 2").into())
    );
    assert_eq!(
        source("plugin.provtarget.isolation"),
        ("process".into(), "default".into(), "default".into())
    );
    // A plugin's key it declares but nobody set: its declared default.
    assert_eq!(
        source("plugin.provtarget.fqdn.lookup_timeout"),
        ("5s".into(), "default".into(), "default".into())
    );
    let run = provtarget_env(&args, &env);
    run.ok()
        .stdout_has("Configuration Sources:\n")
        .stdout_has(&format!(
            "            plugin.provtarget.fqdn.template = \"f:4222\" ({c} line 3)\n"
        ))
        .stdout_has("            plugin.provtarget.fqdn.identity = \"web1.lon1.example.net\" (environment variable PROVTARGET_FQDN_IDENTITY)\n");
}

#[test]
fn a_bad_value_on_the_command_line_is_an_error_and_in_the_file_a_warning_saying_what_runs() {
    let dir = TempDir::new("om-flags");
    // --timeout and --set are both the command line: one rule, exit 2.
    for args in [
        &["targets", "--timeout", "forever"][..],
        &["targets", "--set", "plugin.provtarget.timeout=forever"][..],
        &["buildinfo", "--set", "plugin.provtarget.isolation=sandbox"][..],
    ] {
        let run = provtarget(args);
        run.failed(2);
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(run.stderr.starts_with("provtarget: --"), "{run:#?}");
    }
    // In the file: a warning that says what the run does instead.
    let conf = dir.write("server.conf", "plugin.provtarget.timeout = forever\n");
    let run = provtarget(&[
        "buildinfo",
        "--config",
        &path_str(&conf),
        "--plugin-dir",
        &path_str(dir.path()),
    ]);
    run.ok().stderr_has(&format!(
        "plugin.provtarget.timeout = \"forever\" ({} line 1) ignored: \"forever\" is not a duration; use seconds (30), or 500ms, 30s, 2m, 1h; running with no deadline",
        path_str(&conf)
    ));
    // A relative --plugin-dir would load nothing: an error naming the absolute path.
    let run = provtarget(&["buildinfo", "--plugin-dir", "plugins"]);
    run.failed(2).stderr_has(
        "provtarget: --plugin-dir plugins is a relative path; plugin directories must be absolute (they decide what code is loaded): give an absolute path such as /",
    );
}

#[test]
fn the_load_line_never_shows_an_empty_hash() {
    let dir = plugin_dir("om-hash", &["provtarget-testkit"]);
    let d = path_str(dir.path());
    let mut args = vec!["--log-level", "info"];
    args.extend(plugin_args(
        "targets",
        &d,
        // No pins and no cache: nothing asks for the hash this run.
        &[
            "testkit.targets=a.example:4222",
            "plugin.provtarget.cache_dir=none",
        ],
        &["--config", "/dev/null"],
    ));
    let run = provtarget(&args);
    run.ok()
        .stderr_has("loaded provtarget plugin")
        .stderr_has("sha256=\"not-hashed\"")
        .stderr_lacks("sha256= ")
        .stderr_lacks("sha256=\"\"");
}

#[test]
fn a_chosen_resolver_whose_library_was_refused_is_named_with_the_refusal() {
    let dir = plugin_dir("om-refused", &["provtarget-testkit"]);
    let lib = dir.path().join(cdylib_file_name("provtarget-testkit"));
    provtarget_testsupport::set_mode(&lib, 0o664);
    let run = targets_in(
        &dir,
        &["plugin.provtarget.jwt_file="],
        &["--resolver", TESTKIT, "--json"],
    );
    run.failed(1);
    let doc = run.json();
    assert_matches_schema("targets.schema.json", &doc);
    let last = run.stderr.lines().last().unwrap_or_default();
    for needle in [
        "resolver \"Test Kit\" named in plugin.provtarget.resolvers (or --resolver) is not loaded",
        "1 library was refused: ",
        &cdylib_file_name("provtarget-testkit"),
        "writable",
    ] {
        assert!(last.contains(needle), "{needle:?} not in {last}");
    }
    assert_eq!(doc["chain"][0]["resolver"], TESTKIT);
    assert_eq!(doc["chain"][0]["state"], "disabled");
    assert!(
        doc["chain"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("1 library was refused"),
        "{doc:#}"
    );
}
