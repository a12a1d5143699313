//! The crate's only unsafe code, each block argued. Every other module forbids
//! `unsafe`.
#![allow(unsafe_code)]

use abi_stable::library::{LibHeader, RootModuleResult};

use crate::ffi::current::PluginModule_Ref;

/// abi_stable's header for a root-module constructor returning this crate's current
/// `PluginModule_Ref`.
pub(crate) const fn header_for_root_module(
    constructor: extern "C" fn() -> RootModuleResult,
) -> LibHeader {
    // SAFETY: `from_constructor` requires that `constructor` returns the root module of
    // the type named here. Its only caller, `export::lib_header`, passes
    // `root_module_loader::<R>`, which returns `PluginModule_Ref` (the current layout)
    // through abi_stable's own `__call_root_module_loader`.
    unsafe {
        LibHeader::from_constructor::<PluginModule_Ref>(
            constructor,
            abi_stable::library::CheckTypeLayout::Yes,
        )
    }
}

#[cfg(feature = "host")]
mod host_side {
    use std::path::Path;

    use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary};

    use crate::host::{dl_message, first_line, OpenError, OpenErrorKind, PluginLibrary};

    impl PluginLibrary {
        /// Loads the library at `path` and checks it against the layout of the interface
        /// version it declares (1.0 → the frozen 1.0 layout; 1.1 → 1.1; a newer 1.x than
        /// this host knows → the newest layout it knows).
        ///
        /// # Safety
        ///
        /// Loading a library runs its initialisers with the host's privileges. The caller
        /// must have established that the file is trusted and is a well-formed library for
        /// this platform (a truncated ELF file can crash the process inside `dlopen`).
        pub unsafe fn open(path: &Path) -> Result<PluginLibrary, OpenError> {
            let raw = RawLibrary::load_at(path).map_err(|e| OpenError {
                kind: OpenErrorKind::NotLoadable,
                message: format!("not a loadable library: {}", dl_message(&e)),
                detail: e.to_string(),
            })?;
            // SAFETY: the header borrows from the library, which is leaked just below and
            // so lives for the rest of the process.
            let header = unsafe { lib_header_from_raw_library(&raw) };
            std::mem::forget(raw);
            let header = header.map_err(|e| match e {
                LibraryError::GetSymbolError { .. } => OpenError {
                    kind: OpenErrorKind::NotAPlugin,
                    message: "not a provtarget plugin: it exports no provtarget root module \
                              (build it with provtarget_abi::export_plugin!)"
                        .into(),
                    detail: e.to_string(),
                },
                other => OpenError {
                    kind: OpenErrorKind::AbiStableMismatch,
                    message: format!(
                        "built with an incompatible abi_stable ({}); rebuild it against \
                         provtarget-abi {}",
                        first_line(&other.to_string()),
                        crate::INTERFACE_VERSION
                    ),
                    detail: other.to_string(),
                },
            })?;
            Self::from_header(header)
        }
    }
}
