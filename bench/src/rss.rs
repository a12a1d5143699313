//! Shared by the probes: where their resident memory is at exit.

/// `RssAnon RssFile RssShmem` of this process in KiB, from `/proc/self/status`
/// (zeros where it cannot be read).
pub fn breakdown() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    format!(
        "{} {} {}",
        kib("RssAnon:"),
        kib("RssFile:"),
        kib("RssShmem:")
    )
}
