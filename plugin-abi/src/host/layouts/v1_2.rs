//! Interface 1.2: the 1.1 calls, and the resolver answers through `answer` (targets
//! plus provenance).
#![forbid(unsafe_code)]

use super::shared_parts;

shared_parts!(v1_2, config_keys(root) {
    (root.config_keys())()
        .into_iter()
        .map(|k| ConfigKey::new(&k.key, &k.default, &k.description))
        .collect()
}, answer(resolver, host) {
    resolver.answer(host).map(|a| {
        // The fields 1.2 gives; those of later versions keep their defaults.
        #[allow(clippy::needless_update)]
        let answer = Answer {
            provenance: given(&a.1),
            ..Answer::default()
        };
        (a.0, answer)
    })
});
