//! A plugin that declares interface **1.1.0** but whose root module has the **1.0**
//! layout (no `config_keys`): a lie a host must catch. Checked against the 1.1 layout
//! it declares, it is refused (`too many fields`); a host that tried the 1.0 layout
//! after the 1.1 one failed would load it as a 1.0 plugin.
//!
//! The layout types come from `provtarget_abi::ffi::v1_0` (abi_stable compares the
//! defining package's name, so they must come from `provtarget-abi`); only the
//! declared version differs, through a transparent wrapper of the 1.0 root-module
//! reference with its own `RootModule` impl.
#![allow(non_local_definitions)]
use abi_stable::{
    abi_stability::{GetStaticEquivalent_, StableAbi},
    declare_root_module_statics, export_root_module,
    library::RootModule,
    pointer_trait::{GetPointerKind, PK_Reference},
    prefix_type::{PrefixRefTrait, PrefixTypeTrait},
    sabi_types::VersionStrings,
    std_types::{RErr, RResult, RString},
    type_layout::TypeLayout,
};
use provtarget_abi::ffi::v1_0 as l;

/// The 1.0 root module, declared as 1.1.0.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Mislabelled(l::PluginModule_Ref);

// SAFETY (all impls below): `Mislabelled` is a `repr(transparent)` wrapper of
// `PluginModule_Ref`, so it has that type's layout and pointer semantics; each impl
// forwards to that type's.
unsafe impl GetStaticEquivalent_ for Mislabelled {
    type StaticEquivalent = Mislabelled;
}
unsafe impl StableAbi for Mislabelled {
    type IsNonZeroType = <l::PluginModule_Ref as StableAbi>::IsNonZeroType;
    const LAYOUT: &'static TypeLayout = <l::PluginModule_Ref as StableAbi>::LAYOUT;
}
unsafe impl GetPointerKind for Mislabelled {
    type Kind = PK_Reference;
    type PtrTarget = <l::PluginModule_Ref as GetPointerKind>::PtrTarget;
}
unsafe impl PrefixRefTrait for Mislabelled {
    type PrefixFields = <l::PluginModule_Ref as PrefixRefTrait>::PrefixFields;
}

impl RootModule for Mislabelled {
    declare_root_module_statics! {Mislabelled}
    const BASE_NAME: &'static str = "provtarget_plugin";
    const NAME: &'static str = "provtarget plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.1.0");
}

extern "C" fn info() -> l::FfiPluginInfo {
    l::FfiPluginInfo {
        name: "Mislabelled Layout".into(),
        version: "0.1.0".into(),
        plugin_type: 3,
        vendor: "provtarget tests".into(),
        description: "declares 1.1.0 with the 1.0 layout".into(),
        interface_version: "1.1.0".into(),
        rustc_version: RString::new(),
        target: RString::new(),
        abi_stable_version: RString::new(),
        sdk_version: RString::new(),
    }
}

extern "C" fn new_resolver() -> RResult<l::FfiResolverBox, RString> {
    RErr("the mislabelled-layout test plugin constructs nothing".into())
}

#[export_root_module]
fn root() -> Mislabelled {
    Mislabelled(l::PluginModule { info, new_resolver }.leak_into_prefix())
}
