//! The verdict cache through the real binary: a warm cache reports unchanged
//! libraries without loading them (counted by the dynamic linker itself with
//! `LD_DEBUG=files`), identity changes invalidate entries, and a damaged or untrusted
//! cache is ignored with a warning and rebuilt, never trusted.
mod common;
use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use common::*;
use serde_json::Value;

const DC_HINT: &str = "Acme DC hints Provisioning Target";
const FQDN: &str = "FQDN Provisioning Target";

/// dc-hint (active: first by file name), fqdn (accepted, not active), a plugin with a
/// wrong layout (refused after dlopen, at the interface stage) and one without the
/// root symbol (refused before dlopen).
fn four_plugins(label: &str) -> TempDir {
    plugin_dir(
        label,
        &[
            "provtarget-dc-hint",
            "provtarget-fqdn",
            "provtarget-test-badlayout",
            "provtarget-test-noroot",
        ],
    )
}

/// Plugins run in the host process, so that `LD_DEBUG` there counts every load (crash
/// isolation is tested with the cache in its own test below).
const IN_PROCESS: &str = "plugin.provtarget.isolation=none";

/// `buildinfo --json` with the cache in `cache`, plugins loaded in this process and
/// the dynamic linker reporting every library it loads.
fn buildinfo(plugins: &TempDir, cache: &Path, extra: &[&str]) -> Run {
    let set = format!("plugin.provtarget.cache_dir={}", cache.display());
    let dir = path_str(plugins.path());
    let mut args = vec![
        "buildinfo",
        "--json",
        "--plugin-dir",
        &dir,
        "--set",
        &set,
        "--set",
        IN_PROCESS,
    ];
    args.extend_from_slice(extra);
    let run = provtarget_env(&args, &[("LD_DEBUG", "files")]);
    run.ok();
    run
}

/// How many plugin libraries the run `dlopen`ed (the loader loads the sealed copy
/// through `/proc/self/fd/N`; glibc prints `calling init:` once per library loaded).
fn dlopens(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.contains("calling init: /proc/self/fd/"))
        .count()
}

fn plugin<'a>(report: &'a Value, file: &str) -> &'a Value {
    report["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["path"].as_str().is_some_and(|s| s.ends_with(file)))
        .unwrap_or_else(|| panic!("{file} not in the report: {report:#}"))
}

/// The inventory without what differs between a cold and a warm run by design.
fn inventory(report: &Value) -> Value {
    let mut plugins = report["plugins"].clone();
    for p in plugins.as_array_mut().expect("plugins") {
        let p = p.as_object_mut().expect("object");
        p.remove("cached");
        p.remove("load_time_ms");
    }
    serde_json::json!({
        "plugins": plugins,
        "chain": report["chain"],
        "warnings": report["warnings"],
        "resolver": report["resolver"],
    })
}

fn cache_file(cache: &TempDir) -> PathBuf {
    cache.path().join("verdicts.json")
}

fn warnings(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().unwrap_or("").to_string())
        .collect()
}

/// Cold run (everything loaded, cache written), then a warm one: the cache holds the
/// verdicts, so only the active plugin is loaded.
fn warm_up(plugins: &TempDir, cache: &TempDir) -> Value {
    let cold = buildinfo(plugins, cache.path(), &[]);
    assert_eq!(dlopens(&cold), 3, "cold run: {}", cold.stderr);
    let warm = buildinfo(plugins, cache.path(), &[]);
    assert_eq!(dlopens(&warm), 1, "warm run: {}", warm.stderr);
    warm.json()
}

#[test]
fn a_warm_cache_gives_the_same_inventory_and_loads_only_the_active_resolver() {
    let plugins = four_plugins("cache-warm");
    let cache = TempDir::new("cache-warm-dir");
    let cold = buildinfo(&plugins, cache.path(), &[]);
    assert_eq!(
        dlopens(&cold),
        3,
        "dc-hint, fqdn and badlayout: {}",
        cold.stderr
    );
    let cold = cold.json();
    assert!(
        warnings(&cold).iter().all(|w| !w.contains("cache")),
        "{cold:#}"
    );
    let meta = std::fs::metadata(cache_file(&cache)).expect("cache written");
    assert_eq!(meta.mode() & 0o777, 0o644);
    for file in ["dc_hint.so", "fqdn.so", "badlayout.so", "noroot.so"] {
        assert_eq!(plugin(&cold, file)["cached"], false, "{file}");
    }

    let run = buildinfo(&plugins, cache.path(), &[]);
    assert_eq!(dlopens(&run), 1, "only the active dc-hint: {}", run.stderr);
    let warm = run.json();
    assert_eq!(inventory(&cold), inventory(&warm));
    assert_eq!(plugin(&warm, "dc_hint.so")["cached"], false);
    assert_eq!(plugin(&warm, "dc_hint.so")["active"], true);
    for file in ["fqdn.so", "badlayout.so", "noroot.so"] {
        assert_eq!(plugin(&warm, file)["cached"], true, "{file}: {warm:#}");
    }
    assert_eq!(plugin(&warm, "fqdn.so")["status"], "loaded");
    assert_eq!(plugin(&warm, "fqdn.so")["name"], FQDN);
    assert_eq!(plugin(&warm, "badlayout.so")["stage"], "interface");

    // The text report marks what came from the cache.
    let text = provtarget_env(
        &[
            "buildinfo",
            "--plugin-dir",
            &path_str(plugins.path()),
            "--set",
            &format!("plugin.provtarget.cache_dir={}", cache.path().display()),
            "--set",
            IN_PROCESS,
        ],
        &[("LD_DEBUG", "files")],
    );
    text.ok();
    assert_eq!(dlopens(&text), 1, "{}", text.stderr);
    assert!(
        text.stdout
            .contains("libprovtarget_fqdn.so\n        Status: loaded (not active, from cache)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("libprovtarget_dc_hint.so\n        Status: loaded (active)"),
        "{}",
        text.stdout
    );

    // Choosing another resolver loads that one only: the chain is planned from the
    // cached names.
    let other = buildinfo(&plugins, cache.path(), &["--resolver", FQDN]);
    assert_eq!(dlopens(&other), 1, "{}", other.stderr);
    let other = other.json();
    assert_eq!(other["resolver"]["name"], FQDN);
    assert_eq!(plugin(&other, "fqdn.so")["cached"], false);
    assert_eq!(plugin(&other, "dc_hint.so")["cached"], true);
}

#[test]
fn touching_or_chmodding_a_library_invalidates_its_entry() {
    let plugins = four_plugins("cache-touch");
    let cache = TempDir::new("cache-touch-dir");
    warm_up(&plugins, &cache);
    let fqdn = plugins.path().join(cdylib_file_name("provtarget-fqdn"));
    let file = std::fs::File::options()
        .write(true)
        .open(&fqdn)
        .expect("open fqdn");
    file.set_modified(std::time::SystemTime::now())
        .expect("touch");
    drop(file);
    let run = buildinfo(&plugins, cache.path(), &[]);
    assert_eq!(
        dlopens(&run),
        2,
        "dc-hint and the touched fqdn: {}",
        run.stderr
    );
    assert_eq!(plugin(&run.json(), "fqdn.so")["cached"], false);
    assert_eq!(dlopens(&buildinfo(&plugins, cache.path(), &[])), 1);

    // chmod to the same mode changes only the ctime.
    std::fs::set_permissions(&fqdn, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = buildinfo(&plugins, cache.path(), &[]);
    assert_eq!(dlopens(&run), 2, "{}", run.stderr);
    assert_eq!(plugin(&run.json(), "fqdn.so")["cached"], false);
}

#[test]
fn a_damaged_or_foreign_build_cache_is_ignored_with_a_warning_and_rebuilt() {
    let plugins = four_plugins("cache-corrupt");
    let cache = TempDir::new("cache-corrupt-dir");
    warm_up(&plugins, &cache);
    let good = std::fs::read_to_string(cache_file(&cache)).expect("cache");
    let host = serde_json::from_str::<Value>(&good).expect("json")["host"]
        .as_str()
        .expect("host key")
        .to_string();
    let version = serde_json::from_str::<Value>(&good).expect("json")["version"].clone();
    // A cache of another build that claims the refused library was accepted.
    let forged = good.replace(&host, "cache 2; another build");
    for (label, bytes, expect) in [
        (
            "garbage",
            b"\x7fELF\x00garbage\xff".to_vec(),
            "not valid JSON",
        ),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "not valid JSON",
        ),
        (
            "wrong shape",
            format!(
                r#"{{"format":"provtarget-verdict-cache","version":{version},"host":"x","entries":{{}}}}"#
            )
            .into_bytes(),
            "wrong shape: invalid type: map",
        ),
        (
            "a missing field",
            good.replacen("\"stage\":null,", "", 1).into_bytes(),
            "wrong shape: entry 0: missing field `stage`",
        ),
        (
            "an unknown field",
            good.replacen("\"recorded\":", "\"trusted\":true,\"recorded\":", 1)
                .into_bytes(),
            "wrong shape: entry 0: unknown field `trusted`",
        ),
        ("wrong shape", br#"{"entries":[]}"#.to_vec(), "wrong shape"),
        (
            "other build",
            forged.into_bytes(),
            "another provtarget build",
        ),
    ] {
        std::fs::write(cache_file(&cache), &bytes).expect("write cache");
        let run = buildinfo(&plugins, cache.path(), &[]);
        assert_eq!(
            dlopens(&run),
            3,
            "{label}: the cache was used: {}",
            run.stderr
        );
        let report = run.json();
        let w = warnings(&report);
        let ours: Vec<&String> = w.iter().filter(|w| w.contains("verdict cache")).collect();
        assert_eq!(ours.len(), 1, "{label}: {w:?}");
        assert!(
            ours[0].contains(expect)
                && ours[0].contains(&path_str(&cache_file(&cache)))
                && ours[0].contains("ignored (not trusted) and rebuilt"),
            "{label}: {}",
            ours[0]
        );
        assert!(!ours[0].contains('\n'));
        for file in ["fqdn.so", "badlayout.so"] {
            assert_eq!(plugin(&report, file)["cached"], false, "{label} {file}");
        }
        // Rebuilt: the next run is warm again, without a warning.
        let next = buildinfo(&plugins, cache.path(), &[]);
        assert_eq!(dlopens(&next), 1, "{label}: not rebuilt: {}", next.stderr);
        assert!(warnings(&next.json())
            .iter()
            .all(|w| !w.contains("verdict cache")));
    }
}

/// A cache in the format the host wrote before the record model (version 1, taken
/// from the main binary: `tests/fixtures/verdict-cache-v1.json`), made to describe this
/// test's files exactly (paths, identities, this host's build key), so that a host
/// that still read version 1 would trust it: the new host does not read it, rebuilds
/// it, and says so at debug level only (an upgrade is not damage).
#[test]
fn a_cache_of_the_previous_format_version_is_rebuilt_quietly() {
    let plugins = plugin_dir("cache-v1", &["provtarget-fqdn"]);
    let junk = plugins.write("junk.so", "not a library\n");
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let fqdn = plugins.path().join(cdylib_file_name("provtarget-fqdn"));
    let cache = TempDir::new("cache-v1-dir");
    let cold = buildinfo(&plugins, cache.path(), &[]).json();
    assert_eq!(plugin(&cold, "junk.so")["kind"], "not-elf");
    let ours: Value =
        serde_json::from_str(&std::fs::read_to_string(cache_file(&cache)).expect("cache"))
            .expect("json");
    let fixture =
        provtarget_testsupport::workspace_root().join("tests/fixtures/verdict-cache-v1.json");
    let v1 = std::fs::read_to_string(&fixture)
        .expect("fixture")
        .replace("/tmp/v1gen/plugins/fqdn.so", &path_str(&fqdn))
        .replace("/tmp/v1gen/plugins/junk.so", &path_str(&junk));
    let mut v1: Value = serde_json::from_str(&v1).expect("fixture json");
    assert_eq!(v1["version"], 1);
    v1["host"] = ours["host"].clone();
    for entry in v1["entries"].as_array_mut().expect("entries") {
        let m = std::fs::metadata(entry["path"].as_str().expect("path")).expect("stat");
        entry["identity"] = serde_json::json!([
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ]);
    }
    std::fs::write(cache_file(&cache), v1.to_string()).expect("write cache");
    let run = buildinfo(&plugins, cache.path(), &["--log-level", "debug"]);
    let report = run.json();
    assert!(
        warnings(&report)
            .iter()
            .all(|w| !w.contains("verdict cache")),
        "{:?}",
        warnings(&report)
    );
    assert_eq!(
        plugin(&report, "junk.so")["cached"],
        false,
        "the version 1 cache was read"
    );
    assert!(
        run.stderr
            .contains("has cache format version 1, not 2: it is not read, and rebuilt"),
        "{}",
        run.stderr
    );
    let rebuilt: Value =
        serde_json::from_str(&std::fs::read_to_string(cache_file(&cache)).expect("cache"))
            .expect("json");
    assert_eq!(rebuilt["version"], 2);
    // Rebuilt: the next run answers from it.
    let warm = buildinfo(&plugins, cache.path(), &[]).json();
    assert_eq!(plugin(&warm, "junk.so")["cached"], true);
    assert!(warnings(&warm).iter().all(|w| !w.contains("verdict cache")));
}

fn running_as_root(probe: &TempDir) -> bool {
    let f = probe.write("whoami", "");
    let root = std::fs::metadata(f).expect("stat").uid() == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (chown) and CI is set"
        );
        eprintln!("skipped: needs root to chown the cache to another user");
    }
    root
}

#[test]
fn an_untrusted_cache_file_is_ignored_with_a_warning_and_replaced() {
    let plugins = four_plugins("cache-untrusted");
    let cache = TempDir::new("cache-untrusted-dir");
    if !running_as_root(&cache) {
        return;
    }
    warm_up(&plugins, &cache);
    let file = cache_file(&cache);
    let valid = std::fs::read(&file).expect("cache");
    let elsewhere = TempDir::new("cache-untrusted-target");
    type Spoil = fn(&Path, &Path, &[u8]);
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "foreign owner",
            |f, _, _| std::os::unix::fs::chown(f, Some(65534), None).expect("chown"),
            "owned by uid 65534",
        ),
        (
            "group-writable",
            |f, _, _| std::fs::set_permissions(f, PermissionsExt::from_mode(0o664)).expect("chmod"),
            "group-writable",
        ),
        (
            "world-writable",
            |f, _, _| std::fs::set_permissions(f, PermissionsExt::from_mode(0o646)).expect("chmod"),
            "world-writable",
        ),
        (
            "symlink",
            |f, other, valid| {
                let target = other.join("valid.json");
                std::fs::write(&target, valid).expect("write");
                std::fs::remove_file(f).expect("rm");
                std::os::unix::fs::symlink(&target, f).expect("symlink");
            },
            "is a symlink",
        ),
    ];
    for (label, spoil, expect) in cases {
        std::fs::write(&file, &valid).ok();
        spoil(&file, elsewhere.path(), &valid);
        let run = buildinfo(&plugins, cache.path(), &[]);
        assert_eq!(
            dlopens(&run),
            3,
            "{label}: the cache was trusted: {}",
            run.stderr
        );
        let w = warnings(&run.json());
        let ours: Vec<&String> = w.iter().filter(|w| w.contains("verdict cache")).collect();
        assert_eq!(ours.len(), 1, "{label}: {w:?}");
        assert!(
            ours[0].contains(expect) && ours[0].contains(&path_str(&file)),
            "{label}: {}",
            ours[0]
        );
        // Replaced by a file of ours, not written through a link.
        let meta = std::fs::symlink_metadata(&file).expect("cache");
        assert!(meta.file_type().is_file(), "{label}");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644), "{label}");
        assert_eq!(
            dlopens(&buildinfo(&plugins, cache.path(), &[])),
            1,
            "{label}"
        );
    }
    // An untrusted cache directory: no cache at all, with a warning; nothing written.
    let shared = TempDir::new("cache-untrusted-shared");
    std::fs::set_permissions(shared.path(), PermissionsExt::from_mode(0o777)).expect("chmod");
    for _ in 0..2 {
        let run = buildinfo(&plugins, shared.path(), &[]);
        assert_eq!(dlopens(&run), 3, "{}", run.stderr);
        let w = warnings(&run.json());
        assert!(
            w.iter().any(|w| w.contains("verdict cache directory")
                && w.contains("world-writable")
                && w.contains("running without a verdict cache")),
            "{w:?}"
        );
    }
    assert!(!shared.path().join("verdicts.json").exists());
}

#[test]
fn a_missing_cache_directory_is_created_and_an_impossible_one_only_warns() {
    let plugins = four_plugins("cache-mkdir");
    let parent = TempDir::new("cache-mkdir-parent");
    let dir = parent.path().join("provtarget");
    let run = buildinfo(&plugins, &dir, &[]);
    assert!(warnings(&run.json()).iter().all(|w| !w.contains("cache")));
    let meta = std::fs::metadata(&dir).expect("created");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o022, 0, "not writable by others");
    assert!(dir.join("verdicts.json").is_file());
    // Under a regular file: cannot be created; a warning, everything still loads.
    let file = parent.write("plain", "x");
    let run = buildinfo(&plugins, &file.join("cache"), &[]);
    assert_eq!(dlopens(&run), 3);
    let report = run.json();
    assert_eq!(report["resolver"]["name"], DC_HINT);
    assert!(
        warnings(&report)
            .iter()
            .any(|w| w.contains("running without a verdict cache")),
        "{report:#}"
    );
}

fn sha256_of(report: &Value, file: &str) -> String {
    plugin(report, file)["sha256"]
        .as_str()
        .expect("sha256")
        .to_string()
}

#[test]
fn pins_are_enforced_on_the_bytes_that_run_whatever_the_cache_says() {
    let plugins = four_plugins("cache-pins");
    let cache = TempDir::new("cache-pins-dir");
    let warm = warm_up(&plugins, &cache);
    let (dc, fqdn) = (sha256_of(&warm, "dc_hint.so"), sha256_of(&warm, "fqdn.so"));
    let pins_dir = TempDir::new("cache-pins-file");
    let dc_name = cdylib_file_name("provtarget-dc-hint");
    let fqdn_name = cdylib_file_name("provtarget-fqdn");
    let pins = pins_dir.write("pins", format!("{dc}  {dc_name}\n{fqdn}  {fqdn_name}\n"));
    let pinned = ["--pins", pins.to_str().expect("utf-8")];
    let run = buildinfo(&plugins, cache.path(), &pinned);
    assert_eq!(
        dlopens(&run),
        1,
        "pins match the cached hashes: {}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(report["resolver"]["name"], DC_HINT);
    assert_eq!(plugin(&report, "fqdn.so")["cached"], true);

    // The pin file changes: the cache still says both were accepted, but the active
    // plugin is checked on its sealed bytes and refused; fqdn (cached, pinned right)
    // takes over and is loaded.
    let wrong = "0".repeat(64);
    std::fs::write(&pins, format!("{wrong}  {dc_name}\n{fqdn}  {fqdn_name}\n")).expect("pins");
    let run = buildinfo(&plugins, cache.path(), &pinned);
    assert_eq!(dlopens(&run), 1, "{}", run.stderr);
    let report = run.json();
    let dc_record = plugin(&report, "dc_hint.so");
    assert_eq!(dc_record["status"], "rejected", "{report:#}");
    assert_eq!(dc_record["kind"], "pin-mismatch");
    assert_eq!(report["resolver"]["name"], FQDN);
    assert_eq!(plugin(&report, "fqdn.so")["cached"], false);

    // The library changes under the same mtime: its ctime still moves, so the cache
    // entry is not used, and the new bytes fail their pin.
    std::fs::write(&pins, format!("{dc}  {dc_name}\n{fqdn}  {fqdn_name}\n")).expect("pins");
    let path = plugins.path().join(&dc_name);
    let mtime = std::fs::metadata(&path)
        .expect("stat")
        .modified()
        .expect("mtime");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
    let run = buildinfo(&plugins, cache.path(), &pinned);
    let report = run.json();
    let dc_record = plugin(&report, "dc_hint.so");
    assert_eq!(dc_record["kind"], "pin-mismatch", "{report:#}");
    assert_eq!(dc_record["cached"], false);
    assert_eq!(report["resolver"]["name"], FQDN);
}

/// For each process of a run (the host and every child it started), how many plugin
/// libraries it loaded, sorted: glibc writes `LD_DEBUG` output to
/// `<LD_DEBUG_OUTPUT>.<pid>`, one file per process, and prints `calling init:
/// /proc/self/fd/N` once per library loaded from a sealed copy.
fn loads_per_process(plugins: &TempDir, cache: &Path, mode: &str, label: &str) -> Vec<usize> {
    let out = TempDir::new(label);
    let prefix = out.path().join("ld");
    let dir = path_str(plugins.path());
    let set_cache = format!("plugin.provtarget.cache_dir={}", cache.display());
    let set_mode = format!("plugin.provtarget.isolation={mode}");
    let args = [
        "buildinfo",
        "--json",
        "--plugin-dir",
        &dir,
        "--set",
        &set_cache,
        "--set",
        &set_mode,
    ];
    let run = provtarget_env(
        &args,
        &[
            ("LD_DEBUG", "files"),
            ("LD_DEBUG_OUTPUT", path_str(&prefix).as_str()),
        ],
    );
    run.ok();
    let report = run.json();
    assert_eq!(report["resolver"]["name"], DC_HINT, "{label}: {report:#}");
    let mut loads: Vec<usize> = std::fs::read_dir(out.path())
        .expect("LD_DEBUG_OUTPUT files")
        .map(|e| {
            let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
            text.lines()
                .filter(|l| l.contains("calling init: /proc/self/fd/"))
                .count()
        })
        .collect();
    loads.sort_unstable();
    loads
}

#[test]
fn with_a_warm_cache_only_the_active_resolver_gets_a_child_in_process_and_probe_modes() {
    let plugins = four_plugins("cache-isolated");

    // Process mode. Cold: the host loads nothing itself; dc-hint, fqdn and badlayout
    // are each loaded by a child (noroot is refused from its bytes), and dc-hint's
    // child stays to serve it. The first child is forked from the host at start-up,
    // so it writes to the host's LD_DEBUG file (glibc opens one per exec'd process):
    // that file holds exactly one load, the forked child's (a load by the host itself
    // would make it two), and each exec'd child has its own file with one.
    let cache = TempDir::new("cache-isolated-process");
    let cold = loads_per_process(&plugins, cache.path(), "process", "ld-process-cold");
    assert_eq!(
        cold,
        [1, 1, 1],
        "host with its forked child, then two children"
    );
    // Warm: one child, for the active resolver only (the forked one); the host still
    // loads nothing, and no other child is started.
    let warm = loads_per_process(&plugins, cache.path(), "process", "ld-process-warm");
    assert_eq!(warm, [1], "host with dc-hint's forked resolver process");

    // Probe mode. Cold: three probing children, then the host loads the two plugins
    // they approved (badlayout refused by its child).
    let cache = TempDir::new("cache-isolated-probe");
    let cold = loads_per_process(&plugins, cache.path(), "probe", "ld-probe-cold");
    assert_eq!(cold, [1, 1, 1, 2], "three probes, then the host");
    // Warm: no probe at all (every verdict is known); the host loads the active one.
    let warm = loads_per_process(&plugins, cache.path(), "probe", "ld-probe-warm");
    assert_eq!(warm, [1], "the host alone, loading dc-hint");
}
