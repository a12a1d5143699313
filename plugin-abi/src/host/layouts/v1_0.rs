//! Interface 1.0, frozen: `info` and `new_resolver`; no configuration keys.
#![forbid(unsafe_code)]

use abi_stable::library::{LibHeader, LibraryError};

use super::{shared_parts, Module, Supported};
use crate::ConfigKey;

shared_parts!(v1_0);

pub(super) const SUPPORTED: Supported = Supported {
    version: l::INTERFACE_VERSION,
    open,
};

struct Root(l::PluginModule_Ref);

fn open(header: &'static LibHeader) -> Result<Box<dyn Module>, LibraryError> {
    let root = header.init_root_module::<l::PluginModule_Ref>()?;
    Ok(Box::new(Root(root)))
}

impl Module for Root {
    fn version(&self) -> &'static str {
        l::INTERFACE_VERSION
    }
    fn info(&self) -> PluginInfo {
        info((self.0.info())())
    }
    /// 1.0 has no `config_keys`: the host reports none.
    fn config_keys(&self) -> Vec<ConfigKey> {
        Vec::new()
    }
    fn new_resolver(&self) -> Result<Box<dyn super::Resolver>, String> {
        let resolver = (self.0.new_resolver())().into_result()?;
        Ok(Box::new(Resolver(resolver)))
    }
}
