//! The RFC 2782 order of SRV answers, as Go's `net.LookupSRV` (and so Choria) gives it:
//! the SDK's [`provtarget_abi::targets::rfc2782_order`], which the host's default
//! resolver uses too, drawing from the thread's random generator.

use provtarget_abi::targets;

/// One usable SRV record: where to connect and how to rank it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvTarget {
    /// Lower is tried first.
    pub(crate) priority: u16,
    /// Relative share within one priority.
    pub(crate) weight: u16,
    /// The target host, without its trailing dot.
    pub(crate) host: String,
    /// The target port, never 0.
    pub(crate) port: u16,
}

/// `records` in RFC 2782 order: priority ascending, then a weighted random order within
/// each priority. `below(n)` is a uniform random number in `0..n` (`n > 0`).
pub(crate) fn rfc2782_order(
    mut records: Vec<SrvTarget>,
    below: &mut dyn FnMut(u32) -> u32,
) -> Vec<SrvTarget> {
    targets::rfc2782_order(&mut records, |r| (r.priority, r.weight), below);
    records
}

/// A uniform random number in `0..n` from the thread's generator.
pub(crate) fn random_below(n: u32) -> u32 {
    rand::random_range(0..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, host: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            host: host.into(),
            port: 4222,
        }
    }

    // The algorithm's own tests (priorities, weights, zero weights) are in
    // provtarget_abi::targets; these check what this plugin adds to it.

    #[test]
    fn the_thread_generator_follows_the_weights_within_a_priority() {
        let records = vec![
            srv(2, 0, "backup"),
            srv(1, 90, "heavy"),
            srv(1, 10, "light"),
        ];
        let heavy_first = (0..400)
            .filter(|_| {
                let order = rfc2782_order(records.clone(), &mut random_below);
                assert_eq!(order[2].host, "backup", "priority 2 comes last");
                order[0].host == "heavy"
            })
            .count();
        // 360 expected, standard deviation 6: 330 is 5 sigma away.
        assert!(heavy_first > 330 && heavy_first < 400, "{heavy_first}");
    }
}
