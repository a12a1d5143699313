//! A resolver as a vendor wrote it against interface 1.1 (with configuration keys,
//! without provenance), straight on the frozen contract.
#![allow(non_local_definitions)]
use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RString, RVec},
};
use provtarget_abi::*;

struct Legacy;

impl FfiResolver for Legacy {
    fn name(&self) -> RString {
        "Legacy 1.1 Resolver".into()
    }
    fn configure(&mut self, host: FfiHostRef<'_>, _config: FfiPairs) -> RResult<FfiPairs, RString> {
        host.log(3, "legacy 1.1 resolver configured".into());
        RResult::ROk(RVec::new())
    }
    fn targets(&self, host: FfiHostRef<'_>) -> RResult<RVec<RString>, RString> {
        host.log(3, "legacy 1.1 resolver resolving".into());
        RResult::ROk(vec![RString::from("legacy11.example.net:4222")].into())
    }
}

extern "C" fn info() -> FfiPluginInfo {
    FfiPluginInfo {
        name: "Legacy 1.1 Resolver".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        plugin_type: 3,
        vendor: "Old Vendor".into(),
        description: "built against interface 1.1".into(),
        interface_version: INTERFACE_VERSION.into(),
        rustc_version: "rustc (fixture)".into(),
        target: "fixture".into(),
        abi_stable_version: "0.11".into(),
        sdk_version: "1.1.0".into(),
    }
}

extern "C" fn new_resolver() -> RResult<FfiResolverBox, RString> {
    RResult::ROk(FfiResolver_TO::from_value(Legacy, TD_Opaque))
}

extern "C" fn config_keys() -> RVec<FfiConfigKey> {
    vec![FfiConfigKey {
        key: "plugin.legacy11.zone".into(),
        default: "lon1".into(),
        description: "a key declared through 1.1's config_keys".into(),
    }]
    .into()
}

#[export_root_module]
fn root() -> PluginModule_Ref {
    PluginModule {
        info,
        new_resolver,
        config_keys,
    }
    .leak_into_prefix()
}
