//! Interface **1.0**, frozen.
//!
//! This module is a byte-for-byte record of the layout that plugins built against
//! `provtarget-abi` 1.0 export. It must never change: the host keeps it so that it
//! can still read those plugins after the contract has grown (abi_stable refuses a
//! library whose prefix types have fewer fields than the host's, so a newer layout
//! alone cannot load an older plugin).
//!
//! Type names are the same as in every other version on purpose: abi_stable's layout
//! checker compares type names, not module paths.
#![allow(missing_docs, non_local_definitions, non_camel_case_types)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{RBox, RResult, RStr, RString, RVec, Tuple2},
    StableAbi,
};

/// The interface version this layout implements.
pub const INTERFACE_VERSION: &str = "1.0.0";

#[repr(C)]
#[derive(StableAbi)]
pub struct FfiPluginInfo {
    pub name: RString,
    pub version: RString,
    pub plugin_type: u32,
    pub vendor: RString,
    pub description: RString,
    pub interface_version: RString,
    pub rustc_version: RString,
    pub target: RString,
    pub abi_stable_version: RString,
    pub sdk_version: RString,
}

#[sabi_trait]
pub trait FfiHost: Sync {
    fn is_cancelled(&self) -> bool;
    /// Sleeps up to `millis`; returns true when the host cancelled the call.
    fn sleep_ms(&self, millis: u64) -> bool;
    #[sabi(last_prefix_field)]
    fn log(&self, level: u8, message: RStr<'_>);
}

pub type FfiHostRef<'a> = FfiHost_TO<'a, RRef<'a, ()>>;

pub type FfiPairs = RVec<Tuple2<RString, RString>>;

#[sabi_trait]
pub trait FfiResolver: Send + Sync {
    fn name(&self) -> RString;
    fn configure(&mut self, host: FfiHostRef<'_>, config: FfiPairs) -> RResult<FfiPairs, RString>;
    #[sabi(last_prefix_field)]
    fn targets(&self, host: FfiHostRef<'_>) -> RResult<RVec<RString>, RString>;
}

pub type FfiResolverBox = FfiResolver_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub info: extern "C" fn() -> FfiPluginInfo,
    #[sabi(last_prefix_field)]
    pub new_resolver: extern "C" fn() -> RResult<FfiResolverBox, RString>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "provtarget_plugin";
    const NAME: &'static str = "provtarget plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(INTERFACE_VERSION);
}
