//! Signed-plugin rows (issue 17): `targets` with `signatures = enforce` and a signed
//! active plugin against `off`, whole process; warm `buildinfo` with 100 signed
//! libraries under `enforce` against a C program that only `dlopen`s them. Keys and
//! signatures are made by the `minisign` command (Debian package `minisign`).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use provtarget_testsupport::TempDir;

use crate::{compile_dlopen_only, empty_config, ms, plugin_dir, print_row, run, Bins};

/// A fresh key pair in `dir`: (public key file, secret key file).
fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let (public, secret) = (dir.join("bench.pub"), dir.join("bench.key"));
    let status = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cannot run minisign (apt-get install minisign)");
    assert!(status.success(), "minisign -G failed");
    (public, secret)
}

/// Signs each file with its own `file:` trusted comment.
fn sign_all(secret: &Path, files: &[PathBuf]) {
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let status = Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(secret)
            .arg("-m")
            .arg(f)
            .arg("-t")
            .arg(format!("file:{name}"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("cannot run minisign");
        assert!(status.success(), "minisign -S failed on {}", f.display());
    }
}

fn with_sets(mut cmd: Command, sets: &[String]) -> Command {
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

/// What both rows share: a work folder, an empty configuration, a key pair made by
/// `minisign` and a trusted-keys folder holding its public key.
struct Setup {
    work: TempDir,
    config: PathBuf,
    _keys: TempDir,
    secret: PathBuf,
    trusted: String,
}

impl Setup {
    fn new() -> Setup {
        let work = TempDir::new("bench-sig");
        let config = empty_config(&work);
        let keys = TempDir::new("bench-sig-keys");
        let (public, secret) = keygen(work.path());
        std::fs::copy(&public, keys.path().join("bench.pub")).expect("copy the key");
        let trusted = format!("plugin.provtarget.trusted_keys={}", keys.path().display());
        Setup {
            work,
            config,
            _keys: keys,
            secret,
            trusted,
        }
    }
}

/// The rows.
pub fn rows(bins: &Bins, plugin: &Path, runs: usize) {
    let setup = Setup::new();
    targets_row(bins, plugin, runs, &setup);
    buildinfo_row(bins, plugin, runs, &setup);
}

/// 1. `provtarget targets`, one signed plugin, whole process: enforce vs off.
fn targets_row(bins: &Bins, plugin: &Path, runs: usize, setup: &Setup) {
    let Setup {
        config,
        secret,
        trusted,
        ..
    } = setup;
    let (dir, files) = plugin_dir(plugin, "bench-sig-targets", 1, 700);
    sign_all(secret, &files);
    let targets = |mode: &str| {
        let mut cmd = Command::new(&bins.provtarget);
        cmd.arg("targets")
            .arg("--config")
            .arg(config)
            .arg("--plugin-dir")
            .arg(dir.path());
        let mut cmd = with_sets(
            cmd,
            &[
                trusted.clone(),
                format!("plugin.provtarget.signatures={mode}"),
                "plugin.provtarget.cache_dir=none".into(),
            ],
        );
        let r = run(&mut cmd);
        assert!(
            r.stdout.contains("Provisioning using 1 broker(s)"),
            "{mode}: the signed plugin did not resolve: {}",
            r.stdout
        );
        r
    };
    targets("off");
    targets("enforce");
    let (mut b, mut o) = (vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(targets("off").wall));
        o.push(ms(targets("enforce").wall));
    }
    print_row(
        "`provtarget targets`, 1 signed plugin, whole process: signatures enforce vs off",
        "ms",
        &b,
        &o,
        "≤ 1.2x",
    );
}

/// 2. Warm `buildinfo --json`, 100 signed libraries, enforce, vs C dlopen-only.
fn buildinfo_row(bins: &Bins, plugin: &Path, runs: usize, setup: &Setup) {
    let Setup {
        work,
        config,
        secret,
        trusted,
        ..
    } = setup;
    let c = compile_dlopen_only(work.path());
    let (dir, files) = plugin_dir(plugin, "bench-sig-100", 100, 800);
    sign_all(secret, &files);
    let baseline = || {
        let r = run(Command::new(&c).args(&files));
        assert_eq!(r.stdout.trim(), "100");
        r
    };
    let cache = work.path().join("cache");
    let buildinfo = |mode: &str| {
        let mut cmd = Command::new(&bins.provtarget);
        cmd.arg("buildinfo")
            .arg("--json")
            .arg("--config")
            .arg(config)
            .arg("--plugin-dir")
            .arg(dir.path());
        let mut cmd = with_sets(
            cmd,
            &[
                trusted.clone(),
                format!("plugin.provtarget.signatures={mode}"),
                format!("plugin.provtarget.cache_dir={}", cache.display()),
            ],
        );
        run(&mut cmd)
    };
    let first = buildinfo("enforce");
    assert_eq!(
        first.stdout.matches("\"state\": \"signed\"").count(),
        100,
        "not every library verified: {}",
        first.stdout
    );
    let warm = || {
        let r = buildinfo("enforce");
        assert_eq!(r.stdout.matches("\"cached\": true").count(), 99, "not warm");
        assert_eq!(r.stdout.matches("\"state\": \"signed\"").count(), 100);
        r
    };
    warm();
    baseline();
    let (mut b, mut w) = (vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(baseline().wall));
        w.push(ms(warm().wall));
    }
    print_row(
        "`buildinfo --json`, 100 signed plugins, enforce, warm verdict cache, vs C dlopen-only",
        "ms",
        &b,
        &w,
        "≤ 1.0x",
    );
}
