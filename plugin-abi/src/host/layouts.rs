//! One adapter per released layout, behind one private trait ([`Module`]), chosen once
//! from the interface version a library declares ([`for_declared`]).
//!
//! Adding interface 1.*y*: add the new layout as `ffi/v1_<y>.rs`, write
//! `layouts/v1_<y>.rs` (one `shared_parts!` call saying how it reads its configuration
//! keys and, if it answers through a new call, how it fills [`Answer`]), and add its
//! [`Supported`] entry to [`SUPPORTED`], newest first. Older adapters stay as they are:
//! the fields they cannot give keep [`Answer`]'s defaults. (ARCHITECTURE.md §4 has the
//! whole procedure.)
#![forbid(unsafe_code)]

use abi_stable::{
    library::{LibHeader, LibraryError},
    std_types::{RString, RVec, Tuple2},
};

use super::{Answer, HostServices, OpenError, OpenErrorKind, PluginInfo};
use crate::ConfigKey;

mod v1_0;
mod v1_1;
mod v1_2;

/// Configuration or settings pairs as they cross the boundary (the same abi_stable
/// types in every 1.x layout).
pub(super) type Pairs = RVec<Tuple2<RString, RString>>;

pub(super) use super::answer::given;

/// A library's root module, read through the layout of the version it declared.
pub(super) trait Module: Send + Sync {
    /// The interface version of this layout, e.g. `1.1.0`.
    fn version(&self) -> &'static str;
    fn info(&self) -> PluginInfo;
    fn config_keys(&self) -> Vec<ConfigKey>;
    fn new_resolver(&self) -> Result<Box<dyn Resolver>, String>;
}

/// A resolver's answer as an adapter hands it over: the targets, left in the
/// plugin's memory, and the rest of the answer as far as its layout gives it.
pub(super) type FullAnswer = (RVec<RString>, Answer);

/// A resolver object made by a plugin, read through its layout.
pub(super) trait Resolver: Send + Sync {
    fn name(&self) -> String;
    fn configure(&mut self, host: &dyn HostServices, config: Pairs) -> Result<Pairs, String>;
    fn targets(&self, host: &dyn HostServices) -> Result<FullAnswer, String>;
}

/// A released layout this host reads.
pub(super) struct Supported {
    /// Its interface version, `major.minor.0`.
    pub(super) version: &'static str,
    /// Checks the library's root module against this layout.
    pub(super) open: fn(&'static LibHeader) -> Result<Box<dyn Module>, LibraryError>,
}

/// Every layout this host reads, newest first.
pub(super) const SUPPORTED: &[Supported] = &[v1_2::SUPPORTED, v1_1::SUPPORTED, v1_0::SUPPORTED];

/// `(major, minor)` of a `major.minor[.patch]` version, if it is one.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The layout a library declaring `declared` is read with: the newest one of the same
/// major whose minor is not above the declared one. A newer 1.*x* than this host knows
/// is read through the newest layout it knows (abi_stable accepts prefix types with
/// more fields than the host's); another major is refused.
pub(super) fn for_declared(declared: &str) -> Result<&'static Supported, OpenError> {
    let newest = SUPPORTED[0].version;
    let (host_major, _) = major_minor(newest).unwrap_or((0, 0));
    let refuse = |message: String| OpenError {
        kind: OpenErrorKind::InterfaceMismatch,
        message,
        detail: String::new(),
    };
    let Some((major, minor)) = major_minor(declared) else {
        return Err(refuse(format!(
            "declares provtarget plugin interface `{}`, which is not a version number; \
             rebuild it against provtarget-abi {newest}",
            super::one_line(declared)
        )));
    };
    if major != host_major {
        let supported: Vec<&str> = super::supported_interfaces().collect();
        return Err(refuse(format!(
            "built against provtarget plugin interface {}, but this host reads \
             {host_major}.x ({}); rebuild it against provtarget-abi {host_major}.x",
            super::one_line(declared),
            supported.join(", ")
        )));
    }
    SUPPORTED
        .iter()
        .find(|l| major_minor(l.version).is_some_and(|(_, m)| m <= minor))
        .ok_or_else(|| {
            refuse(format!(
                "declares provtarget plugin interface {declared}, older than any this \
                 host reads; rebuild it against provtarget-abi {newest}"
            ))
        })
}

/// An adapter, with the parts that are the same in every 1.x layout so far: its
/// [`Supported`] entry, opening the root module, the [`Module`] calls, reading
/// `FfiPluginInfo`, offering the host's services as `FfiHost`, and calling
/// `FfiResolver`. A layout says only what differs: how it reads its configuration keys,
/// as a block over its root module (`l::PluginModule_Ref`), e.g.
/// `shared_parts!(v1_0, config_keys(_root) { Vec::new() });`. A layout whose resolver
/// answers through other calls says how, as a block over its `FfiResolverBox` and its
/// `FfiHost` returning `RResult<(RVec<RString>, Answer), RString>`, setting the
/// [`Answer`] fields it can give on `Answer::default()` (so a field added later needs
/// no edit here): `shared_parts!(v1_2, config_keys(root) {...}, answer(resolver, host)
/// {...});` (by default the answer is `targets` and `Answer::default()`). A layout
/// that diverges further writes its own parts instead.
macro_rules! shared_parts {
    ($layout:ident, config_keys($root:ident) $config_keys:block) => {
        $crate::host::layouts::shared_parts!($layout, config_keys($root) $config_keys,
            answer(resolver, host) {
                resolver
                    .targets(host)
                    .map(|list| (list, $crate::host::Answer::default()))
            });
    };
    ($layout:ident, config_keys($root:ident) $config_keys:block,
        answer($resolver:ident, $host:ident) $answer:block) => {
        use abi_stable::{
            library::{LibHeader, LibraryError},
            sabi_trait::TD_Opaque,
            std_types::RStr,
        };

        #[allow(unused_imports)]
        use super::{given, Module, Supported};
        #[allow(unused_imports)]
        use crate::{
            ffi::$layout as l,
            host::{layouts::Pairs, Answer, HostServices, PluginInfo},
            ConfigKey, LogLevel, PluginType,
        };

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
            fn config_keys(&self) -> Vec<ConfigKey> {
                let $root = &self.0;
                $config_keys
            }
            fn new_resolver(&self) -> Result<Box<dyn super::Resolver>, String> {
                let resolver = (self.0.new_resolver())().into_result()?;
                Ok(Box::new(Resolver(resolver)))
            }
        }

        fn info(i: l::FfiPluginInfo) -> PluginInfo {
            PluginInfo {
                name: i.name.into(),
                version: i.version.into(),
                plugin_type: PluginType::from_id(i.plugin_type),
                plugin_type_id: i.plugin_type,
                vendor: i.vendor.into(),
                description: i.description.into(),
                interface_version: i.interface_version.into(),
                rustc_version: i.rustc_version.into(),
                target: i.target.into(),
                abi_stable_version: i.abi_stable_version.into(),
                sdk_version: i.sdk_version.into(),
            }
        }

        /// The host's services as this layout's `FfiHost`.
        struct Shim<'a>(&'a dyn HostServices);

        impl l::FfiHost for Shim<'_> {
            fn is_cancelled(&self) -> bool {
                self.0.is_cancelled()
            }
            fn sleep_ms(&self, millis: u64) -> bool {
                self.0.sleep(std::time::Duration::from_millis(millis))
            }
            fn log(&self, level: u8, message: RStr<'_>) {
                self.0.log(LogLevel::from_u8(level), message.as_str())
            }
        }

        struct Resolver(l::FfiResolverBox);

        impl super::Resolver for Resolver {
            fn name(&self) -> String {
                self.0.name().into()
            }
            fn configure(
                &mut self,
                host: &dyn HostServices,
                config: Pairs,
            ) -> Result<Pairs, String> {
                let shim = Shim(host);
                self.0
                    .configure(l::FfiHost_TO::from_ptr(&shim, TD_Opaque), config)
                    .into_result()
                    .map_err(Into::into)
            }
            fn targets(
                &self,
                host: &dyn HostServices,
            ) -> Result<super::FullAnswer, String> {
                let shim = Shim(host);
                let $resolver = &self.0;
                let $host = l::FfiHost_TO::from_ptr(&shim, TD_Opaque);
                let answer: abi_stable::std_types::RResult<
                    super::FullAnswer,
                    abi_stable::std_types::RString,
                > = $answer;
                answer.into_result().map_err(Into::into)
            }
        }
    };
}
pub(super) use shared_parts;

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(declared: &str) -> Result<&'static str, OpenErrorKind> {
        for_declared(declared)
            .map(|l| l.version)
            .map_err(|e| e.kind)
    }

    #[test]
    fn layouts_are_listed_newest_first_and_the_newest_is_what_plugins_export() {
        assert_eq!(SUPPORTED[0].version, crate::INTERFACE_VERSION);
        let minors: Vec<u64> = SUPPORTED
            .iter()
            .map(|l| major_minor(l.version).unwrap().1)
            .collect();
        assert!(minors.windows(2).all(|w| w[0] > w[1]), "{minors:?}");
    }

    #[test]
    fn each_declared_version_picks_its_own_layout_never_a_trial() {
        // Every supported version is read through exactly its own layout.
        for layout in SUPPORTED {
            assert_eq!(chosen(layout.version), Ok(layout.version));
        }
        let (major, minor) = major_minor(crate::INTERFACE_VERSION).unwrap();
        // A patch level changes nothing; a newer minor is read through the newest.
        assert_eq!(
            chosen(&format!("{major}.{minor}.7")),
            Ok(crate::INTERFACE_VERSION)
        );
        assert_eq!(
            chosen(&format!("{major}.{}.0", minor + 5)),
            Ok(crate::INTERFACE_VERSION)
        );
        // Another major, or something that is not a version, is refused.
        for bad in [
            format!("{}.0.0", major + 1),
            format!("{}.{minor}.0", major.saturating_sub(1)),
            "1.x".to_string(),
            String::new(),
        ] {
            assert_eq!(
                chosen(&bad),
                Err(OpenErrorKind::InterfaceMismatch),
                "{bad:?}"
            );
        }
    }
}
