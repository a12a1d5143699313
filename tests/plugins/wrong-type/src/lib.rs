//! Declares the Choria plugin type `Agent`: hosts must refuse it.
use provtarget_abi::{export_plugin, Context, Error, PluginType, Resolver};

pub struct NotAResolver;

impl Resolver for NotAResolver {
    const NAME: &'static str = "Acme Agent";
    const VERSION: &'static str = "0.1.0";
    const PLUGIN_TYPE: PluginType = PluginType::Agent;
    fn new() -> Result<Self, Error> {
        Ok(NotAResolver)
    }
    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        Ok(vec!["should.never.be.used:4222".into()])
    }
}

export_plugin!(NotAResolver);
