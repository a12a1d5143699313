//! The `FQDN Provisioning Target` plugin (plugins/fqdn) through the real loader and the
//! real `provtarget` binary: targets from an identity, several templates, a
//! non-matching configured identity failing at once, configuration refused at
//! configure, buildinfo, and the default identity of this very machine.
mod common;
use common::*;

const FQDN: &str = "FQDN Provisioning Target";
const PACKAGE: &str = "provtarget-fqdn";
const DEFAULT_PATTERN: &str = r"^[^.]+\.(?P<domain>.+)$";

fn fqdn_dir(label: &str) -> TempDir {
    plugin_dir(label, &[PACKAGE])
}

#[test]
fn an_identity_resolves_to_provision_in_its_domain() {
    let dir = fqdn_dir("fqdn-one");
    let r = run_in(
        "targets",
        &dir,
        &["plugin.provtarget.fqdn.identity=web1.lon1.example.net"],
        &["--timeout", "10s"],
    );
    r.ok();
    assert_eq!(
        r.stdout,
        format!(
            "Attempting provisioner resolution using: {FQDN}\nProvisioning using 1 broker(s):\n   nats://provision.lon1.example.net:4222\n\
             Provenance: template provision.${{domain}}:4222 over identity web1.lon1.example.net \
             (set by plugin.provtarget.fqdn.identity)\n"
        )
    );
}

#[test]
fn several_templates_give_several_targets() {
    let dir = fqdn_dir("fqdn-many");
    let r = run_in(
        "targets",
        &dir,
        &[
            "plugin.provtarget.fqdn.identity=web1.lon1.example.net",
            r"plugin.provtarget.fqdn.pattern=^(?P<host>[^.]+)\.(?P<dc>[^.]+)\.(?P<domain>.+)$",
            "plugin.provtarget.fqdn.template=provision.${dc}.${domain}:4222, tls://backup.${domain}:4223",
        ],
        &["--timeout", "10s", "--json"],
    );
    r.ok();
    let v = r.json();
    assert_eq!(v["resolver"], FQDN);
    assert_eq!(
        v["servers"],
        serde_json::json!([
            "nats://provision.lon1.example.net:4222",
            "tls://backup.example.net:4223"
        ])
    );
}

#[test]
fn choria_s_identity_key_in_server_conf_is_the_identity() {
    let dir = fqdn_dir("fqdn-conf");
    let conf = dir.write(
        "server.conf",
        "identity = db3.ams1.example.org\n\
         plugin.provtarget.fqdn.template = provision.${domain}:4222\n",
    );
    let conf = path_str(&conf);
    let r = run_in(
        "targets",
        &dir,
        &[] as &[&str],
        &["--config", &conf, "--timeout", "10s", "--json"],
    );
    r.ok();
    assert_eq!(
        r.json()["servers"],
        serde_json::json!(["nats://provision.ams1.example.org:4222"])
    );
    // The plugin's own key wins over Choria's.
    let r = run_in(
        "targets",
        &dir,
        &["plugin.provtarget.fqdn.identity=web1.lon1.example.net"],
        &["--config", &conf, "--timeout", "10s", "--json"],
    );
    r.ok();
    assert_eq!(
        r.json()["servers"],
        serde_json::json!(["nats://provision.lon1.example.net:4222"])
    );
}

#[test]
fn a_configured_identity_that_does_not_match_fails_at_once_naming_the_fix() {
    let dir = fqdn_dir("fqdn-nomatch");
    // A deadline far away: the failure must come from the plugin at once (a permanent
    // error: no retry can change a configured identity), not from the deadline.
    let started = std::time::Instant::now();
    let r = run_in(
        "targets",
        &dir,
        &["plugin.provtarget.fqdn.identity=web1"],
        &["--timeout", "120s"],
    );
    r.failed(1);
    r.stderr_has(&format!(
        "identity \"web1\" (set by plugin.provtarget.fqdn.identity) does not match the pattern {DEFAULT_PATTERN} (plugin.provtarget.fqdn.pattern); fix plugin.provtarget.fqdn.identity or plugin.provtarget.fqdn.pattern"
    ));
    r.stderr_lacks("context deadline exceeded");
    r.stderr_lacks("try 1 failed");
    // Liveness only (the host's 120 s deadline is what it must not wait for).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_bad_pattern_is_refused_at_configure_naming_the_key() {
    let dir = fqdn_dir("fqdn-badpattern");
    let r = run_in(
        "buildinfo",
        &dir,
        &[
            "plugin.provtarget.fqdn.identity=web1.lon1.example.net",
            "plugin.provtarget.fqdn.pattern=^(?P<domain>.+",
        ],
        &[],
    );
    r.ok();
    r.stdout_has("    Provisioning Target Resolver: Choria JWT Resolver version ");
    r.stdout_has(&format!(
            "            Disabled Resolver: {FQDN}: configure failed: plugin.provtarget.fqdn.pattern = \"^(?P<domain>.+\" is not valid: expected a regular expression with named groups such as {DEFAULT_PATTERN} (unclosed group)\n"
        ));
}

#[test]
fn a_template_naming_no_group_is_refused_at_configure() {
    let dir = fqdn_dir("fqdn-badtemplate");
    let r = run_in(
        "buildinfo",
        &dir,
        &["plugin.provtarget.fqdn.template=provision.${dom}:4222"],
        &["--json"],
    );
    r.ok();
    let v = r.json();
    assert_eq!(v["resolver"]["name"], "Choria JWT Resolver");
    let disabled = v["disabled"].as_array().expect("disabled array");
    assert_eq!(disabled.len(), 1, "{v:#}");
    assert_eq!(disabled[0]["name"], FQDN);
    assert_eq!(
        disabled[0]["reason"],
        "configure failed: plugin.provtarget.fqdn.template = \"provision.${dom}:4222\" is not valid: expected ${name} placeholders naming groups of plugin.provtarget.fqdn.pattern; ${dom} names no capture group of the pattern (its groups: ${domain})"
    );

    // A template without a port is refused before any identity is known.
    let r = run_in(
        "buildinfo",
        &dir,
        &["plugin.provtarget.fqdn.template=provision.${domain}"],
        &["--json"],
    );
    let v = r.json();
    let reason = v["disabled"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(
            "configure failed: plugin.provtarget.fqdn.template = \"provision.${domain}\" is not valid"
        ) && reason.contains("missing port"),
        "{v:#}"
    );
}

#[test]
fn buildinfo_lists_the_plugin_active_with_its_settings() {
    let dir = fqdn_dir("fqdn-buildinfo");
    let r = run_in(
        "buildinfo",
        &dir,
        &["plugin.provtarget.fqdn.identity=web1.lon1.example.net"],
        &[],
    );
    r.ok();
    let out = &r.stdout;
    assert!(
        out.contains(&format!(
            "    Provisioning Target Resolver: {FQDN} version 1.0.0\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("libprovtarget_fqdn.so\n        Status: loaded (active)\n"),
        "{out}"
    );
    for line in [
        format!("plugin.provtarget.fqdn.pattern: {DEFAULT_PATTERN}\n"),
        "plugin.provtarget.fqdn.template: provision.${domain}:4222\n".to_string(),
        "plugin.provtarget.fqdn.identity: web1.lon1.example.net\n".to_string(),
        "plugin.provtarget.fqdn.lookup_timeout: 5s\n".to_string(),
        // What it found, not only what it was told.
        "plugin.provtarget.fqdn.detected.identity: web1.lon1.example.net (set by plugin.provtarget.fqdn.identity)\n".to_string(),
        "plugin.provtarget.fqdn.detected.targets: provision.lon1.example.net:4222\n".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} missing:\n{out}");
    }
    assert!(!out.contains("Disabled Resolver"), "{out}");
}

#[test]
fn without_an_identity_the_machine_s_own_is_used() {
    // Whatever this machine is called, a pattern taking all of it gives a target; a
    // host name with more than one dot is the identity as it is (Choria's rule), a
    // shorter one is replaced by its DNS name when DNS has a usable one.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string();
    let dir = fqdn_dir("fqdn-own");
    let r = run_in(
        "targets",
        &dir,
        &[
            "plugin.provtarget.fqdn.pattern=^(?P<all>[A-Za-z0-9._-]+)$",
            "plugin.provtarget.fqdn.template=${all}.provision.test:4222",
        ],
        &["--timeout", "20s", "--json"],
    );
    r.ok();
    let v = r.json();
    let servers = v["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1, "{v:#}");
    let server = servers[0].as_str().unwrap();
    let identity = server
        .strip_prefix("nats://")
        .and_then(|s| s.strip_suffix(".provision.test:4222"))
        .unwrap_or_else(|| panic!("unexpected target {server}"));
    if hostname.matches('.').count() > 1 {
        assert_eq!(identity, hostname);
    } else {
        // The host name itself, or a DNS name other than localhost.
        assert!(
            identity == hostname || (identity.contains('.') && identity != "localhost"),
            "{identity} (host name {hostname})"
        );
    }
}
