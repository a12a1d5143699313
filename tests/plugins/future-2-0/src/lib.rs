//! A plugin for a future interface 2.0 whose root module changed incompatibly
//! (`targets` returns structured brokers). A 1.x host must refuse it with a reason
//! naming both versions, without calling into it.
#![allow(non_local_definitions, non_camel_case_types)]
use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RString, RVec},
    StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiBroker {
    pub host: RString,
    pub port: u16,
}

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    #[sabi(last_prefix_field)]
    pub brokers: extern "C" fn() -> RVec<FfiBroker>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "provtarget_plugin";
    const NAME: &'static str = "provtarget plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("2.0.0");
}

extern "C" fn brokers() -> RVec<FfiBroker> {
    RVec::new()
}

#[export_root_module]
fn root() -> PluginModule_Ref {
    PluginModule { brokers }.leak_into_prefix()
}
