//! Parsing resolver output into servers: every example of DESIGN §4 and the corners
//! around them. Each test reads as one rule of the specification.

use provtarget::{
    resolver::RawTargets,
    servers::{parse_servers, servers_from, Server, NO_RESOLVER},
};

fn list(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|s| s.to_string()).collect()
}

fn parse(entries: &[&str]) -> Result<Vec<String>, String> {
    parse_servers(list(entries))
        .map(|servers| servers.iter().map(Server::to_string).collect())
        .map_err(|e| e.to_string())
}

fn parse_one(entry: &str) -> Result<Server, String> {
    parse_servers(list(&[entry]))
        .map(|mut servers| servers.remove(0))
        .map_err(|e| e.to_string())
}

fn server(scheme: &str, host: &str, port: u16) -> Server {
    Server {
        scheme: scheme.into(),
        host: host.into(),
        port,
    }
}

#[test]
fn host_port_gets_the_nats_scheme() {
    assert_eq!(parse_one("foo:4222"), Ok(server("nats", "foo", 4222)));
    assert_eq!(parse(&["foo:4222"]), Ok(list(&["nats://foo:4222"])));
    assert_eq!(
        parse(&["10.1.2.3:4222", "b.example.net:1"]),
        Ok(list(&["nats://10.1.2.3:4222", "nats://b.example.net:1"]))
    );
}

#[test]
fn a_url_keeps_its_scheme() {
    assert_eq!(parse_one("tls://h:4222"), Ok(server("tls", "h", 4222)));
    assert_eq!(parse(&["tls://h:4222"]), Ok(list(&["tls://h:4222"])));
    assert_eq!(parse(&["nats://h:4222"]), Ok(list(&["nats://h:4222"])));
}

#[test]
fn the_scheme_is_lower_cased() {
    assert_eq!(parse(&["TLS://h:4222"]), Ok(list(&["tls://h:4222"])));
    assert_eq!(parse(&["NaTs://H:4222"]), Ok(list(&["nats://H:4222"])));
}

#[test]
fn credentials_path_query_and_fragment_are_dropped() {
    assert_eq!(
        parse_one("nats://u:p@h:4222/p"),
        Ok(server("nats", "h", 4222))
    );
    assert_eq!(
        parse(&["tls://user:s3cret@broker:4223/a/b?c=d#e"]),
        Ok(list(&["tls://broker:4223"]))
    );
}

#[test]
fn surrounding_white_space_is_trimmed() {
    assert_eq!(
        parse(&["  foo:4222 ", "\ttls://h:1\n"]),
        Ok(list(&["nats://foo:4222", "tls://h:1"]))
    );
}

#[test]
fn a_missing_port_is_refused() {
    assert_eq!(
        parse(&["foo"]).unwrap_err(),
        "could not parse host foo: address foo: missing port in address"
    );
    // A URL without a port: the URL's host is named.
    assert_eq!(
        parse(&["nats://foo"]).unwrap_err(),
        "could not parse host foo: address foo: missing port in address"
    );
    assert_eq!(
        parse(&["[::1]"]).unwrap_err(),
        "could not parse host [::1]: address [::1]: missing port in address"
    );
}

#[test]
fn a_non_numeric_port_is_invalid_syntax() {
    assert_eq!(
        parse(&["x:x"]).unwrap_err(),
        r#"could not parse host port x:x: strconv.ParseUint: parsing "x": invalid syntax"#
    );
    assert_eq!(
        parse(&["h:"]).unwrap_err(),
        r#"could not parse host port h:: strconv.ParseUint: parsing "": invalid syntax"#
    );
    assert_eq!(
        parse(&["h:-1"]).unwrap_err(),
        r#"could not parse host port h:-1: strconv.ParseUint: parsing "-1": invalid syntax"#
    );
}

#[test]
fn a_port_beyond_u16_is_out_of_range() {
    assert_eq!(
        parse(&["h:99999"]).unwrap_err(),
        r#"could not parse host port h:99999: strconv.ParseUint: parsing "99999": value out of range"#
    );
    assert_eq!(
        parse(&["h:65536"]).unwrap_err(),
        r#"could not parse host port h:65536: strconv.ParseUint: parsing "65536": value out of range"#
    );
    assert_eq!(parse(&["h:65535"]), Ok(list(&["nats://h:65535"])));
    // Inside a URL the message names the URL's host:port.
    assert_eq!(
        parse(&["tls://h:99999"]).unwrap_err(),
        r#"could not parse host port h:99999: strconv.ParseUint: parsing "99999": value out of range"#
    );
}

#[test]
fn too_many_colons() {
    assert_eq!(
        parse(&["a:b:c"]).unwrap_err(),
        "could not parse host a:b:c: address a:b:c: too many colons in address"
    );
    // An unbracketed IPv6 address is the same mistake.
    assert_eq!(
        parse(&["::1:4222"]).unwrap_err(),
        "could not parse host ::1:4222: address ::1:4222: too many colons in address"
    );
}

#[test]
fn ipv6_hosts_are_unbracketed_inside_and_bracketed_when_printed() {
    assert_eq!(parse_one("[::1]:4222"), Ok(server("nats", "::1", 4222)));
    assert_eq!(parse(&["[::1]:4222"]), Ok(list(&["nats://[::1]:4222"])));
    assert_eq!(
        parse(&["tls://[2001:db8::7]:4223"]),
        Ok(list(&["tls://[2001:db8::7]:4223"]))
    );
    assert_eq!(
        parse(&["tls://[2001:db8::7]"]).unwrap_err(),
        "could not parse host [2001:db8::7]: address [2001:db8::7]: missing port in address"
    );
}

#[test]
fn an_empty_host_is_refused_unlike_choria() {
    assert_eq!(
        parse(&[":4222"]).unwrap_err(),
        "could not parse host :4222: address :4222: missing host in address"
    );
    assert_eq!(
        parse(&["[]:4222"]).unwrap_err(),
        "could not parse host []:4222: address []:4222: missing host in address"
    );
    assert_eq!(
        parse(&["nats://:4222"]).unwrap_err(),
        "could not parse host :4222: address :4222: missing host in address"
    );
    assert_eq!(
        parse(&[" :4222"]).unwrap_err(),
        "could not parse host :4222: address :4222: missing host in address"
    );
}

#[test]
fn port_zero_is_refused_unlike_choria() {
    assert_eq!(
        parse(&["h:0"]).unwrap_err(),
        "could not parse host port h:0: port 0 is not a usable broker port"
    );
    assert_eq!(
        parse(&["tls://h:0"]).unwrap_err(),
        "could not parse host port h:0: port 0 is not a usable broker port"
    );
}

#[test]
fn an_empty_entry_is_refused() {
    assert_eq!(
        parse(&[""]).unwrap_err(),
        "could not parse host : missing port in address"
    );
    assert_eq!(
        parse(&["   "]).unwrap_err(),
        "could not parse host : missing port in address"
    );
}

#[test]
fn an_empty_list_parses_to_nothing() {
    assert_eq!(parse(&[]), Ok(vec![]));
}

#[test]
fn the_first_bad_entry_fails_the_whole_list() {
    assert_eq!(
        parse(&["good:1", "bad", "x:x"]).unwrap_err(),
        "could not parse host bad: address bad: missing port in address"
    );
    assert_eq!(
        parse(&["good:1", "x:x", "bad"]).unwrap_err(),
        r#"could not parse host port x:x: strconv.ParseUint: parsing "x": invalid syntax"#
    );
}

#[test]
fn wrapper_texts_match_choria() {
    assert_eq!(NO_RESOLVER, "no Provisioning Target Resolver registered");
    assert_eq!(
        servers_from("Acme DC", Ok(RawTargets::default())).unwrap_err(),
        "provisioning target plugin Acme DC returned no servers"
    );
    assert_eq!(
        servers_from("Acme DC", Err("consul is down".into())).unwrap_err(),
        "could not determine provisioning servers using Acme DC provisioning target plugin: consul is down"
    );
    assert_eq!(
        servers_from("Acme DC", Ok(list(&["ok:1", "foo"]).into())).unwrap_err(),
        "could not determine provisioning servers using Acme DC provisioning target plugin: \
         could not parse host foo: address foo: missing port in address"
    );
    assert_eq!(
        servers_from("Acme DC", Ok(list(&["a:1", "tls://b:2"]).into())),
        Ok(vec![server("nats", "a", 1), server("tls", "b", 2)])
    );
}
