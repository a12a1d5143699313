//! End-to-end tests of provtarget live in `tests/tests/`; this crate has no code of
//! its own.
