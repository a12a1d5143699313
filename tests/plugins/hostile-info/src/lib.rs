//! Its name, vendor and description carry escape sequences and newlines: hosts must
//! never print them raw (the loader refuses the name; buildinfo still shows the info).
use provtarget_abi::{export_plugin, Context, Error, Resolver};

pub struct Hostile;

impl Resolver for Hostile {
    const NAME: &'static str = "Hostile\x1b[31mRED";
    const VERSION: &'static str = "0.1.0";
    const VENDOR: &'static str = "Evil\nVendor: forged line";
    const DESCRIPTION: &'static str = "\x1b]0;pwned title\x07";
    fn new() -> Result<Self, Error> {
        Ok(Hostile)
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec!["x:1".into()])
    }
}

export_plugin!(Hostile);
