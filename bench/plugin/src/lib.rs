//! The benchmark plugin. Its resolver returns `bench.targets` (a count, default 1)
//! generated `host:port` strings, so the cost of one `targets` call can be measured
//! across the ABI (this crate as a `cdylib`) and in-process (the same [`FixedTargets`]
//! through the host's native trait, this crate as an `rlib`).
//!
//! [`make_copies`] writes distinct copies of the built library: each gets its own
//! inode (so the dynamic linker cannot share them), its own plugin name (so the loader
//! does not refuse it as a duplicate) and therefore its own SHA-256.

use std::{io, path::Path};

use provtarget_abi::{export_plugin, Config, Context, Error, Resolver, Settings};

/// The configuration key holding the number of targets to return.
pub const COUNT_KEY: &str = "bench.targets";

/// The plugin name as built. [`make_copies`] overwrites its trailing digits in each
/// copy; the marker must stay unique in the library's bytes.
pub const NAME: &str = "provtarget bench plugin #0000000000";
const NAME_DIGITS: usize = 10;

/// The resolver logic shared by both paths: a fixed list, cloned per call.
#[derive(Debug, Clone, Default)]
pub struct FixedTargets {
    targets: Vec<String>,
}

impl FixedTargets {
    /// `count` distinct `host:port` strings.
    pub fn with_count(count: usize) -> FixedTargets {
        FixedTargets {
            targets: (0..count)
                .map(|i| format!("broker-{i}.prov.example.net:4222"))
                .collect(),
        }
    }

    /// Reads [`COUNT_KEY`] from a configuration.
    pub fn from_config(config: &Config) -> Result<FixedTargets, Error> {
        let count: usize = config.get_or(COUNT_KEY, "1").parse()?;
        Ok(FixedTargets::with_count(count))
    }

    /// What `targets` returns.
    pub fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }
}

/// The exported plugin.
pub struct BenchPlugin(FixedTargets);

impl Resolver for BenchPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget benchmarks";
    const DESCRIPTION: &'static str = "returns bench.targets generated targets";

    fn new() -> Result<Self, Error> {
        Ok(BenchPlugin(FixedTargets::with_count(1)))
    }

    fn configure(&mut self, _ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        self.0 = FixedTargets::from_config(config)?;
        Ok(Settings::new())
    }

    fn targets(&self, _ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(self.0.targets())
    }
}

export_plugin!(BenchPlugin);

/// Writes `count` copies of the library `src` into `dir` as `libbench_<tag>_<i>.so`
/// (mode 0644), each with a distinct plugin name (`#<tag*…+i>`, the name's digits) and
/// so a distinct SHA-256. Returns their paths, sorted.
pub fn make_copies(
    src: &Path,
    dir: &Path,
    count: usize,
    tag: u32,
) -> io::Result<Vec<std::path::PathBuf>> {
    let bytes = std::fs::read(src)?;
    let marker = NAME.as_bytes();
    let at = find_unique(&bytes, marker).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold the name marker exactly once",
                src.display()
            ),
        )
    })?;
    let digits_at = at + marker.len() - NAME_DIGITS;
    let mut paths = Vec::with_capacity(count);
    let mut copy = bytes.clone();
    for i in 0..count {
        let id = format!("{:05}{:05}", tag % 100_000, i % 100_000);
        copy[digits_at..digits_at + NAME_DIGITS].copy_from_slice(id.as_bytes());
        let path = dir.join(format!("libbench_{tag}_{i:05}.so"));
        std::fs::write(&path, &copy)?;
        set_mode_0644(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

fn find_unique(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, window) in haystack.windows(needle.len()).enumerate() {
        if window == needle {
            if found.is_some() {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

fn set_mode_0644(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
