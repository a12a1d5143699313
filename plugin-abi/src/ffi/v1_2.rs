//! Interface **1.2**: what plugins built against SDK 1.2 export.
//!
//! Changes from 1.1: `FfiResolver` gained `answer`, the targets plus a short
//! provenance text (where the answer came from; empty when the resolver said nothing).
//! The host calls `answer` only on plugins declaring 1.2 or later; 1.0 and 1.1 plugins
//! are read through [`super::v1_0`] and [`super::v1_1`] and their answers carry no
//! provenance. The evolution rules are in [`super`] (`ffi/mod.rs`).
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
pub const INTERFACE_VERSION: &str = "1.2.0";

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

/// One configuration key a plugin reads (new in 1.1).
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiConfigKey {
    pub key: RString,
    pub default: RString,
    pub description: RString,
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
    /// New in 1.2: the targets and the answer's provenance (empty for none).
    fn answer(&self, host: FfiHostRef<'_>) -> RResult<FfiAnswer, RString>;
}

/// What `answer` returns (new in 1.2): the targets, and where they came from.
pub type FfiAnswer = Tuple2<RVec<RString>, RString>;

pub type FfiResolverBox = FfiResolver_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModule_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub info: extern "C" fn() -> FfiPluginInfo,
    #[sabi(last_prefix_field)]
    pub new_resolver: extern "C" fn() -> RResult<FfiResolverBox, RString>,
    /// New in 1.1.
    pub config_keys: extern "C" fn() -> RVec<FfiConfigKey>,
}

impl RootModule for PluginModule_Ref {
    declare_root_module_statics! {PluginModule_Ref}
    const BASE_NAME: &'static str = "provtarget_plugin";
    const NAME: &'static str = "provtarget plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(INTERFACE_VERSION);
}
