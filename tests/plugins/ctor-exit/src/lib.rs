//! A well-formed plugin library (it exports the root module, so it passes every check
//! made from its bytes) with an .init_array function that calls exit(0): it runs the moment the
//! library is loaded, before the host can call anything. A host must never run it in
//! its own process when it only inspects the file.
extern "C" fn at_load() {
    // SAFETY: none; ending the loading process is the point.
    unsafe { libc::exit(0) };
}

const NAME: &str = "Ctor exit";

#[path = "../../ctor-common.rs"]
mod common;
