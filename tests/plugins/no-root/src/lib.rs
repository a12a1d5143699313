//! A perfectly good shared library that is not a provtarget plugin.

/// Some unrelated C function.
#[no_mangle]
pub extern "C" fn unrelated_function(x: u32) -> u32 {
    x.wrapping_mul(3)
}
