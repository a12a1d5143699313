//! provtarget host library.
#![deny(missing_docs)]

pub mod resolver;
