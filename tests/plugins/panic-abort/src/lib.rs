//! Built with `panic = "abort"`, so `export_plugin!` marks it with
//! `provtarget_abi::PANIC_ABORT_SYMBOL`. Its `targets` panics: with the abort strategy
//! the SDK could not catch that, and the host's process would end. Hosts must refuse
//! the file before any of its code runs; the constructor leaves a trace (an
//! environment variable) so a test can prove it never ran.
use provtarget_abi::{export_plugin, Context, Error, Resolver};

/// The environment variable the constructor sets, were it ever run.
pub const CONSTRUCTED_VAR: &str = "PROVTARGET_TEST_PANIC_ABORT_CONSTRUCTED";

pub struct Aborts;

impl Resolver for Aborts {
    const NAME: &'static str = "Panic Abort Build";
    const VERSION: &'static str = "0.1.0";
    fn new() -> Result<Self, Error> {
        std::env::set_var(CONSTRUCTED_VAR, "1");
        Ok(Aborts)
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        // Under panic = "abort" this ends the whole host process: no catch_unwind can
        // stop it. That is why the loader refuses this build outright.
        panic!("a panic in a panic = \"abort\" build ends the host")
    }
}

export_plugin!(Aborts);
