//! The binary contract: abi_stable types, one frozen module per released layout.
//!
//! Nothing here is meant for plugin authors (they use [`crate::Resolver`] and
//! [`crate::export_plugin!`]) or for hosts (they use `provtarget_abi::host`, behind the `host` feature). It is public
//! only so the export macro can name it.
//!
//! Evolution rules (for every version):
//! - once released, a version's module is frozen: a new version is a new `v1_N.rs`
//!   (a copy of the newest plus the addition), `current` points at it, and
//!   `crate::host` learns to read it; a frozen module's code never changes;
//! - keep type names identical across versions (the layout checker compares names);
//! - add, never remove or reorder; new root-module fields go last;
//! - only prefix types (the root module, `#[sabi_trait]` traits) can grow. Plain
//!   `#[repr(C)]` structs such as `FfiPluginInfo` and `FfiConfigKey` are returned by
//!   value and cannot gain a field without breaking their layout: new information
//!   needs a new root-module function (as `config_keys` was added in 1.1) or a new
//!   trait method after the `last_prefix_field` one (as `answer` was in 1.2);
//! - bump the interface version's minor for additions, its major for anything else.
// The layouts are declared through abi_stable's derive macros, whose generated code
// contains unsafe impls and blocks; no hand-written unsafe code lives here.
#![allow(unsafe_code)]

pub mod v1_0;
pub mod v1_1;
pub mod v1_2;

/// The layout plugins built against this crate export.
pub use v1_2 as current;
