//! A well-formed plugin library (it exports the root module, so it passes every check
//! made from its bytes) with an .init_array function that writes through a null pointer: it runs the moment the
//! library is loaded, before the host can call anything. A host must never run it in
//! its own process when it only inspects the file.
use provtarget_abi::{export_plugin, Context, Error, Resolver};

extern "C" fn at_load() {
    let p: *mut u64 = std::ptr::null_mut();
    // SAFETY: none; crashing at load time is the point.
    unsafe { std::ptr::write_volatile(p, 42) };
}

#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;

pub struct Ctor;

impl Resolver for Ctor {
    const NAME: &'static str = "Ctor crash";
    const VERSION: &'static str = "0.1.0";
    fn new() -> Result<Self, Error> {
        Ok(Ctor)
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec![])
    }
}

export_plugin!(Ctor);
