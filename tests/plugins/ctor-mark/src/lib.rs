//! A well-formed plugin library (it exports the root module, so it passes every check
//! made from its bytes) with an .init_array function that appends one line (`loaded
//! <pid>`) to the file the environment variable `CTOR_MARK_FILE` names, the moment the
//! library is loaded: a test reads that file to know whether, and how many times, the
//! library's code ran (e.g. never, when its signature is refused).
extern "C" fn at_load() {
    use std::io::Write;
    let Some(path) = std::env::var_os("CTOR_MARK_FILE") else {
        return;
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = writeln!(file, "loaded {}", std::process::id());
    }
}

const NAME: &str = "Ctor mark";

#[path = "../../ctor-common.rs"]
mod common;
