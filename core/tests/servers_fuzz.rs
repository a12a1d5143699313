//! Property tests of the target parser: whatever a resolver returns, parsing never
//! panics; every accepted entry prints as a URL that the `url` crate (a WHATWG URL
//! parser) reads back with the same host and port; every error is one line without
//! control or format characters and without the entry's credentials.
//!
//! 512 cases per property in the normal suite; `PROPTEST_CASES=100000 cargo test -p
//! provtarget --test servers_fuzz --release` for a longer run.

use proptest::prelude::*;
use provtarget::servers::{parse_servers, servers_from, Server};

/// The same host and port, read back from `server`'s `Display` by the `url` crate.
fn round_trips(server: &Server) -> Result<(), String> {
    let shown = server.to_string();
    let url = url::Url::parse(&shown).map_err(|e| format!("{shown}: url refuses it: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => {
            let ours: std::net::Ipv6Addr = server
                .host
                .parse()
                .map_err(|_| format!("{shown}: bracketed host is not IPv6"))?;
            if ours != a {
                return Err(format!("{shown}: url reads [{a}]"));
            }
            return check_port(server, &url);
        }
        None => return Err(format!("{shown}: url finds no host")),
    };
    // Special schemes (http, ws...) lower-case the host; nats and tls keep it.
    if !host.eq_ignore_ascii_case(&server.host) {
        return Err(format!("{shown}: url reads host {host:?}"));
    }
    if url.scheme() != server.scheme {
        return Err(format!("{shown}: url reads scheme {:?}", url.scheme()));
    }
    check_port(server, &url)
}

fn check_port(server: &Server, url: &url::Url) -> Result<(), String> {
    match url.port_or_known_default() {
        Some(p) if p == server.port => Ok(()),
        other => Err(format!("{server}: url reads port {other:?}")),
    }
}

/// The error a resolver's entry gives, checked: one line, nothing to escape, no secret.
fn check_error(err: &str, secret: Option<&str>) -> Result<(), String> {
    if err.chars().any(|c| c.is_control()) {
        return Err(format!("control character in {err:?}"));
    }
    if provtarget::text::printable(err) != err {
        return Err(format!("unescaped format character in {err:?}"));
    }
    if let Some(s) = secret {
        if err.contains(s) {
            return Err(format!("secret {s:?} in {err:?}"));
        }
    }
    Ok(())
}

fn check_entry(entry: &str, secret: Option<&str>) -> Result<(), String> {
    match parse_servers([entry]) {
        Ok(servers) => {
            assert_eq!(servers.len(), 1);
            round_trips(&servers[0]).map_err(|e| format!("{entry:?} -> {e}"))
        }
        Err(err) => {
            check_error(&err, secret)?;
            let wrapped = servers_from("R", Ok(vec![entry.to_string()].into())).unwrap_err();
            check_error(&wrapped, secret)
        }
    }
}

#[test]
fn accepted_servers_round_trip_through_the_url_crate() {
    let hosts = [
        "h",
        "broker1.example.net",
        "B.Example.NET.",
        "_provision.lon1.example.net",
        "a-b.c_d",
        "10.1.2.3",
        "255.255.255.255",
        "[::1]",
        "[2001:db8::7]",
        "[::ffff:1.2.3.4]",
        "[0:0:0:0:0:0:0:1]",
    ];
    let schemes = [
        "", "nats://", "tls://", "NATS://", "ws://", "wss://", "http://", "https://", "ftp://",
        "x+y.z://",
    ];
    let mut checked = 0;
    for host in hosts {
        for scheme in schemes {
            for port in [1u16, 80, 443, 4222, 65535] {
                let entry = format!("{scheme}{host}:{port}");
                check_entry(&entry, None).unwrap();
                assert!(parse_servers([&entry]).is_ok(), "{entry}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, hosts.len() * schemes.len() * 5);
}

/// Pieces resolvers' answers are made of, hostile ones included.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_-]{1,12}",
        2 => Just(".".to_string()),
        2 => Just(":".to_string()),
        1 => "[0-9]{1,6}",
        1 => prop::sample::select(vec![
            "@", "#", "/", "?", "\\", " ", "%", "%2f", "%41", "[", "]", "::", "://", "//",
            "nats://", "tls://", "http://", "file://", "0x", "\u{202e}", "\u{200b}",
            "\u{2066}", "\u{feff}", "\u{1b}[2J", "\n", "\t", "ü", "xn--", "\u{0}", "*",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn structured_entries_never_panic_and_round_trip(e in entry()) {
        check_entry(&e, None).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_strings_never_panic_and_round_trip(e in any::<String>()) {
        check_entry(&e, None).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn credentials_never_reach_an_error(
        scheme in prop::sample::select(vec!["", "nats://", "tls://", "//"]),
        user in "[a-z]{1,6}",
        rest in entry(),
    ) {
        let secret = "Pw7SECRETxq";
        let e = format!("{scheme}{user}:{secret}@{rest}");
        check_entry(&e, Some(secret)).map_err(TestCaseError::fail)?;
    }
}
