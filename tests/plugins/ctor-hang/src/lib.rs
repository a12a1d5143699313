//! A well-formed plugin library (it exports the root module, so it passes every check
//! made from its bytes) with an .init_array function that sleeps forever: it runs the moment the
//! library is loaded, before the host can call anything. A host must never run it in
//! its own process when it only inspects the file.
extern "C" fn at_load() {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

const NAME: &str = "Ctor hang";

#[path = "../../ctor-common.rs"]
mod common;
