//! A resolver as a vendor wrote it against interface 1.0, without today's SDK.
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
        "Legacy 1.0 Resolver".into()
    }
    fn configure(&mut self, host: FfiHostRef<'_>, _config: FfiPairs) -> RResult<FfiPairs, RString> {
        host.log(3, "legacy resolver configured".into());
        RResult::ROk(RVec::new())
    }
    fn targets(&self, host: FfiHostRef<'_>) -> RResult<RVec<RString>, RString> {
        host.log(3, "legacy resolver resolving".into());
        RResult::ROk(vec![RString::from("legacy.example.net:4222")].into())
    }
}

extern "C" fn info() -> FfiPluginInfo {
    FfiPluginInfo {
        name: "Legacy 1.0 Resolver".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        plugin_type: 3,
        vendor: "Old Vendor".into(),
        description: "built against interface 1.0".into(),
        interface_version: INTERFACE_VERSION.into(),
        rustc_version: "rustc (fixture)".into(),
        target: "fixture".into(),
        abi_stable_version: "0.11".into(),
        sdk_version: "1.0.0".into(),
    }
}

extern "C" fn new_resolver() -> RResult<FfiResolverBox, RString> {
    RResult::ROk(FfiResolver_TO::from_value(Legacy, TD_Opaque))
}

#[export_root_module]
fn root() -> PluginModule_Ref {
    PluginModule { info, new_resolver }.leak_into_prefix()
}
