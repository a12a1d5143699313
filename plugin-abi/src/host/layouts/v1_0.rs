//! Interface 1.0, frozen: `info` and `new_resolver`; no configuration keys.
#![forbid(unsafe_code)]

use super::shared_parts;

// 1.0 has no `config_keys`: the host reports none.
shared_parts!(v1_0, config_keys(_root) { Vec::new() });
