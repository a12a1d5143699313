//! Its constructor panics: hosts must refuse it and carry on.
use provtarget_abi::{export_plugin, Context, Error, Resolver};

pub struct Explodes;

impl Resolver for Explodes {
    const NAME: &'static str = "Exploding Constructor";
    const VERSION: &'static str = "0.1.0";
    fn new() -> Result<Self, Error> {
        panic!("constructor exploded on purpose")
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec![])
    }
}

export_plugin!(Explodes);
