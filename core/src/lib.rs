//! provtarget host library.
#![deny(missing_docs)]

pub mod buildinfo;
pub mod config;
pub mod default_resolver;
pub mod host;
pub mod resolver;
pub mod targets;
pub mod text;
