//! One `targets` call returning 1 and 100 targets: across the ABI (the bench plugin
//! loaded from a release cdylib, through the host's `PluginAdapter`) against the very
//! same resolver type linked in and called through the native `TargetResolver` trait.
//! Both are called as `&dyn TargetResolver` with the same context. Run with
//! `cargo bench -p provtarget --bench targets`; figures in BENCHMARKS.md.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use provtarget::{
    host::PluginAdapter,
    resolver::{CancelToken, RawTargets, ResolveContext, ResolverError, Settings, TargetResolver},
};
use provtarget_abi::Config;
use provtarget_bench_plugin::{FixedTargets, COUNT_KEY};
use provtarget_loader::{load_all, LoaderOptions};
use provtarget_testsupport::{cdylib_in, Profile, TempDir};

/// The bench plugin's resolver logic, called in-process.
struct Native(FixedTargets);

impl TargetResolver for Native {
    fn name(&self) -> String {
        provtarget_bench_plugin::NAME.into()
    }
    fn version(&self) -> String {
        "0.1.0".into()
    }
    fn configure(
        &mut self,
        _ctx: &ResolveContext,
        config: &Config,
    ) -> Result<Settings, ResolverError> {
        self.0 = FixedTargets::from_config(config).map_err(|e| e.to_string())?;
        Ok(Settings::new())
    }
    fn targets(&self, _ctx: &ResolveContext) -> Result<RawTargets, ResolverError> {
        Ok(self.0.targets().into())
    }
}

fn targets(c: &mut Criterion) {
    let dir = TempDir::new("bench-targets");
    dir.copy_in(
        &cdylib_in("provtarget-bench-plugin", Profile::Release),
        "libprovtarget_bench_plugin.so",
    );
    let mut report = load_all(&LoaderOptions {
        directories: vec![dir.path().to_path_buf()],
        ..LoaderOptions::default()
    });
    assert_eq!(report.plugins.len(), 1, "bench plugin not loaded");
    let loaded = report.plugins.remove(0);
    let mut plugin = PluginAdapter::new(loaded.info, loaded.resolver);
    let mut native = Native(FixedTargets::default());
    let ctx = ResolveContext::new("bench", CancelToken::new());

    let mut group = c.benchmark_group("targets");
    for count in [1usize, 100] {
        let config: Config = [(COUNT_KEY, count.to_string())].into_iter().collect();
        plugin.configure(&ctx, &config).expect("configure plugin");
        native.configure(&ctx, &config).expect("configure native");
        for (which, resolver) in [
            ("native", &native as &dyn TargetResolver),
            ("abi", &plugin as &dyn TargetResolver),
        ] {
            assert_eq!(resolver.targets(&ctx).map(|t| t.len()), Ok(count));
            group.bench_function(BenchmarkId::new(which, count), |b| {
                b.iter(|| black_box(resolver.targets(black_box(&ctx))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, targets);
criterion_main!(benches);
