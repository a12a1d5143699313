//! What the ctor-* test plugins share: the `.init_array` entry that runs the
//! parent's `at_load` the moment the library is loaded, and a well-formed resolver
//! named by the parent's `NAME`, exported as the root module so the library passes
//! every check made from its bytes. Included by each with
//! `#[path = "../../ctor-common.rs"] mod common;`.
use provtarget_abi::{export_plugin, Context, Error, Resolver};

#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = super::at_load;

/// The resolver; it is never called (the library's constructor acts first).
pub struct Ctor;

impl Resolver for Ctor {
    const NAME: &'static str = super::NAME;
    const VERSION: &'static str = "0.1.0";
    fn new() -> Result<Self, Error> {
        Ok(Ctor)
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec![])
    }
}

export_plugin!(Ctor);
