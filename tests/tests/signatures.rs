//! Signed plugins (issue 17): detached minisign signatures, made at test time by the
//! real `minisign` command (Debian package `minisign`), checked by the real binary on
//! real cdylibs. No key is committed: every key pair is generated here, under the
//! target directory, and removed with its test directory.
mod common;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use provtarget_testsupport::{require_tool, set_mode};

const DC_HINT: &str = "Acme DC hints Provisioning Target";

/// A minisign key pair made by `minisign -G` (no password), and its key id as
/// minisign itself prints it in the public key's comment.
struct Key {
    public: PathBuf,
    secret: PathBuf,
    id: String,
}

fn minisign() -> Option<PathBuf> {
    require_tool("minisign", "minisign")
}

fn run_tool(tool: &Path, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .expect("cannot run minisign");
    assert!(
        out.status.success(),
        "minisign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a key pair named `name` in `dir` (the secret key never leaves the
/// test's directory under target/).
fn keygen(tool: &Path, dir: &TempDir, name: &str) -> Key {
    let public = dir.path().join(format!("{name}.pub"));
    let secret = dir.path().join(format!("{name}.key"));
    run_tool(
        tool,
        &[
            "-G",
            "-W",
            "-f",
            "-p",
            &path_str(&public),
            "-s",
            &path_str(&secret),
        ],
    );
    set_mode(&public, 0o644);
    let text = std::fs::read_to_string(&public).unwrap();
    let id = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("untrusted comment: minisign public key "))
        .expect("minisign's public key comment")
        .trim()
        .to_string();
    Key { public, secret, id }
}

/// `minisign -S` (prehashed, or `-l` legacy) of `file` with `comment`, written beside
/// it as `<file>.minisig`.
fn sign(tool: &Path, key: &Key, file: &Path, comment: &str, legacy: bool) {
    let (s, f) = (path_str(&key.secret), path_str(file));
    let mut args = vec!["-S", "-s", &s, "-m", &f, "-t", comment];
    if legacy {
        args.push("-l");
    }
    run_tool(tool, &args);
    set_mode(&PathBuf::from(format!("{f}.minisig")), 0o644);
}

/// A trusted-keys directory (mode 0755) holding copies of `keys`, each public key file
/// followed by `extra` lines (name limits).
fn trusted(label: &str, keys: &[(&Key, &str)]) -> TempDir {
    let dir = TempDir::new(label);
    for (i, (key, extra)) in keys.iter().enumerate() {
        let mut text = std::fs::read_to_string(&key.public).unwrap();
        text.push_str(extra);
        dir.write(&format!("key{i}.pub"), text);
    }
    dir
}

/// `plugins check FILE` under `signatures = MODE` with the keys in `keys`, and
/// optionally a revocation list.
fn check(file: &Path, mode: &str, keys: &Path, revoked: Option<&Path>) -> Run {
    let mut env = vec![
        ("PROVTARGET_SIGNATURES", mode.to_string()),
        ("PROVTARGET_TRUSTED_KEYS", path_str(keys)),
    ];
    if let Some(r) = revoked {
        env.push(("PROVTARGET_REVOKED", path_str(r)));
    }
    provtarget_env(&["plugins", "check", "--json", &path_str(file)], &env)
}

/// The refusal of a `plugins check --json` run: (kind, one-line reason).
#[track_caller]
fn refused(run: &Run) -> (String, String) {
    run.failed(1);
    let v = run.json();
    assert_eq!(v["status"], "rejected", "{v:#}");
    assert_eq!(v["stage"], "signature", "{v:#}");
    let reason = v["reason"].as_str().unwrap().to_string();
    assert!(!reason.contains('\n'), "{reason}");
    assert_eq!(v["signature"]["reason"], reason.as_str(), "{v:#}");
    (v["kind"].as_str().unwrap().to_string(), reason)
}

/// The interface (`x.y`) the workspace's plugins are built against, as a signature's
/// `interface:` field names it.
fn built_interface() -> String {
    let mut parts = provtarget_abi::INTERFACE_VERSION.split('.');
    format!(
        "{}.{}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    )
}

#[test]
fn a_signed_library_loads_in_enforce_and_is_reported_signed() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-keys", &[(&key, "")]);
    let dir = plugin_dir("sig-good", &["provtarget-dc-hint"]);
    let lib = dir.path().join(cdylib_file_name("provtarget-dc-hint"));
    let comment = format!(
        "file:{} interface:{} name:{DC_HINT}",
        cdylib_file_name("provtarget-dc-hint"),
        built_interface()
    );
    sign(&tool, &key, &lib, &comment, false);

    let run = check(&lib, "enforce", keys.path(), None);
    run.ok();
    let v = run.json();
    assert_eq!(v["status"], "loaded", "{v:#}");
    assert_eq!(v["signature"]["state"], "signed");
    assert_eq!(v["signature"]["key_id"], key.id.as_str());
    assert_eq!(v["signature"]["trusted_comment"], comment.as_str());

    let d = path_str(dir.path());
    let k = format!("plugin.provtarget.trusted_keys={}", path_str(keys.path()));
    let sets = [k.as_str(), "plugin.provtarget.signatures=enforce"];
    let run = provtarget(&plugin_args("buildinfo", &d, &sets, &[]));
    run.ok()
        .stdout_has("Plugin Signatures: enforce (configured;")
        .stdout_has(&format!(
            "    Signature: signed by {} (\"{comment}\")\n",
            key.id
        ))
        .stdout_has("Status: loaded (active)")
        // The .minisig is part of its library, not a file of its own in the report.
        .stdout_lacks(".minisig\n");
    let run = provtarget(&plugin_args("buildinfo", &d, &sets, &["--json"]));
    let v = run.ok().json();
    assert_eq!(v["signatures"]["mode"], "enforce", "{v:#}");
    let lib_json = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"] == "loaded")
        .expect("the library");
    assert_eq!(lib_json["signature"]["state"], "signed");
    assert_eq!(lib_json["signature"]["key_id"], key.id.as_str());
}

#[test]
fn enforce_refuses_every_bad_signature_with_one_line() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-bad-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let other = keygen(&tool, &secrets, "other");
    let keys = trusted("sig-bad-keys", &[(&key, "")]);
    let dir = TempDir::new("sig-bad");
    let src = cdylib("provtarget-dc-hint");
    let good_comment =
        |file: &str| format!("file:{file} interface:{} name:{DC_HINT}", built_interface());
    let signed = |file: &str, key: &Key| {
        let lib = dir.copy_in(&src, file);
        sign(&tool, key, &lib, &good_comment(file), false);
        lib
    };

    let mut cases: Vec<(&str, PathBuf, &str, String)> = Vec::new();
    // Unsigned.
    cases.push((
        "unsigned",
        dir.copy_in(&src, "libunsigned.so"),
        "unsigned",
        "is not signed (no libunsigned.so.minisig beside it)".into(),
    ));
    // One byte changed after signing.
    let tampered = signed("libtampered.so", &key);
    let mut bytes = std::fs::read(&tampered).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    cases.push((
        "one byte changed",
        tampered,
        "bad-signature",
        "does not match its signature".into(),
    ));
    // Renamed, signature and all.
    let original = signed("liboriginal.so", &key);
    let renamed = dir.path().join("librenamed.so");
    std::fs::rename(&original, &renamed).unwrap();
    std::fs::rename(
        dir.path().join("liboriginal.so.minisig"),
        dir.path().join("librenamed.so.minisig"),
    )
    .unwrap();
    cases.push((
        "renamed",
        renamed,
        "signature-mismatch",
        "is signed as liboriginal.so (the signature's file: field), not as librenamed.so".into(),
    ));
    // A signature moved to another library.
    signed("libfirst.so", &key);
    let second = dir.copy_in(&cdylib("provtarget-fqdn"), "libsecond.so");
    std::fs::rename(
        dir.path().join("libfirst.so.minisig"),
        dir.path().join("libsecond.so.minisig"),
    )
    .unwrap();
    cases.push((
        "moved signature",
        second,
        "bad-signature",
        "does not match its signature".into(),
    ));
    // Signed by a key that is not trusted.
    cases.push((
        "other key",
        signed("libother.so", &other),
        "untrusted-key",
        format!("is signed by key {}, which is not trusted", other.id),
    ));
    // A .minisig that is garbage, a FIFO, or 100 MB.
    let garbage = dir.copy_in(&src, "libgarbage.so");
    dir.write(
        "libgarbage.so.minisig",
        "untrusted comment: x\nnot base64 at all\n",
    );
    cases.push((
        "garbage",
        garbage,
        "bad-signature",
        "is not a minisign signature".into(),
    ));
    let fifo = dir.copy_in(&src, "libfifo.so");
    dir.fifo("libfifo.so.minisig");
    cases.push((
        "fifo",
        fifo,
        "bad-signature",
        "libfifo.so.minisig is a FIFO (named pipe), not a regular file".into(),
    ));
    let huge = dir.copy_in(&src, "libhuge.so");
    let f = std::fs::File::create(dir.path().join("libhuge.so.minisig")).unwrap();
    f.set_len(100 << 20).unwrap();
    cases.push((
        "100 MB",
        huge,
        "bad-signature",
        "is 104857600 bytes, more than the limit of 4096 bytes".into(),
    ));
    // Signed for another plugin name, or another interface, than the library has.
    let misnamed = dir.copy_in(&src, "libmisnamed.so");
    sign(
        &tool,
        &key,
        &misnamed,
        "file:libmisnamed.so name:Some Other Plugin",
        false,
    );
    cases.push((
        "name: of another plugin",
        misnamed,
        "signature-mismatch",
        "is signed for plugin \"Some Other Plugin\" but calls itself \"Acme DC hints".into(),
    ));
    let interface = dir.copy_in(&src, "libinterface.so");
    sign(
        &tool,
        &key,
        &interface,
        "file:libinterface.so interface:9.9",
        false,
    );
    cases.push((
        "interface: of another build",
        interface,
        "signature-mismatch",
        format!(
            "is signed for interface 9.9 but is built against interface {}",
            provtarget_abi::INTERFACE_VERSION
        ),
    ));

    for (what, file, kind, needle) in &cases {
        let run = check(file, "enforce", keys.path(), None);
        let (k, reason) = refused(&run);
        assert_eq!(k, *kind, "{what}: {reason}");
        assert!(reason.contains(needle), "{what}: {reason}");
        assert!(reason.contains(&path_str(file)), "{what}: {reason}");
    }
    // In warn each of them loads, and says why in its record and one log line
    // (except a FIFO, 100 MB or garbage signature, which load all the same).
    for (what, file, _, needle) in &cases {
        let run = check(file, "warn", keys.path(), None);
        let v = run.ok().json();
        assert_eq!(v["status"], "loaded", "{what}: {v:#}");
        let state = v["signature"]["state"].as_str().unwrap();
        assert!(state == "refused" || state == "unsigned", "{what}: {v:#}");
        let reason = v["signature"]["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{what}: {reason}");
        run.stderr_has("without a valid signature (signatures = warn)");
    }
}

/// A pinned, signed library: its SHA-256 (for the pin) and its BLAKE2b (for the
/// signature, hashed on a thread of its own meanwhile) both come from its sealed copy,
/// and the pin is still judged first: a library changed after it was signed and
/// pinned is refused by its pin, and without the pin by its signature.
#[test]
fn a_pinned_signed_library_is_judged_by_its_pin_then_its_signature() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-pin-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-pin-keys", &[(&key, "")]);
    let dir = TempDir::new("sig-pin");
    let lib = dir.copy_in(&cdylib("provtarget-dc-hint"), "libacme.so");
    sign(&tool, &key, &lib, "file:libacme.so", false);
    let out = Command::new("sha256sum").arg(&lib).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let lists = TempDir::new("sig-pin-lists");
    let pins = lists.write("pins", format!("{sha}  libacme.so\n"));
    let env = [
        ("PROVTARGET_SIGNATURES", "enforce".to_string()),
        ("PROVTARGET_TRUSTED_KEYS", path_str(keys.path())),
    ];
    let pinned = || {
        let args = ["plugins", "check", "--json", "--pins"];
        let (p, l) = (path_str(&pins), path_str(&lib));
        provtarget_env(&[&args[..], &[p.as_str(), l.as_str()]].concat(), &env)
    };
    let run = pinned();
    run.ok();
    let v = run.json();
    assert_eq!(v["status"], "loaded", "{v:#}");
    assert_eq!(v["sha256"], sha.as_str(), "{v:#}");
    assert_eq!(v["signature"]["state"], "signed", "{v:#}");
    assert_eq!(v["signature"]["key_id"], key.id.as_str(), "{v:#}");

    // One byte changed after signing and pinning.
    let mut bytes = std::fs::read(&lib).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&lib, &bytes).unwrap();
    let run = pinned();
    run.failed(1);
    let v = run.json();
    assert_eq!(
        (&v["status"], &v["stage"]),
        (&"rejected".into(), &"pin".into()),
        "{v:#}"
    );
    let (kind, reason) = refused(&check(&lib, "enforce", keys.path(), None));
    assert_eq!(kind, "bad-signature", "{reason}");
    assert!(reason.contains("does not match its signature"), "{reason}");
}

#[test]
fn revocations_and_key_limits_are_enforced() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-rev-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let dir = TempDir::new("sig-rev");
    let lib = dir.copy_in(&cdylib("provtarget-dc-hint"), "libacme.so");
    sign(
        &tool,
        &key,
        &lib,
        &format!("file:libacme.so name:{DC_HINT}"),
        false,
    );
    let keys = trusted("sig-rev-keys", &[(&key, "")]);
    check(&lib, "enforce", keys.path(), None).ok();

    // Revoked key: refused even in warn.
    let lists = TempDir::new("sig-rev-lists");
    let by_key = lists.write(
        "revoked-key",
        format!("\u{feff}# compromised 2026-12\nkey {}  \r\n", key.id),
    );
    for mode in ["enforce", "warn"] {
        let (kind, reason) = refused(&check(&lib, mode, keys.path(), Some(&by_key)));
        assert_eq!(kind, "revoked-key", "{reason}");
        assert!(
            reason.contains(&format!("is signed by key {}, which is revoked", key.id)),
            "{reason}"
        );
    }
    // Revoked build, by the SHA-256 sha256sum prints.
    let out = Command::new("sha256sum").arg(&lib).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let by_hash = lists.write("revoked-hash", format!("sha256 {sha}\n"));
    let (kind, reason) = refused(&check(&lib, "enforce", keys.path(), Some(&by_hash)));
    assert_eq!(kind, "revoked-build", "{reason}");
    assert!(reason.contains(&format!("sha256 {sha} is in the revocation list")));
    // A revocation list with a typo revokes nothing silently: nothing loads.
    let typo = lists.write("revoked-typo", format!("key {}\nkye 1234\n", "0"));
    let (kind, reason) = refused(&check(&lib, "enforce", keys.path(), Some(&typo)));
    assert_eq!(kind, "untrusted-key", "{reason}");
    assert!(reason.contains("line 2 is not `key"), "{reason}");

    // A key limited to other names.
    let limited = trusted("sig-rev-limited", &[(&key, "name: Other *\nname: FQDN*\n")]);
    let (kind, reason) = refused(&check(&lib, "enforce", limited.path(), None));
    assert_eq!(kind, "name-not-allowed", "{reason}");
    assert!(
        reason.contains(&format!(
            "is signed for plugin \"{DC_HINT}\" by key {} (key0.pub), which may only sign plugins named Other *, FQDN*",
            key.id
        )),
        "{reason}"
    );
    // ... and to this one.
    let allowed = trusted("sig-rev-allowed", &[(&key, "name: Acme *\n")]);
    check(&lib, "enforce", allowed.path(), None).ok();

    // Several keys at once (rotation): the old and the new both verify.
    let new = keygen(&tool, &secrets, "acme-2027");
    let lib2 = dir.copy_in(&cdylib("provtarget-dc-hint"), "libacme2.so");
    sign(&tool, &new, &lib2, "file:libacme2.so", false);
    let both = trusted("sig-rev-both", &[(&key, ""), (&new, "")]);
    check(&lib, "enforce", both.path(), None).ok();
    check(&lib2, "enforce", both.path(), None).ok();

    // A trusted-keys directory others can write to trusts no key.
    set_mode(keys.path(), 0o775);
    let (kind, reason) = refused(&check(&lib, "enforce", keys.path(), None));
    assert_eq!(kind, "untrusted-key", "{reason}");
    assert!(
        reason.contains("no key is trusted: trusted-keys directory")
            && reason.contains("is group-writable (mode 0775)"),
        "{reason}"
    );
    set_mode(keys.path(), 0o755);
}

#[test]
fn signed_interface_1_0_and_1_1_builds_and_a_legacy_signature_load_in_enforce() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-legacy-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-legacy-keys", &[(&key, "")]);
    let dir = TempDir::new("sig-legacy");
    // Builds against the released interfaces, each signed naming its interface.
    let builds = [
        (
            provtarget_testsupport::legacy_1_0_plugin(),
            "liblegacy.so",
            "interface:1.0 name:Legacy 1.0 Resolver",
            "1.0.0",
        ),
        (
            provtarget_testsupport::legacy_1_1_plugin(),
            "liblegacy11.so",
            "interface:1.1",
            "1.1.0",
        ),
    ];
    for (built, name, fields, interface) in builds {
        let lib = dir.copy_in(&built, name);
        sign(&tool, &key, &lib, &format!("file:{name} {fields}"), false);
        let v = check(&lib, "enforce", keys.path(), None).ok().json();
        assert_eq!(v["interface_version"], interface, "{v:#}");
        assert_eq!(v["signature"]["state"], "signed", "{v:#}");
    }
    // minisign -l: the legacy (not prehashed) format.
    let old = dir.copy_in(&cdylib("provtarget-dc-hint"), "libold.so");
    sign(&tool, &key, &old, "file:libold.so", true);
    let sig = std::fs::read_to_string(dir.path().join("libold.so.minisig")).unwrap();
    assert!(
        sig.lines().nth(1).unwrap().starts_with("RW"),
        "legacy: {sig}"
    );
    let v = check(&old, "enforce", keys.path(), None).ok().json();
    assert_eq!(v["signature"]["state"], "signed", "{v:#}");
    // The same, the legacy bytes changed: refused.
    let mut bytes = std::fs::read(&old).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 0xff;
    std::fs::write(&old, bytes).unwrap();
    let (kind, _) = refused(&check(&old, "enforce", keys.path(), None));
    assert_eq!(kind, "bad-signature");
}

#[test]
fn the_default_is_off_without_keys_and_the_mode_only_rises() {
    let Some(tool) = minisign() else { return };
    let dir = plugin_dir("sig-default", &["provtarget-dc-hint"]);
    let d = path_str(dir.path());
    let missing = dir.path().join("no-such-trusted.d");
    let none = format!("plugin.provtarget.trusted_keys={}", path_str(&missing));
    // No key set up: nothing new, not a word about signatures.
    let run = provtarget(&plugin_args("buildinfo", &d, &[none.as_str()], &[]));
    run.ok()
        .stdout_has("Plugin Signatures: off (automatic: off until a key is trusted;")
        .stdout_lacks("    Signature:")
        .stderr_lacks("signature");
    let v = provtarget(&plugin_args("buildinfo", &d, &[none.as_str()], &["--json"]))
        .ok()
        .json();
    assert_eq!(v["signatures"]["mode"], "off", "{v:#}");
    assert_eq!(v["plugins"][0]["signature"]["state"], "off", "{v:#}");
    // One key trusted: warn, and the unsigned library says so.
    let secrets = TempDir::new("sig-default-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-default-keys", &[(&key, "")]);
    let some = format!("plugin.provtarget.trusted_keys={}", path_str(keys.path()));
    let run = provtarget(&plugin_args("buildinfo", &d, &[some.as_str()], &[]));
    run.ok()
        .stdout_has("Plugin Signatures: warn (automatic")
        .stdout_has("Signature: unsigned")
        .stdout_has("Status: loaded (active)")
        .stderr_has("without a valid signature (signatures = warn)");
    // The configuration file says enforce: neither the environment nor a flag can
    // lower it.
    let conf = dir.write(
        "server.conf",
        format!(
            "plugin.provtarget.signatures = enforce\nplugin.provtarget.trusted_keys = {}\n",
            path_str(keys.path())
        ),
    );
    let c = path_str(&conf);
    // From the environment: a warning, and the file's mode stays.
    let run = provtarget_env(
        &["buildinfo", "--config", &c, "--plugin-dir", &d],
        &[("PROVTARGET_SIGNATURES", "warn")],
    );
    run.ok()
        .stdout_has("Plugin Signatures: enforce (configured;")
        .stdout_has("rejected at signature (unsigned)")
        .stdout_has("never lower it below the configuration file's enforce; using enforce");
    // Typed on the command line: an error (exit 2), like every bad flag value.
    provtarget(&[
        "buildinfo",
        "--config",
        &c,
        "--plugin-dir",
        &d,
        "--set",
        "plugin.provtarget.signatures=off",
    ])
    .failed(2)
    .stderr_has("never lower it below the configuration file's enforce");
    // ... but raise it.
    let run = provtarget(&plugin_args(
        "buildinfo",
        &d,
        &[some.as_str(), "plugin.provtarget.signatures=enforce"],
        &[],
    ));
    run.ok().stdout_has("rejected at signature (unsigned)");
}

#[test]
fn the_verdict_cache_never_reuses_a_stale_signature_verdict() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-cache-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let other = keygen(&tool, &secrets, "other");
    let keys = trusted("sig-cache-keys", &[(&key, "")]);
    let cache = TempDir::new("sig-cache-dir");
    let dir = plugin_dir("sig-cache", &["provtarget-dc-hint", "provtarget-fqdn"]);
    let (dc, fqdn) = (
        cdylib_file_name("provtarget-dc-hint"),
        cdylib_file_name("provtarget-fqdn"),
    );
    sign(
        &tool,
        &key,
        &dir.path().join(&dc),
        &format!("file:{dc}"),
        false,
    );
    sign(
        &tool,
        &key,
        &dir.path().join(&fqdn),
        &format!("file:{fqdn}"),
        false,
    );
    let d = path_str(dir.path());
    let sets = vec![
        format!("plugin.provtarget.trusted_keys={}", path_str(keys.path())),
        format!("plugin.provtarget.cache_dir={}", path_str(cache.path())),
        format!("plugin.provtarget.resolvers={DC_HINT}"),
        "plugin.provtarget.signatures=enforce".to_string(),
    ];
    let fqdn_status = |run: &Run| -> String {
        let v = run.json();
        let lib = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(&fqdn))
            .unwrap()
            .clone();
        format!(
            "{} {} {}",
            lib["status"], lib["cached"], lib["signature"]["state"]
        )
    };
    let buildinfo = |sets: &[String]| provtarget(&plugin_args("buildinfo", &d, sets, &["--json"]));
    // Cold, then warm: the library that does not run comes from the cache, signed.
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"loaded\" false \"signed\""
    );
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"loaded\" true \"signed\""
    );
    // Its .minisig replaced by one from an untrusted key: checked again, refused.
    sign(
        &tool,
        &other,
        &dir.path().join(&fqdn),
        &format!("file:{fqdn}"),
        false,
    );
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"rejected\" false \"refused\""
    );
    // Signed again by the trusted key: loads; then the key is removed from the store.
    sign(
        &tool,
        &key,
        &dir.path().join(&fqdn),
        &format!("file:{fqdn}"),
        false,
    );
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"loaded\" false \"signed\""
    );
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"loaded\" true \"signed\""
    );
    std::fs::remove_file(keys.path().join("key0.pub")).unwrap();
    keys.write("key0.pub", std::fs::read(&other.public).unwrap());
    assert_eq!(
        fqdn_status(buildinfo(&sets).ok()),
        "\"rejected\" false \"refused\""
    );
    // The mode changed (warn): decided again, not the enforce verdict.
    let mut warn = sets.clone();
    warn[3] = "plugin.provtarget.signatures=warn".into();
    assert_eq!(
        fqdn_status(buildinfo(&warn).ok()),
        "\"loaded\" false \"refused\""
    );
}

/// With a verdict cache, the first library is copied and hashed while the host starts
/// (provtarget_loader's `early`). That copy is the one verified and loaded: a byte
/// changed after signing is refused as ever, and the copy is not used for a file
/// replaced since.
#[test]
fn the_library_copied_while_the_host_starts_is_the_one_verified_and_loaded() {
    const EARLY: &str = "using the copy and hash made while the host started";
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-early-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-early-keys", &[(&key, "")]);
    let cache = TempDir::new("sig-early-cache");
    let dir = plugin_dir("sig-early", &["provtarget-dc-hint", "provtarget-fqdn"]);
    let dc = cdylib_file_name("provtarget-dc-hint");
    for file in [&dc, &cdylib_file_name("provtarget-fqdn")] {
        sign(
            &tool,
            &key,
            &dir.path().join(file),
            &format!("file:{file}"),
            false,
        );
    }
    let d = path_str(dir.path());
    let mut sets = vec![
        format!("plugin.provtarget.trusted_keys={}", path_str(keys.path())),
        format!("plugin.provtarget.cache_dir={}", path_str(cache.path())),
        format!("plugin.provtarget.resolvers={DC_HINT}"),
        "plugin.provtarget.signatures=enforce".to_string(),
    ];
    let buildinfo = |sets: &[String]| {
        provtarget(&plugin_args(
            "buildinfo",
            &d,
            sets,
            &["--json", "--log-level", "debug"],
        ))
    };
    let dc_hint = |run: &Run| -> serde_json::Value {
        let v = run.json();
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(&dc))
            .unwrap()
            .clone()
    };
    // Cold, then warm: the early copy is used, verified and loaded (and active).
    for round in ["cold", "warm"] {
        let run = buildinfo(&sets);
        run.ok();
        assert!(
            run.stderr.contains(EARLY),
            "{round}: not used:\n{}",
            run.stderr
        );
        let lib = dc_hint(&run);
        assert_eq!(lib["status"], "loaded", "{round}: {lib:#}");
        assert_eq!(lib["signature"]["state"], "signed", "{round}: {lib:#}");
        assert_eq!(lib["active"], true, "{round}: {lib:#}");
    }
    // One byte changed in place after signing: the early copy holds the changed byte,
    // and is refused.
    let path = dir.path().join(&dc);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let run = buildinfo(&sets);
    run.ok();
    assert!(run.stderr.contains(EARLY), "not used:\n{}", run.stderr);
    let lib = dc_hint(&run);
    assert_eq!(lib["status"], "rejected", "{lib:#}");
    assert_eq!(lib["kind"], "bad-signature", "{lib:#}");
    assert!(
        lib["reason"]
            .as_str()
            .unwrap()
            .contains("does not match its signature"),
        "{lib:#}"
    );
    // Signatures off: nothing is copied early (and nothing is verified).
    sets[3] = "plugin.provtarget.signatures=off".into();
    let run = buildinfo(&sets);
    run.ok();
    assert!(!run.stderr.contains(EARLY), "{}", run.stderr);
}

/// With a mode set and no verdict cache the trust store is read only when a signature
/// is first checked: its warning still reaches the log and the report, whether a
/// signature was checked or none was.
#[test]
fn a_trust_store_read_late_still_reports_its_warning() {
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-late-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-late-keys", &[(&key, "")]);
    set_mode(keys.path(), 0o775);
    let signed = plugin_dir("sig-late", &["provtarget-fqdn"]);
    let fqdn = cdylib_file_name("provtarget-fqdn");
    sign(
        &tool,
        &key,
        &signed.path().join(&fqdn),
        &format!("file:{fqdn}"),
        false,
    );
    let empty = TempDir::new("sig-late-empty");
    let sets = [
        format!("plugin.provtarget.trusted_keys={}", path_str(keys.path())),
        "plugin.provtarget.signatures=enforce".to_string(),
        "plugin.provtarget.cache_dir=none".to_string(),
    ];
    let warning = "no key is trusted: trusted-keys directory";
    for (dir, checked) in [(&signed, true), (&empty, false)] {
        let d = path_str(dir.path());
        let run = provtarget(&plugin_args("buildinfo", &d, &sets, &["--json"]));
        run.ok();
        run.stderr_has(warning);
        let v = run.json();
        let warnings = v["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().any(|w| w
                .as_str()
                .unwrap()
                .contains("is group-writable (mode 0775)")),
            "checked {checked}: {v:#}"
        );
        let plugins = v["plugins"].as_array().unwrap();
        if checked {
            assert_eq!(plugins[0]["kind"], "untrusted-key", "{v:#}");
        } else {
            assert!(plugins.is_empty(), "{v:#}");
        }
    }
    set_mode(keys.path(), 0o755);
}

/// Under process isolation a library whose signature is still being verified is
/// handed to its resolver process at once (which checks the copy and waits): its code
/// runs only once the signature holds, and never when it is refused; the held child
/// then ends unloaded (under `warn` a bad signature still loads, with its warning). A held library that hangs once told to load is refused at the
/// deadline, as any other.
#[test]
fn a_library_held_while_its_signature_is_verified_runs_only_once_verified() {
    const HELD: &str = "handed to a resolver process while its signature is verified";
    const UNLOADED: &str = "ended unloaded";
    let Some(tool) = minisign() else { return };
    let secrets = TempDir::new("sig-held-secrets");
    let key = keygen(&tool, &secrets, "acme");
    let keys = trusted("sig-held-keys", &[(&key, "")]);
    let (mark, hang) = ("provtarget-test-ctor-mark", "provtarget-test-ctor-hang");
    let dir = plugin_dir("sig-held", &[mark]);
    let hang_dir = plugin_dir("sig-held-hang", &[hang]);
    let (file, hang_file) = (cdylib_file_name(mark), cdylib_file_name(hang));
    let path = dir.path().join(&file);
    sign(&tool, &key, &path, &format!("file:{file}"), false);
    let hang_path = hang_dir.path().join(&hang_file);
    sign(&tool, &key, &hang_path, &format!("file:{hang_file}"), false);
    let loads = TempDir::new("sig-held-loads");
    let loads = loads.path().join("loads");
    let buildinfo = |dir: &Path, mode: &str| {
        let sets = [
            format!("plugin.provtarget.trusted_keys={}", path_str(keys.path())),
            format!("plugin.provtarget.signatures={mode}"),
            "plugin.provtarget.isolation=process".to_string(),
            "plugin.provtarget.cache_dir=none".to_string(),
        ];
        let d = path_str(dir);
        let args = plugin_args("buildinfo", &d, &sets, &["--json", "--log-level", "debug"]);
        let env = [
            ("CTOR_MARK_FILE", path_str(&loads)),
            ("PROVTARGET_PROBE_TIMEOUT", "1s".to_string()),
        ];
        let run = provtarget_env(&args, &env);
        run.ok();
        assert!(run.stderr.contains(HELD), "not held:\n{}", run.stderr);
        let lib = run.json()["plugins"][0].clone();
        (run, lib)
    };
    let times_loaded = || {
        std::fs::read_to_string(&loads)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Signed: held, then loaded once (in its resolver process).
    let (_, lib) = buildinfo(dir.path(), "enforce");
    assert_eq!(lib["status"], "loaded", "{lib:#}");
    assert_eq!(lib["signature"]["state"], "signed", "{lib:#}");
    assert_eq!(times_loaded(), 1);
    // One byte changed after signing: held while verified, refused, never loaded.
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (run, lib) = buildinfo(dir.path(), "enforce");
    assert_eq!(lib["kind"], "bad-signature", "{lib:#}");
    assert!(run.stderr.contains(UNLOADED), "{}", run.stderr);
    assert_eq!(times_loaded(), 1, "the refused library's code ran");
    assert_no_processes_tagged(&path_str(dir.path()));
    // The same under `warn`: held, then told to load it all the same (with its warning).
    let (run, lib) = buildinfo(dir.path(), "warn");
    assert_eq!(lib["status"], "loaded", "{lib:#}");
    assert_eq!(lib["signature"]["state"], "refused", "{lib:#}");
    assert!(!run.stderr.contains(UNLOADED), "{}", run.stderr);
    assert_eq!(times_loaded(), 2);
    // Signed, but hangs once loaded: refused at the deadline, its process killed.
    let (_, lib) = buildinfo(hang_dir.path(), "enforce");
    assert_eq!(lib["kind"], "crashed-while-loading", "{lib:#}");
    let reason = lib["reason"].as_str().unwrap();
    assert!(reason.contains("did not answer within 1s"), "{lib:#}");
    assert_no_processes_tagged(&path_str(hang_dir.path()));
}
