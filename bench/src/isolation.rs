//! Crash-isolation rows (issue 11): `targets` in process mode against in-process, one
//! `targets` call through the child against an in-process call, and the cold probe of
//! 100 new plugins against a program that only `dlopen`s them.
use std::{path::Path, process::Command, time::Instant};

use provtarget::{
    config::{keys, ConfigBuilder, HostConfig},
    host::Host,
    resolver::CancelToken,
};
use provtarget_testsupport::TempDir;

use crate::{empty_config, ms, plugin_dir, print_row, run, Bins};

fn targets_cmd(bins: &Bins, dir: &Path, config: &Path, mode: &str) -> Command {
    let mut cmd = Command::new(&bins.provtarget);
    cmd.arg("targets")
        .arg("--config")
        .arg(config)
        .arg("--plugin-dir")
        .arg(dir)
        .arg("--set")
        .arg(format!("{}={mode}", keys::ISOLATION));
    cmd
}

fn host_config(dir: &Path, mode: &str) -> HostConfig {
    ConfigBuilder::new()
        .flag(keys::DIRECTORIES, &dir.display().to_string())
        .flag(keys::ISOLATION, mode)
        .flag(keys::JWT_FILE, "")
        .build()
}

/// The rows.
pub fn rows(bins: &Bins, plugin: &Path, runs: usize) {
    let conf_dir = TempDir::new("bench-iso-conf");
    let config = empty_config(&conf_dir);
    let (dir, _files) = plugin_dir(plugin, "bench-iso-targets", 1, 500);
    whole_process_rows(bins, dir.path(), &config, runs);
    call_row(bins, dir.path());
    cold_probe_rows(bins, plugin, &config, runs);
}

/// 1. `provtarget targets`, one plugin (in `dir`), whole process: process and probe
///    against none.
fn whole_process_rows(bins: &Bins, dir: &Path, config: &Path, runs: usize) {
    let none = || run(&mut targets_cmd(bins, dir, config, "none"));
    let process = || run(&mut targets_cmd(bins, dir, config, "process"));
    let first = process();
    assert!(
        first.stdout.contains("Provisioning using 1 broker(s)"),
        "process mode did not resolve: {}",
        first.stdout
    );
    none();
    let (mut b, mut o) = (vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(none().wall));
        o.push(ms(process().wall));
    }
    print_row(
        "`provtarget targets`, 1 plugin, whole process: isolation process vs none",
        "ms",
        &b,
        &o,
        "≤ 1.5x",
    );
    let probe = || run(&mut targets_cmd(bins, dir, config, "probe"));
    probe();
    let (mut b, mut o) = (vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(none().wall));
        o.push(ms(probe().wall));
    }
    print_row(
        "`provtarget targets`, 1 plugin, whole process: isolation probe vs none",
        "ms",
        &b,
        &o,
        "(context)",
    );
}

/// 2. One `targets` call: through the child (a pipe round trip) vs in-process.
fn call_row(bins: &Bins, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let in_process = Host::start(host_config(dir, "none"));
    let child = Host::start_with_helper(host_config(dir, "process"), bins.provtarget.clone());
    for host in [&in_process, &child] {
        assert_ne!(
            host.resolver_name().0,
            "Choria JWT Resolver",
            "bench plugin not active"
        );
    }
    let calls = 2000;
    let time_calls = |host: &Host| -> Vec<f64> {
        let cancel = CancelToken::new();
        // Warm up (the child is started by configure; the first call is not special).
        runtime.block_on(host.resolve(&cancel)).expect("resolve");
        (0..calls)
            .map(|_| {
                let at = Instant::now();
                runtime.block_on(host.resolve(&cancel)).expect("resolve");
                ms(at.elapsed()) * 1e3
            })
            .collect()
    };
    let (b, o) = (time_calls(&in_process), time_calls(&child));
    print_row(
        &format!(
            "one `targets` call via Host::resolve, {calls} calls: child process vs in-process"
        ),
        "µs",
        &b,
        &o,
        "(report)",
    );
    drop((in_process, child));
}

/// 3. Probe of 100 new plugins, cold: `buildinfo` under probe vs a program that only
///    dlopens the same files (new copies each run: nothing is cached).
fn cold_probe_rows(bins: &Bins, plugin: &Path, config: &Path, runs: usize) {
    let n = 100;
    let (mut b, mut o, mut z) = (vec![], vec![], vec![]);
    for i in 0..runs.min(11) {
        let (dir, files) = plugin_dir(plugin, &format!("bench-iso-probe-{i}"), n, 600 + i as u32);
        let mut cmd = Command::new(&bins.provtarget);
        cmd.arg("buildinfo")
            .arg("--json")
            .arg("--config")
            .arg(config)
            .arg("--plugin-dir")
            .arg(dir.path());
        let mut none_cmd = Command::new(&bins.provtarget);
        none_cmd
            .args(cmd.get_args())
            .arg("--set")
            .arg(format!("{}=none", keys::ISOLATION));
        cmd.arg("--set").arg(format!("{}=probe", keys::ISOLATION));
        let base = run(Command::new(&bins.dlopen).args(&files));
        let ours = run(&mut cmd);
        assert!(
            ours.stdout.matches("\"loaded\"").count() >= n,
            "probe did not approve every copy"
        );
        let plain = run(&mut none_cmd);
        b.push(ms(base.wall));
        o.push(ms(ours.wall));
        z.push(ms(plain.wall));
    }
    print_row(
        &format!("`buildinfo --json`, {n} new plugins, cold: isolation probe vs dlopen-only"),
        "ms",
        &b,
        &o,
        "(report)",
    );
    print_row(
        &format!("`buildinfo --json`, {n} new plugins, cold: isolation none vs dlopen-only"),
        "ms",
        &b,
        &z,
        "(context)",
    );
}
