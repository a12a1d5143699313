#![doc = include_str!("../README.md")]
//!
//! # The crate at a glance
//!
//! - [`Resolver`] and [`export_plugin!`]: what a plugin implements and exports.
//! - [`Config`], [`ConfigKey`], [`ConfigError`], [`Settings`]: configuration in and
//!   out.
//! - [`Context`]: cancellation, interruptible sleeps, logging through the host.
//! - [`backoff`]: Choria's retry tables and [`backoff::Policy::retry`];
//!   [`permanent`] marks an error no retry can change, so the loop stops at once.
//! - [`testkit`]: unit-test `configure` and `targets` without a host.
//! - [`targets`]: the rules a returned target must follow.
//!
//! # Compatibility promise
//!
//! The interface is versioned `major.minor` ([`INTERFACE_VERSION`]), independently of
//! plugin versions:
//! - a plugin built against interface 1.*x* loads in every 1.*y* host, older or newer:
//!   the host keeps a frozen copy of every released layout and reads an older plugin
//!   through it, supplying defaults for what that layout lacks (a 1.0 plugin reports no
//!   [`ConfigKey`]s);
//! - a plugin built against another major version is refused with a one-line reason
//!   naming both versions;
//! - the compiler need not match: the layouts are `#[repr(C)]` types checked by
//!   abi_stable when the library is loaded, so a plugin built with any rustc from this
//!   crate's `rust-version` on loads in a host built with another one (`buildinfo`
//!   shows both compilers).
//!
//! How the layouts evolve (the rules the maintainers follow, in the `ffi` module's
//! source):
//! - once released, a version's layout is frozen; the next version is a copy that the
//!   host also learns to read;
//! - type names stay identical across versions (the layout checker compares names);
//! - fields and functions are added, never removed or reordered; new root-module
//!   functions go last;
//! - only prefix types (the root module, the resolver's trait object) can grow; plain
//!   `#[repr(C)]` structs cannot gain a field, so new information comes through a new
//!   root-module function (as `config_keys` came in 1.1) or a new method at the end
//!   of the resolver's trait object (as `answer`, with the provenance, came in 1.2);
//! - additions bump the minor version, any other change the major.
//!
//! Libraries are never unloaded once loaded: upgrade a plugin by restarting the host.
//!
//! # Panics and errors
//!
//! Every call from the host into a plugin runs under `catch_unwind`. A panic becomes an
//! error such as `plugin Acme static brokers panicked in targets: boom at src/lib.rs:9`,
//! and the host carries on. Build plugins with `panic = "unwind"` (the default):
//! `panic = "abort"` makes containment impossible.
//!
//! # For hosts
//!
//! With the `host` cargo feature, `provtarget_abi::host` opens libraries and adapts
//! every supported layout to one native API, so no abi_stable type reaches the host's
//! own code. Plugins never enable it.
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]
// Unsafe code lives in `raw` alone; every other module forbids it.
#![deny(unsafe_code)]

// The abi_stable side (export glue, layouts, host adapter) is left out of the rendered
// documentation (`cfg(doc)`): rustdoc then never loads abi_stable, so the vendor pages
// (`Config`, `Context`, `Settings`, ...) do not list its dozens of blanket impls. The
// code is compiled and tested as usual.
pub mod backoff;
mod cancel;
#[cfg(not(doc))]
#[doc(hidden)]
pub mod export;
#[cfg(not(doc))]
#[doc(hidden)]
pub mod ffi;
#[cfg(all(feature = "host", not(doc)))]
pub mod host;
mod permanent;
mod plugin_type;
#[cfg(not(doc))]
mod raw;
mod sdk;
pub mod targets;
pub mod testkit;
mod text;

pub use cancel::{Cancellation, Cancelled};
pub use permanent::{is_permanent, permanent, Permanent};
pub use plugin_type::PluginType;
pub use sdk::{Config, ConfigError, ConfigKey, Context, Error, LogLevel, Resolver, Settings};

/// The interface version plugins built against this crate declare (`major.minor.0`).
#[cfg(not(doc))]
pub const INTERFACE_VERSION: &str = ffi::current::INTERFACE_VERSION;
/// The interface version plugins built against this crate declare (`major.minor.0`).
/// (For the rendered docs, which never compile the layouts, it is the crate's own
/// `major.minor`: the crate's version follows the interface it implements, which
/// `interface_version_follows_the_crate_version` checks.)
#[cfg(doc)]
pub const INTERFACE_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR"),
    ".0"
);

/// The abi_stable version this crate is built on, recorded in every plugin as a build
/// canary.
pub const ABI_STABLE_VERSION: &str = "0.11";

/// `rustc --version` of the compiler that built this crate: in a plugin, the plugin's
/// compiler; in a host, the host's. `buildinfo` shows both so mismatches are visible.
pub const BUILD_RUSTC: &str = env!("PROVTARGET_BUILD_RUSTC");

/// The target triple this crate was built for.
pub const BUILD_TARGET: &str = env!("PROVTARGET_BUILD_TARGET");

/// The name of the symbol every plugin exports (abi_stable's root-module loader).
/// Hosts can look for it in a file's dynamic symbol table before running any of its
/// code.
#[cfg(not(doc))]
pub const ROOT_SYMBOL: &str = abi_stable::library::ROOT_MODULE_LOADER_NAME;
/// The name of the symbol every plugin exports (abi_stable's root-module loader).
#[cfg(doc)]
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The symbol [`export_plugin!`] adds to a plugin built with `panic = "abort"`: such a
/// plugin cannot have its panics turned into errors (the first one ends the host's
/// process), so hosts look for this symbol in the file's dynamic symbol table and
/// refuse the library before running any of its code.
pub const PANIC_ABORT_SYMBOL: &str = "provtarget_built_with_panic_abort";

/// Exports a [`Resolver`] as this library's provtarget plugin. Call it exactly once,
/// at the crate root of a `cdylib` crate.
///
/// ```
/// # use provtarget_abi::{export_plugin, Context, Error, Resolver};
/// struct Fixed;
/// impl Resolver for Fixed {
///     const NAME: &'static str = "Fixed";
///     const VERSION: &'static str = "0.1.0";
///     fn new() -> Result<Self, Error> { Ok(Fixed) }
///     fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
///         Ok(vec!["prov.example.net:4222".into()])
///     }
/// }
/// export_plugin!(Fixed);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($resolver:ty) => {
        // The name is abi_stable 0.11's root-module symbol; a unit test in
        // provtarget-abi checks it against `ROOT_SYMBOL`.
        #[no_mangle]
        #[doc(hidden)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::export::LibHeaderAlias =
            $crate::export::lib_header::<$resolver>();

        // Build canary: a `panic = "abort"` build says so in its dynamic symbol table
        // (`PANIC_ABORT_SYMBOL`), and the host refuses it unopened. `cfg(panic)` is
        // evaluated in the plugin crate, where this macro expands.
        #[cfg(panic = "abort")]
        #[no_mangle]
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        pub static provtarget_built_with_panic_abort: u8 = 1;
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_constants_match_the_compiled_ones() {
        // The `cfg(doc)` copies are what the rendered documentation shows.
        let source = include_str!("lib.rs");
        let line = format!("pub const ROOT_SYMBOL: &str = \"{}\";", super::ROOT_SYMBOL);
        assert!(
            source.contains(&line),
            "lib.rs must hold `{line}` for rustdoc"
        );
    }

    #[test]
    fn interface_version_follows_the_crate_version() {
        // The `cfg(doc)` INTERFACE_VERSION is built from the crate's version; the
        // compiled one is the current layout's. They must agree: SDK 1.N implements
        // interface 1.N.
        let from_crate = concat!(
            env!("CARGO_PKG_VERSION_MAJOR"),
            ".",
            env!("CARGO_PKG_VERSION_MINOR"),
            ".0"
        );
        assert_eq!(super::INTERFACE_VERSION, from_crate);
    }

    #[test]
    fn export_macro_uses_abi_stables_root_symbol() {
        // `export_plugin!` spells the symbol out (a `static`'s name must be an
        // identifier); an abi_stable upgrade that renames it must fail here.
        let macro_source = include_str!("lib.rs");
        let ident = format!("pub static {}:", super::ROOT_SYMBOL);
        assert!(
            macro_source.contains(&ident),
            "export_plugin! must declare `{ident}`"
        );
        let canary = format!("pub static {}: u8", super::PANIC_ABORT_SYMBOL);
        assert!(
            macro_source.contains(&canary),
            "export_plugin! must declare `{canary}` for panic = \"abort\" builds"
        );
    }
}
