//! Baseline: `libloading::Library::new` on every file given, then exit. Prints the
//! nanoseconds the loop took, the number of files, and `RssAnon RssFile RssShmem` (KiB)
//! at exit (one line on stdout). Libraries are never closed, like provtarget's.
#[path = "../rss.rs"]
mod rss;

fn main() {
    let files: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let start = std::time::Instant::now();
    for file in &files {
        // SAFETY: the benchmark driver passes copies of the workspace's own bench
        // plugin, whose initialisers are harmless.
        match unsafe { libloading::Library::new(file) } {
            Ok(lib) => std::mem::forget(lib),
            Err(e) => {
                eprintln!("dlopen-baseline: {e}");
                std::process::exit(1);
            }
        }
    }
    let took = start.elapsed().as_nanos();
    println!("{took} {} {}", files.len(), rss::breakdown());
}
