//! What an expanded template must look like before it is handed to the host:
//! `host:port` or `scheme://host:port`, the host a DNS name, the port 1 to 65535.
//!
//! The host parses targets again (Choria's rules); checking here means a bad
//! template or an odd identity fails with a message that names them, instead of a
//! parse error far from its cause.

use provtarget_abi::targets::is_url_scheme;

/// The longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME: usize = 253;
/// The longest DNS label.
const MAX_LABEL: usize = 63;

/// Checks `target`; the error says what is wrong with it, without repeating it.
pub(crate) fn validate(target: &str) -> Result<(), String> {
    let rest = match target.split_once("://") {
        Some((scheme, rest)) => {
            if !is_url_scheme(scheme) {
                return Err(format!(
                    "scheme {scheme:?} is not a URL scheme such as nats or tls"
                ));
            }
            rest
        }
        None => target,
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("missing port: expected host:port, e.g. provision.example.net:4222".into());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
    dns_name(host)
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (service labels
/// such as `_provision`), none empty, none starting or ending with `-`.
fn dns_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if host.len() > MAX_NAME {
        return Err(format!(
            "the host name is {} characters long; DNS allows {MAX_NAME}",
            host.len()
        ));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "host {host:?} is not a DNS name (label {label:?}: use 1 to 63 letters, digits, '-' or '_')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_host_port_and_scheme_host_port() {
        for ok in [
            "provision.lon1.example.net:4222",
            "tls://provision.example.net:4223",
            "nats+ws://a-b.c:1",
            "_provision.lon1.example.net:65535",
            "localhost:4222",
            "10.0.0.1:4222",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_the_host_could_not_use() {
        let cases = [
            ("provision.example.net", "missing port"),
            ("provision.example.net:", "port \"\" is not a number"),
            ("provision.example.net:0", "port \"0\""),
            ("provision.example.net:99999", "port \"99999\""),
            ("provision.example.net:42x", "port \"42x\""),
            (":4222", "the host name is empty"),
            ("provision..example.net:4222", "label \"\""),
            ("-bad.example.net:4222", "label \"-bad\""),
            ("a b.example.net:4222", "is not a DNS name"),
            ("evil.com/x#.example.net:4222", "is not a DNS name"),
            ("1nats://h:4222", "scheme \"1nats\""),
            ("[::1]:4222", "is not a DNS name"),
        ];
        for (bad, why) in cases {
            let err = validate(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("{}.net:4222", "a.".repeat(130));
        assert!(validate(&long).unwrap_err().contains("DNS allows 253"));
        let label = format!("{}.net:4222", "a".repeat(64));
        assert!(validate(&label).unwrap_err().contains("is not a DNS name"));
    }
}
