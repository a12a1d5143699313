//! The RFC 2782 order of SRV answers, as Go's `net.LookupSRV` (and so Choria) gives it.

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

/// Priority ascending; within one priority a weighted random order, each next record
/// drawn with a probability proportional to its weight, zero-weight records after the
/// weighted ones (Go's `byPriorityWeight.sort`). So a fleet spreads over the brokers as
/// the weights say instead of every server trying the heaviest first. `below(n)` is a
/// uniform random number in `0..n` (`n > 0`).
pub(crate) fn rfc2782_order(
    mut records: Vec<SrvTarget>,
    below: &mut dyn FnMut(u32) -> u32,
) -> Vec<SrvTarget> {
    // Stable: within a priority, the server's order is the starting point.
    records.sort_by_key(|r| r.priority);
    let mut start = 0;
    while start < records.len() {
        let priority = records[start].priority;
        let end = start
            + records[start..]
                .iter()
                .take_while(|r| r.priority == priority)
                .count();
        shuffle_by_weight(&mut records[start..end], below);
        start = end;
    }
    records
}

/// Go's `shuffleByWeight`: repeatedly draws the next record by weight; the records left
/// once the weights are used up (all of weight 0) keep their order.
fn shuffle_by_weight(group: &mut [SrvTarget], below: &mut dyn FnMut(u32) -> u32) {
    let weight = |r: &SrvTarget| u32::from(r.weight);
    let mut sum: u32 = group.iter().map(weight).sum();
    let mut next = 0;
    while sum > 0 && group.len() - next > 1 {
        let n = below(sum);
        let mut running = 0;
        for i in next..group.len() {
            running += weight(&group[i]);
            if running > n {
                group.swap(next, i);
                break;
            }
        }
        sum -= weight(&group[next]);
        next += 1;
    }
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

    fn hosts(order: &[SrvTarget]) -> Vec<&str> {
        order.iter().map(|r| r.host.as_str()).collect()
    }

    /// A seeded generator (a 64-bit LCG), so the statistics below are reproducible.
    fn seeded(seed: u64) -> impl FnMut(u32) -> u32 {
        let mut state = seed;
        move |n| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % u64::from(n)) as u32
        }
    }

    #[test]
    fn priorities_ascend_and_weights_decide_how_often_a_record_comes_first() {
        let records = vec![
            srv(20, 0, "backup"),
            srv(10, 25, "light"),
            srv(10, 75, "heavy"),
            srv(0, 0, "first"),
            srv(10, 0, "zero"),
        ];
        let mut below = seeded(42);
        let draws = 400;
        let mut heavy_first = 0;
        for _ in 0..draws {
            let order = rfc2782_order(records.clone(), &mut below);
            let names = hosts(&order);
            assert_eq!(names.len(), 5);
            assert_eq!(names[0], "first");
            assert_eq!(names[4], "backup");
            // Zero weight comes after the weighted records of its priority.
            assert_eq!(names[3], "zero");
            match names[1] {
                "heavy" => heavy_first += 1,
                "light" => assert_eq!(names[2], "heavy"),
                other => panic!("unexpected {other} second"),
            }
        }
        // 75 : 25 expected: 300 of 400, standard deviation ~8.7; allow ~4 sigma.
        assert!(
            (265..=335).contains(&heavy_first),
            "{heavy_first} of {draws}"
        );
    }

    #[test]
    fn the_thread_generator_also_follows_the_weights() {
        let records = vec![srv(1, 90, "heavy"), srv(1, 10, "light")];
        let heavy_first = (0..400)
            .filter(|_| rfc2782_order(records.clone(), &mut random_below)[0].host == "heavy")
            .count();
        // 360 expected, standard deviation 6: 330 is 5 sigma away.
        assert!(heavy_first > 330 && heavy_first < 400, "{heavy_first}");
    }

    #[test]
    fn all_zero_weights_keep_the_server_order_within_a_priority() {
        let records = vec![srv(5, 0, "a"), srv(5, 0, "b"), srv(1, 0, "c")];
        let order = rfc2782_order(records, &mut |_| unreachable!("no weights to draw"));
        assert_eq!(hosts(&order), ["c", "a", "b"]);
    }

    #[test]
    fn a_single_weighted_record_is_never_drawn() {
        let records = vec![srv(1, 7, "only"), srv(2, 3, "next")];
        let order = rfc2782_order(records, &mut |_| unreachable!("one record per priority"));
        assert_eq!(hosts(&order), ["only", "next"]);
    }
}
