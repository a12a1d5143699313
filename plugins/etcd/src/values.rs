//! What etcd holds, turned into broker addresses: parsing and validation.

/// Most brokers taken from one key or prefix.
pub(crate) const MAX_TARGETS: usize = 1000;
/// Longest value read from one key.
pub(crate) const MAX_VALUE: usize = 64 * 1024;

/// Brokers in one key's value: a JSON list of strings (`["a:4222", "b:4222"]`) or a
/// comma-separated list (`a:4222, b:4222`). Blank is no brokers. `source` names where
/// the value came from, for errors.
pub(crate) fn parse_value(value: &[u8], source: &str) -> Result<Vec<String>, String> {
    if value.len() > MAX_VALUE {
        return Err(format!(
            "{source} holds {} bytes, more than the {MAX_VALUE} a broker list may have",
            value.len()
        ));
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| format!("{source} does not hold UTF-8 text; expected a broker list"))?
        .trim();
    let items: Vec<String> = if text.starts_with('[') {
        let list: Vec<String> = serde_json::from_str(text).map_err(|e| {
            format!("{source} holds invalid JSON ({e}); expected a list of \"host:port\" strings")
        })?;
        list.into_iter().map(|s| s.trim().to_string()).collect()
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    if items.len() > MAX_TARGETS {
        return Err(format!(
            "{source} lists {} brokers, more than {MAX_TARGETS}",
            items.len()
        ));
    }
    items.into_iter().map(|t| check(t, source)).collect()
}

/// One broker from one key under a prefix; blank is none.
pub(crate) fn parse_single(value: &[u8], source: &str) -> Result<Option<String>, String> {
    if value.len() > MAX_VALUE {
        return Err(format!(
            "{source} holds {} bytes, more than {MAX_VALUE}",
            value.len()
        ));
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| format!("{source} does not hold UTF-8 text; expected host:port"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    check(text.to_string(), source).map(Some)
}

/// `host:port` or `scheme://host:port`, or an error naming `source`.
fn check(target: String, source: &str) -> Result<String, String> {
    if is_target(&target) {
        Ok(target)
    } else {
        let shown: String = target.chars().take(80).collect();
        Err(format!(
            "{source} holds {shown:?}, which is not a broker address; expected host:port or scheme://host:port"
        ))
    }
}

/// Whether `s` is `host:port` or `scheme://host:port` (port required, no path).
pub(crate) fn is_target(s: &str) -> bool {
    let rest = match s.split_once("://") {
        Some((scheme, rest)) => {
            let ok = scheme.len() <= 32
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if !ok {
                return false;
            }
            rest
        }
        None => s,
    };
    if rest.contains(['/', '?', '#', '@']) {
        return false;
    }
    matches!(crate::http::split_host_port(rest), Some((_, Some(_))))
}

/// The end of etcd's range for every key starting with `prefix`: the prefix with its
/// last byte below 0xff incremented and what follows dropped; `[0]` (every key) when
/// there is no such byte.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_comma_lists() {
        assert_eq!(
            parse_value(br#" ["nats://a.example:4222", "b.example:4223"] "#, "k").unwrap(),
            ["nats://a.example:4222", "b.example:4223"]
        );
        assert_eq!(
            parse_value(b"a.example:4222, tls://10.0.0.2:4223,,", "k").unwrap(),
            ["a.example:4222", "tls://10.0.0.2:4223"]
        );
        assert_eq!(
            parse_value(b"[\"[::1]:4222\"]", "k").unwrap(),
            ["[::1]:4222"]
        );
        assert!(parse_value(b"  ", "k").unwrap().is_empty());
        assert!(parse_value(b"[]", "k").unwrap().is_empty());
    }

    #[test]
    fn garbage_is_refused_naming_the_source() {
        let e = parse_value(b"a.example:4222, no-port", "etcd key \"brokers\"").unwrap_err();
        assert!(
            e.contains("etcd key \"brokers\"") && e.contains("\"no-port\""),
            "{e}"
        );
        assert!(parse_value(b"[1, 2]", "k")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_value(b"[\"a:1\"", "k").is_err());
        assert!(parse_value(&[0xff, 0xfe], "k")
            .unwrap_err()
            .contains("UTF-8"));
        assert!(parse_value(&vec![b'a'; MAX_VALUE + 1], "k").is_err());
        let many = vec!["a:1"; MAX_TARGETS + 1].join(",");
        assert!(parse_value(many.as_bytes(), "k")
            .unwrap_err()
            .contains("more than"));
        for bad in [
            "a:0",
            "a:65536",
            "a:+1",
            "a b:1",
            "http://a:1/path",
            "u@a:1",
            "1nats://a:1",
            "a..b:1",
            ":4222",
            "a:4222\n",
        ] {
            assert!(!is_target(bad), "{bad}");
        }
        assert_eq!(parse_single(b" b:1 ", "k").unwrap().as_deref(), Some("b:1"));
        assert_eq!(parse_single(b"", "k").unwrap(), None);
        assert!(parse_single(b"b", "k").is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"brokers/"), b"brokers0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
