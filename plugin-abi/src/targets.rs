//! Small helpers for producing provisioning targets, shared by plugins and the host so
//! the same rule is written once: the RFC 2782 order of SRV answers
//! ([`rfc2782_order`]) and the syntax of a URL scheme ([`is_url_scheme`]).
//!
//! Dependency-free: the random source of the SRV order is a parameter.
#![forbid(unsafe_code)]

/// Puts SRV answers in RFC 2782 order, as Go's `net.LookupSRV` (and so Choria) gives
/// it: priority ascending; within one priority a weighted random order, each next
/// record drawn with a probability proportional to its weight, zero-weight records
/// after the weighted ones (Go's `byPriorityWeight.sort`). So a fleet spreads over the
/// brokers as the weights say instead of every server trying the heaviest first.
///
/// `rank(record)` gives a record's `(priority, weight)`; `below(n)` is a uniform random
/// number in `0..n` (called only with `n > 0`). The sort is stable: within a priority
/// the server's order is the starting point, and records left once the weights are used
/// up (all of weight 0) keep it.
///
/// ```
/// use provtarget_abi::targets::rfc2782_order;
///
/// // (priority, weight, target)
/// let mut answers = vec![(20, 0, "backup:4222"), (10, 0, "b:4222"), (10, 60, "a:4222")];
/// // A real caller passes a random source, e.g. `|n| rand::random_range(0..n)`.
/// rfc2782_order(&mut answers, |r| (r.0, r.1), &mut |_n| 0);
/// let order: Vec<&str> = answers.iter().map(|r| r.2).collect();
/// assert_eq!(order, ["a:4222", "b:4222", "backup:4222"]);
/// ```
pub fn rfc2782_order<T>(
    records: &mut [T],
    rank: impl Fn(&T) -> (u16, u16),
    below: &mut dyn FnMut(u32) -> u32,
) {
    records.sort_by_key(|r| rank(r).0);
    let mut start = 0;
    while start < records.len() {
        let priority = rank(&records[start]).0;
        let end = start
            + records[start..]
                .iter()
                .take_while(|r| rank(r).0 == priority)
                .count();
        shuffle_by_weight(&mut records[start..end], &|r| u32::from(rank(r).1), below);
        start = end;
    }
}

/// Go's `shuffleByWeight`: repeatedly draws the next record by weight; the records left
/// once the weights are used up (all of weight 0) keep their order.
fn shuffle_by_weight<T>(
    group: &mut [T],
    weight: &dyn Fn(&T) -> u32,
    below: &mut dyn FnMut(u32) -> u32,
) {
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

/// Whether `scheme` is a URL scheme (RFC 3986): a letter, then letters, digits, `+`,
/// `-` or `.`. The part before `://` of a `scheme://host:port` target must be one.
///
/// ```
/// use provtarget_abi::targets::is_url_scheme;
///
/// assert!(is_url_scheme("nats"));
/// assert!(is_url_scheme("tls+ws"));
/// assert!(!is_url_scheme("4nats"));
/// assert!(!is_url_scheme("na ts"));
/// assert!(!is_url_scheme(""));
/// ```
pub fn is_url_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (priority, weight, target)
    type Srv = (u16, u16, &'static str);

    fn order(mut records: Vec<Srv>, below: &mut dyn FnMut(u32) -> u32) -> Vec<&'static str> {
        rfc2782_order(&mut records, |r| (r.0, r.1), below);
        records.into_iter().map(|r| r.2).collect()
    }

    /// A deterministic `below` (a 64-bit LCG), so the statistics below are exact.
    fn lcg(seed: u64) -> impl FnMut(u32) -> u32 {
        let mut state = seed;
        move |n| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % u64::from(n)) as u32
        }
    }

    #[test]
    fn priorities_come_in_order_and_weights_decide_how_often_a_record_is_first() {
        let records = vec![
            (20, 0, "low"),
            (10, 10, "light"),
            (10, 90, "heavy"),
            (0, 0, "first"),
            (10, 0, "zero"),
        ];
        let mut below = lcg(7);
        let (mut heavy_first, mut light_first) = (0, 0);
        for _ in 0..10_000 {
            let order = order(records.clone(), &mut below);
            assert_eq!(order.len(), 5);
            assert_eq!(order[0], "first");
            assert_eq!(order[4], "low");
            // Zero weight comes after the weighted records of its priority.
            assert_eq!(order[3], "zero");
            match order[1] {
                "heavy" => heavy_first += 1,
                "light" => {
                    light_first += 1;
                    assert_eq!(order[2], "heavy");
                }
                other => panic!("unexpected {other}"),
            }
        }
        // 90 : 10, within a few percent.
        assert!((8_700..=9_300).contains(&heavy_first), "{heavy_first}");
        assert_eq!(heavy_first + light_first, 10_000);
    }

    #[test]
    fn all_zero_weights_keep_the_server_order_within_a_priority() {
        let records = vec![(5, 0, "a"), (5, 0, "b"), (1, 0, "c")];
        let order = order(records, &mut |_| unreachable!("no weights to draw"));
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn a_single_weighted_record_is_never_drawn() {
        let records = vec![(1, 7, "only"), (2, 3, "next")];
        let order = order(records, &mut |_| unreachable!("one record per priority"));
        assert_eq!(order, ["only", "next"]);
    }
}
