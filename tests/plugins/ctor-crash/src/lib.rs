//! A well-formed plugin library (it exports the root module, so it passes every check
//! made from its bytes) with an .init_array function that writes through a null pointer: it runs the moment the
//! library is loaded, before the host can call anything. A host must never run it in
//! its own process when it only inspects the file.
extern "C" fn at_load() {
    let p: *mut u64 = std::ptr::null_mut();
    // SAFETY: none; crashing at load time is the point.
    unsafe { std::ptr::write_volatile(p, 42) };
}

const NAME: &str = "Ctor crash";

#[path = "../../ctor-common.rs"]
mod common;
