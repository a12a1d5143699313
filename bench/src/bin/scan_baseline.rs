//! Baseline: `readdir` + `stat` of every entry of one directory. Prints the
//! nanoseconds it took and the entry count. With `--dlopen`, also `dlopen`s the
//! `*.so` entries (the physical minimum of a plugin scan).
use std::os::unix::ffi::OsStrExt;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dlopen = args.first().is_some_and(|a| a == "--dlopen");
    if dlopen {
        args.remove(0);
    }
    let dir = args.first().expect("usage: scan-baseline [--dlopen] DIR");
    let start = std::time::Instant::now();
    let mut count = 0usize;
    let mut libs = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("readdir");
        // `fstatat` relative to the open directory, as cheap as a stat gets.
        let meta = entry.metadata().expect("stat");
        std::hint::black_box(&meta);
        count += 1;
        if dlopen && entry.file_name().as_bytes().ends_with(b".so") {
            libs.push(entry.path());
        }
    }
    libs.sort();
    for lib in &libs {
        // SAFETY: the driver puts copies of the workspace's bench plugin here.
        std::mem::forget(unsafe { libloading::Library::new(lib) }.expect("dlopen"));
    }
    println!("{} {}", start.elapsed().as_nanos(), count);
}
