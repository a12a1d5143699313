//! provtarget's loader on one directory (`load_all`: every trust, ELF, layout, info
//! and constructor check; with `--hash`, the SHA-256 of every file too). Prints the nanoseconds it took, the number of
//! plugins loaded, the number of files seen, `RssAnon RssFile RssShmem` (KiB) at exit,
//! and the KiB held by its sealed copies (memfds).
#[path = "../rss.rs"]
mod rss;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .expect("usage: verified-load DIR [--hash]");
    let options = provtarget_loader::LoaderOptions {
        directories: vec![dir.into()],
        // `--hash`: also the SHA-256 of every file, as with a pin file or in buildinfo.
        always_hash: std::env::args().nth(2).as_deref() == Some("--hash"),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let report = provtarget_loader::load_all(&options);
    let took = start.elapsed().as_nanos();
    println!(
        "{took} {} {} {} {}",
        report.plugins.len(),
        report.libraries.len(),
        rss::breakdown(),
        rss::memfd_bytes() / 1024
    );
    // Keep the plugins alive until the figure is printed, as a host would.
    std::mem::forget(report);
}
