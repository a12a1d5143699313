//! In-process loader benchmarks (`cargo bench -p provtarget-loader --bench load`).
//!
//! - `load/{dlopen,verified}/N`: `libloading::Library::new` against `load_all` on N
//!   fresh, distinct copies of the release bench plugin per iteration (libraries are
//!   never unloaded, so a copy is loaded once; the process accumulates libraries, so
//!   keep the iteration count low and trust the whole-process driver,
//!   `provtarget-bench load`, for the headline figure).
//! - `scan/{readdir_stat,load_all}`: a directory of 10,000 non-plugin files, which can
//!   be scanned repeatedly.
// Unsafe only for baseline `dlopen`s of the bench plugin, each block with its SAFETY comment.
#![allow(unsafe_code)]
use std::{
    hint::black_box,
    path::PathBuf,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use provtarget_loader::{load_all, LoaderOptions};
use provtarget_testsupport::{cdylib_in, Profile, TempDir};

fn options(dir: PathBuf) -> LoaderOptions {
    LoaderOptions {
        directories: vec![dir],
        ..LoaderOptions::default()
    }
}

fn load(c: &mut Criterion) {
    let plugin = cdylib_in("provtarget-bench-plugin", Profile::Release);
    let mut group = c.benchmark_group("load");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(10));
    let mut tag = 0u32;
    for n in [1usize, 10] {
        let mut fresh = |label: &str| {
            tag += 1;
            let dir = TempDir::new(label);
            let files =
                provtarget_bench_plugin::make_copies(&plugin, dir.path(), n, 1000 + tag).unwrap();
            (dir, files)
        };
        let mut dirs = Vec::new();
        group.bench_function(BenchmarkId::new("dlopen", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (dir, files) = fresh("bench-dlopen");
                    let start = Instant::now();
                    for f in &files {
                        // SAFETY: copies of the workspace's own bench plugin.
                        std::mem::forget(unsafe { libloading::Library::new(f) }.unwrap());
                    }
                    total += start.elapsed();
                    dirs.push(dir);
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("verified", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (dir, _) = fresh("bench-verified");
                    let start = Instant::now();
                    let report = load_all(&options(dir.path().to_path_buf()));
                    total += start.elapsed();
                    assert_eq!(report.plugins.len(), n);
                    std::mem::forget(report);
                    dirs.push(dir);
                }
                total
            })
        });
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    let dir = TempDir::new("bench-scan");
    for i in 0..10_000 {
        dir.write(&format!("data-{i:05}.json"), "{}\n");
    }
    let mut group = c.benchmark_group("scan");
    group.sample_size(20);
    group.bench_function("readdir_stat/10000", |b| {
        b.iter(|| {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                black_box(entry.unwrap().metadata().unwrap());
            }
        })
    });
    group.bench_function("load_all/10000", |b| {
        b.iter(|| black_box(load_all(&options(dir.path().to_path_buf()))))
    });
    group.finish();
}

criterion_group!(benches, load, scan);
criterion_main!(benches);
