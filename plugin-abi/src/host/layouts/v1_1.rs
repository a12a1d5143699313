//! Interface 1.1: the 1.0 calls plus `config_keys`.
#![forbid(unsafe_code)]

use super::shared_parts;

shared_parts!(v1_1, config_keys(root) {
    (root.config_keys())()
        .into_iter()
        .map(|k| ConfigKey::new(&k.key, &k.default, &k.description))
        .collect()
});
