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

/// Bytes held by this process's open `memfd`s (the loader's sealed copies): shared
/// memory that stays allocated whether or not its pages are mapped.
#[allow(dead_code)] // used by verified-load only
pub fn memfd_bytes() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("/memfd:"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|m| m.len())
        .sum()
}
