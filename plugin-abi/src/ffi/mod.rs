//! The binary contract: abi_stable types, one frozen module per released layout.
//!
//! Nothing here is meant for plugin authors (they use [`crate::Resolver`] and
//! [`crate::export_plugin!`]) or for hosts (they use `provtarget_abi::host`, behind the `host` feature). It is public
//! only so the export macro can name it.
// The layouts are declared through abi_stable's derive macros, whose generated code
// contains unsafe impls and blocks; no hand-written unsafe code lives here.
#![allow(unsafe_code)]

pub mod v1_0;
pub mod v1_1;
pub mod v1_2;

/// The layout plugins built against this crate export.
pub use v1_2 as current;
