//! The whole-process benchmark driver (issue 5; figures in BENCHMARKS.md).
//!
//! Every figure is a ratio against a baseline measured in the same run, on the same
//! files, baseline and provtarget alternating. Libraries are never unloaded, so every
//! measured load happens in a fresh child process; the copies are distinct files
//! (own inode, own plugin name, own SHA-256) made here from the release bench plugin.
//!
//! ```text
//! provtarget-bench [--runs N] [--cancel-runs N] [ROW...]
//! ROW: load buildinfo cancel rss scan cache isolation broker failover signatures   (default: all)
//! provtarget-bench copies DIR N          (make N distinct copies in DIR and keep
//!                                         them, for profiling: see BENCHMARKS.md)
//! ```
use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

mod broker_check;
mod failover;
mod isolation;
mod signatures;

use provtarget::{
    config::{keys, ConfigBuilder},
    host::Host,
    resolver::CancelToken,
};
use provtarget_testsupport::{build_workspace, cdylib_in, Profile, TempDir};

struct Options {
    runs: usize,
    cancel_runs: usize,
    rows: Vec<String>,
}

/// Every row, in the default order.
const ALL_ROWS: [&str; 10] = [
    "load",
    "buildinfo",
    "rss",
    "cancel",
    "scan",
    "cache",
    "isolation",
    "broker",
    "failover",
    "signatures",
];

fn main() {
    if std::env::args().nth(1).as_deref() == Some("copies") {
        make_copies();
        return;
    }
    let options = parse_options();
    let release = build_workspace(Profile::Release);
    let plugin = cdylib_in("provtarget-bench-plugin", Profile::Release);
    let bins = Bins {
        dlopen: release.join("dlopen-baseline"),
        scan: release.join("scan-baseline"),
        verified: release.join("verified-load"),
        provtarget: release.join("provtarget"),
    };
    for b in [&bins.dlopen, &bins.scan, &bins.verified, &bins.provtarget] {
        assert!(b.exists(), "{} was not built", b.display());
    }
    println!("# provtarget benchmarks");
    println!(
        "plugin: {} ({} bytes); runs per figure: {}; cores: {}",
        plugin.display(),
        std::fs::metadata(&plugin).map(|m| m.len()).unwrap_or(0),
        options.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    println!("| row | baseline median (p99) | provtarget median (p99) | ratio | goal |");
    println!("|---|---|---|---|---|");
    for row in &options.rows {
        run_row(row, &bins, &plugin, &options);
    }
}

/// `provtarget-bench copies DIR N`: makes N distinct copies of the release bench
/// plugin in DIR and keeps them.
fn make_copies() {
    let (dir, n) = (std::env::args().nth(2), std::env::args().nth(3));
    let (Some(dir), Some(n)) = (dir, n.and_then(|n| n.parse().ok())) else {
        panic!("usage: provtarget-bench copies DIR N");
    };
    let plugin = cdylib_in("provtarget-bench-plugin", Profile::Release);
    std::fs::create_dir_all(&dir).expect("cannot create DIR");
    provtarget_bench_plugin::make_copies(&plugin, Path::new(&dir), n, 900)
        .expect("cannot copy the bench plugin");
}

/// `[--runs N] [--cancel-runs N] [ROW...]` (every row when none is named).
fn parse_options() -> Options {
    let mut options = Options {
        runs: 21,
        cancel_runs: 1000,
        rows: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => options.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--cancel-runs" => {
                options.cancel_runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--cancel-runs N")
            }
            row => options.rows.push(row.to_string()),
        }
    }
    if options.rows.is_empty() {
        options.rows = ALL_ROWS.iter().map(|s| s.to_string()).collect();
    }
    options
}

/// Measures and prints the row(s) named `row`.
fn run_row(row: &str, bins: &Bins, plugin: &Path, options: &Options) {
    match row {
        "load" => load_rows(bins, plugin, options.runs),
        "buildinfo" => buildinfo_rows(bins, plugin, options.runs),
        "rss" => rss_row(bins, plugin, options.runs),
        "cancel" => cancel_row(options.cancel_runs),
        "scan" => scan_row(bins, plugin, options.runs),
        "cache" => cache_rows(bins, plugin, options.runs),
        "isolation" => isolation::rows(bins, plugin, options.runs),
        "broker" => broker_check::rows(bins, options.runs),
        "failover" => failover::rows(&bins.provtarget, options.runs),
        "signatures" => signatures::rows(bins, plugin, options.runs),
        other => panic!("unknown row {other}; rows: {}", ALL_ROWS.join(" ")),
    }
}

struct Bins {
    dlopen: PathBuf,
    scan: PathBuf,
    verified: PathBuf,
    provtarget: PathBuf,
}

/// One finished child: its wall time, peak RSS and stdout.
struct Run {
    wall: Duration,
    max_rss_kib: u64,
    stdout: String,
}

/// Runs `cmd` to completion, taking its peak RSS from `wait4`.
fn run(cmd: &mut Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PROVTARGET_") {
            cmd.env_remove(k);
        }
    }
    let start = Instant::now();
    // Reaped below with wait4 (for its rusage), not Child::wait.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("cannot start benchmark child");
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("child stdout");
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; both pointers are valid for the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(
        waited,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let exit = std::process::ExitStatus::from_raw(status);
    assert!(exit.success(), "benchmark child {cmd:?} failed: {exit}");
    Run {
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
        stdout,
    }
}

/// The first number a probe prints: its own in-process time.
fn probe_nanos(run: &Run) -> Duration {
    let ns: u64 = run
        .stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("probe output");
    Duration::from_nanos(ns)
}

fn probe_field(run: &Run, index: usize) -> usize {
    run.stdout
        .split_whitespace()
        .nth(index)
        .and_then(|n| n.parse().ok())
        .expect("probe output")
}

struct Stats {
    median: f64,
    p99: f64,
}

/// Median and p99 (nearest rank) of `values`.
fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Stats {
        median,
        p99: rank(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_row(what: &str, unit: &str, base: &[f64], ours: &[f64], goal: &str) {
    let (b, o) = (stats(base), stats(ours));
    println!(
        "| {what} | {:.3} {unit} ({:.3}) | {:.3} {unit} ({:.3}) | {:.2}x | {goal} |",
        b.median,
        b.p99,
        o.median,
        o.p99,
        o.median / b.median
    );
}

/// A 0755 directory holding `n` distinct copies of the bench plugin.
fn plugin_dir(plugin: &Path, label: &str, n: usize, tag: u32) -> (TempDir, Vec<PathBuf>) {
    let dir = TempDir::new(label);
    let files = provtarget_bench_plugin::make_copies(plugin, dir.path(), n, tag)
        .expect("cannot copy the bench plugin");
    (dir, files)
}

fn load_rows(bins: &Bins, plugin: &Path, runs: usize) {
    for (i, n) in [1usize, 10, 100].into_iter().enumerate() {
        let (dir, files) = plugin_dir(plugin, &format!("bench-load-{n}"), n, 100 + i as u32);
        let baseline = || {
            let r = run(Command::new(&bins.dlopen).args(&files));
            assert_eq!(probe_field(&r, 1), n);
            r
        };
        let ours = || {
            let r = run(Command::new(&bins.verified).arg(dir.path()));
            assert_eq!(probe_field(&r, 1), n, "not every copy loaded: {}", r.stdout);
            r
        };
        // Warm the page cache and the binaries once, untimed.
        baseline();
        ours();
        let (mut b_in, mut o_in, mut b_wall, mut o_wall) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let b = baseline();
            let o = ours();
            b_in.push(ms(probe_nanos(&b)));
            o_in.push(ms(probe_nanos(&o)));
            b_wall.push(ms(b.wall));
            o_wall.push(ms(o.wall));
        }
        print_row(
            &format!("verified load, N={n}: the loading loop, in-process"),
            "ms",
            &b_in,
            &o_in,
            "≤ 1.25x",
        );
        print_row(
            &format!("verified load, N={n}: whole process"),
            "ms",
            &b_wall,
            &o_wall,
            "(context)",
        );
        if n == 100 {
            // What the SHA-256 adds (pinning on, or buildinfo's inventory).
            let hashed = || run(Command::new(&bins.verified).arg(dir.path()).arg("--hash"));
            hashed();
            let (mut b_in, mut h_in) = (vec![], vec![]);
            for _ in 0..runs {
                b_in.push(ms(probe_nanos(&baseline())));
                h_in.push(ms(probe_nanos(&hashed())));
            }
            print_row(
                "verified load, N=100, hashing every file: the loading loop, in-process",
                "ms",
                &b_in,
                &h_in,
                "(context)",
            );
        }
    }
}

fn empty_config(dir: &TempDir) -> PathBuf {
    dir.write("empty.conf", "# benchmarks: no settings\n")
}

fn buildinfo_cmd(bins: &Bins, dir: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(&bins.provtarget);
    cmd.arg("buildinfo")
        .arg("--json")
        .arg("--config")
        .arg(config)
        .arg("--plugin-dir")
        .arg(dir);
    cmd
}

fn buildinfo_rows(bins: &Bins, plugin: &Path, runs: usize) {
    let conf_dir = TempDir::new("bench-conf");
    let config = empty_config(&conf_dir);
    for (i, n) in [0usize, 10, 100].into_iter().enumerate() {
        let (dir, files) = plugin_dir(plugin, &format!("bench-bi-{n}"), n, 200 + i as u32);
        let baseline = || run(Command::new(&bins.dlopen).args(&files));
        let ours = || run(&mut buildinfo_cmd(bins, dir.path(), &config));
        let first = ours();
        assert!(
            first.stdout.matches("\"loaded\"").count() >= n,
            "buildinfo did not load every copy"
        );
        baseline();
        let (mut b, mut o) = (vec![], vec![]);
        for _ in 0..runs {
            b.push(ms(baseline().wall));
            o.push(ms(ours().wall));
        }
        print_row(
            &format!("`provtarget buildinfo --json`, {n} plugins, whole process"),
            "ms",
            &b,
            &o,
            "≤ 1.5x",
        );
    }
}

fn rss_row(bins: &Bins, plugin: &Path, runs: usize) {
    let conf_dir = TempDir::new("bench-conf");
    let config = empty_config(&conf_dir);
    let (dir, files) = plugin_dir(plugin, "bench-rss", 100, 300);
    let (mut b, mut o, mut v) = (vec![], vec![], vec![]);
    let runs = runs.min(11);
    for _ in 0..runs {
        b.push(run(Command::new(&bins.dlopen).args(&files)).max_rss_kib as f64 / 1024.0);
        o.push(run(&mut buildinfo_cmd(bins, dir.path(), &config)).max_rss_kib as f64 / 1024.0);
        v.push(run(Command::new(&bins.verified).arg(dir.path())).max_rss_kib as f64 / 1024.0);
    }
    print_row(
        "peak RSS, 100 plugins: `provtarget buildinfo --json`",
        "MiB",
        &b,
        &o,
        "≤ 1.2x",
    );
    print_row(
        "peak RSS, 100 plugins: loader only (`verified-load`)",
        "MiB",
        &b,
        &v,
        "(context)",
    );
    // Where the resident memory is at exit (one more run each): anonymous (heap),
    // file-backed and shared-memory (the sealed memfd copies) pages.
    let base = run(Command::new(&bins.dlopen).args(&files));
    let ours = run(Command::new(&bins.verified).arg(dir.path()));
    let mib = |r: &Run, i: usize| probe_field(r, i) as f64 / 1024.0;
    println!(
        "| resident at exit (RssAnon / RssFile / RssShmem) | {:.1} / {:.1} / {:.1} MiB | \
         {:.1} / {:.1} / {:.1} MiB | | (context) |",
        mib(&base, 2),
        mib(&base, 3),
        mib(&base, 4),
        mib(&ours, 3),
        mib(&ours, 4),
        mib(&ours, 5)
    );
    println!(
        "| held in the loader's sealed copies (memfd sizes) | — | {:.1} MiB | | (context) |",
        mib(&ours, 6)
    );
}

fn scan_row(bins: &Bins, plugin: &Path, runs: usize) {
    let (dir, _) = plugin_dir(plugin, "bench-scan", 10, 400);
    for i in 0..10_000 {
        std::fs::write(dir.path().join(format!("data-{i:05}.json")), b"{}\n")
            .expect("cannot write scan file");
    }
    let ours = || {
        let r = run(Command::new(&bins.verified).arg(dir.path()));
        assert_eq!(probe_field(&r, 1), 10, "not every plugin loaded");
        assert_eq!(probe_field(&r, 2), 10_010);
        r
    };
    let baseline = || run(Command::new(&bins.scan).arg(dir.path()));
    let with_dlopen = || run(Command::new(&bins.scan).arg("--dlopen").arg(dir.path()));
    ours();
    baseline();
    with_dlopen();
    let (mut b, mut d, mut o) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(probe_nanos(&baseline())));
        d.push(ms(probe_nanos(&with_dlopen())));
        o.push(ms(probe_nanos(&ours())));
    }
    print_row(
        "dir scan, 10,000 files + 10 plugins, vs readdir+stat",
        "ms",
        &b,
        &o,
        "≤ 1.5x",
    );
    print_row(
        "dir scan, 10,000 files + 10 plugins, vs readdir+stat+dlopen of the 10",
        "ms",
        &d,
        &o,
        "(context)",
    );
}

/// Cancels a real plugin (the testkit in mode `wait`, asleep in the host's sleep)
/// through the real host, and times cancel → `resolve` returning.
fn cancel_row(runs: usize) {
    let dir = TempDir::new("bench-cancel");
    dir.copy_in(
        &cdylib_in("provtarget-testkit", Profile::Release),
        "libprovtarget_testkit.so",
    );
    let config = ConfigBuilder::new()
        .flag(keys::DIRECTORIES, &dir.path().display().to_string())
        .flag("testkit.mode", "wait")
        .build();
    let host = Host::start(config);
    assert_eq!(host.resolver_name().0, "Test Kit", "testkit not active");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cancel = CancelToken::new();
        let (tx, rx) = mpsc::channel();
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                // Long enough for the resolver thread to be asleep in the plugin.
                std::thread::sleep(Duration::from_millis(3));
                let at = Instant::now();
                cancel.cancel();
                tx.send(at).expect("send");
            })
        };
        let result = runtime.block_on(host.resolve(&cancel));
        let returned = Instant::now();
        let cancelled_at = rx.recv().expect("canceller");
        canceller.join().expect("canceller thread");
        assert!(result.is_err(), "a waiting resolver cannot return targets");
        latencies.push(ms(returned.saturating_duration_since(cancelled_at)));
    }
    let s = stats(&latencies);
    let max = latencies.iter().copied().fold(0.0, f64::max);
    println!(
        "| cancellation latency, {runs} runs (testkit `wait` via Host::resolve) | — | median {:.3} ms, p99 {:.3} ms, max {:.3} ms | — | p99 ≤ 5 ms |",
        s.median, s.p99, max
    );
}

/// Compiles `bench/c/dlopen_only.c` with the system C compiler into `out`.
fn compile_dlopen_only(out: &Path) -> PathBuf {
    let source = provtarget_testsupport::workspace_root().join("bench/c/dlopen_only.c");
    let exe = out.join("dlopen-only");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cannot run cc (install gcc)");
    assert!(status.success(), "cc failed on {}", source.display());
    exe
}

/// The verdict cache (issue 11): `buildinfo --json` with 100 plugins, warm cache
/// (only the active plugin is loaded) and cold (a new cache directory each run: every
/// plugin loaded, the cache written), against a C program that only `dlopen`s the
/// same 100 files.
fn cache_rows(bins: &Bins, plugin: &Path, runs: usize) {
    let work = TempDir::new("bench-cache");
    let c = compile_dlopen_only(work.path());
    let config = empty_config(&work);
    let (dir, files) = plugin_dir(plugin, "bench-cache-100", 100, 500);
    let baseline = || {
        let r = run(Command::new(&c).args(&files));
        assert_eq!(r.stdout.trim(), "100");
        r
    };
    let with_cache = |cache: &Path| {
        let mut cmd = buildinfo_cmd(bins, dir.path(), &config);
        cmd.arg("--set")
            .arg(format!("plugin.provtarget.cache_dir={}", cache.display()));
        let r = run(&mut cmd);
        assert_eq!(r.stdout.matches("\"loaded\"").count(), 100, "{}", r.stdout);
        r
    };
    let warm_dir = work.path().join("warm");
    let first = with_cache(&warm_dir);
    assert_eq!(first.stdout.matches("\"cached\": true").count(), 0);
    let warm = || {
        let r = with_cache(&warm_dir);
        assert_eq!(r.stdout.matches("\"cached\": true").count(), 99, "not warm");
        r
    };
    warm();
    baseline();
    let (mut b, mut w, mut cold) = (vec![], vec![], vec![]);
    for i in 0..runs {
        b.push(ms(baseline().wall));
        w.push(ms(warm().wall));
        cold.push(ms(with_cache(&work.path().join(format!("cold-{i}"))).wall));
    }
    print_row(
        "`buildinfo --json`, 100 plugins, warm verdict cache, vs C dlopen-only of the 100",
        "ms",
        &b,
        &w,
        "≤ 1.0x",
    );
    print_row(
        "`buildinfo --json`, 100 plugins, cold verdict cache (loads all, writes it), vs C dlopen-only",
        "ms",
        &b,
        &cold,
        "(context)",
    );
}
