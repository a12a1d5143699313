//! Turning what a resolver returns into provisioning servers, with Choria's rules and
//! error texts.
//!
//! A resolver hands back strings such as `broker1.example.net:4222` or
//! `tls://broker1.example.net:4222`. [`parse_servers`] turns the whole list into
//! [`Server`]s or fails on the first entry it cannot use (all-or-nothing, as Choria's
//! `srvcache.StringHostsToServers`), and [`servers_from`] wraps a resolver's result
//! with Choria's provisioning error texts.
//!
//! ```
//! use provtarget::{resolver::RawTargets, servers::{parse_servers, servers_from}};
//!
//! let list = vec![" broker1:4222 ".to_string(), "TLS://u:p@[::1]:4223/path".to_string()];
//! let servers = parse_servers(&list).unwrap();
//! assert_eq!(servers[0].to_string(), "nats://broker1:4222");
//! assert_eq!(servers[1].to_string(), "tls://[::1]:4223");
//!
//! assert_eq!(
//!     parse_servers(&["foo".to_string()]).unwrap_err(),
//!     "could not parse host foo: address foo: missing port in address"
//! );
//! assert_eq!(
//!     servers_from("Acme", Ok(RawTargets::default())).unwrap_err(),
//!     "provisioning target plugin Acme returned no servers"
//! );
//! ```
//!
//! # How one entry is read
//!
//! 1. Surrounding white space is trimmed.
//! 2. If the entry parses as a URL *with a host* (Go's `net/url` rules:
//!    `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`), its host and
//!    port are used and its scheme, lower-cased, becomes the server's scheme.
//!    Credentials, path, query and fragment are dropped. An entry like `foo:4222` is
//!    *not* such a URL (Go reads `foo` as a scheme with an opaque part), nor is
//!    `nats://h:x` (Go refuses the non-numeric port), so both fall through to step 3
//!    with the whole entry.
//! 3. Otherwise the entry itself must be `host:port` (IPv6 hosts in brackets) and the
//!    scheme is `nats`.
//! 4. The host/port split follows Go's `net.SplitHostPort` and the port Go's
//!    `strconv.ParseUint(port, 10, 16)`, including their error texts, so messages match
//!    what Choria prints:
//!
//! | entry         | error                                                                       |
//! |---------------|-----------------------------------------------------------------------------|
//! | `foo`         | `could not parse host foo: address foo: missing port in address`            |
//! | `x:x`         | `could not parse host port x:x: strconv.ParseUint: parsing "x": invalid syntax` |
//! | `h:99999`     | `could not parse host port h:99999: strconv.ParseUint: parsing "99999": value out of range` |
//! | `a:b:c`       | `could not parse host a:b:c: address a:b:c: too many colons in address`     |
//! | `nats://h`    | `could not parse host h: address h: missing port in address` (the URL's host is named) |
//!
//! # Where we are stricter than Choria
//!
//! Choria accepts an empty host (`:4222`, `[]:4222`, `nats://:4222`) and port 0. We refuse
//! both, naming the entry:
//!
//! - `could not parse host :4222: address :4222: missing host in address` — a NATS
//!   client given an empty host dials the *local* machine, so a resolver bug would
//!   silently provision against whatever listens on localhost.
//! - `could not parse host port h:0: port 0 is not a usable broker port` — nothing can
//!   be connected to on port 0; accepting it only moves the failure into an endless
//!   connect loop, whereas an error here is visible in `provtarget targets` and lets a
//!   resolver chain fall back to its next resolver.
//!
//! - A host containing white space or control characters is refused (the error shows
//!   them escaped): no broker name has them, and printing them raw would let a
//!   resolver write escape sequences to the operator's terminal.
//! - A host must be a DNS name, an IPv4 address or a bracketed IPv6 address, so that
//!   the URL we print (`nats://host:port`) is read back as the same host by any URL
//!   parser: `good.example%2f@evil:4222`, `a@b:4222` or `h#x:4222` would be printed as
//!   URLs whose host is `evil`, `b` or `h`. A DNS name is ASCII letters, digits, `-`
//!   and `_` in labels of at most [`MAX_LABEL_LEN`] (63) bytes, at most
//!   [`MAX_HOST_LEN`] (253) bytes in all plus an optional trailing dot, and its last
//!   label is not a number (`1.2.3` and `h.0x10` are IPv4 addresses to a WHATWG URL
//!   parser). Non-ASCII names (write them in their `xn--` form), Unicode format
//!   characters (U+202E, zero-width characters), IPv6 zones (`[fe80::1%eth0]`) and
//!   percent-encoding are refused; the error says which rule.
//! - An entry longer than [`MAX_ENTRY_LEN`] (1024) bytes is refused without being
//!   parsed or shown, and an answer of more than [`MAX_TARGETS`] (1000) entries is
//!   refused before any entry is read; both errors state the numbers.
//! - `file://` entries are refused: they name no broker.
//!
//! Credentials are masked in every error: `could not parse host nats://*****@h:x ...`,
//! also for entries that are not URLs (`user:pw@h:4222`).
//!
//! IPv6 hosts are printed bracketed (`nats://[::1]:4222`); Choria prints them bare,
//! which no URL parser can read back.

use std::fmt;

use crate::resolver::{RawTargets, ResolverError};

/// Returned by the host when no resolver is active (Choria's text).
pub const NO_RESOLVER: &str = "no Provisioning Target Resolver registered";

/// The scheme of entries that do not name one.
pub const DEFAULT_SCHEME: &str = "nats";

/// One provisioning broker: where to connect and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    /// Lower-cased URL scheme, `nats` unless the entry named another (e.g. `tls`).
    pub scheme: String,
    /// Host name or IP address, without brackets (`::1`, not `[::1]`).
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl fmt::Display for Server {
    /// `scheme://host:port`, with an IPv6 host in brackets: `nats://[::1]:4222`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Parses every entry of `list` into a [`Server`], failing with the first bad entry's
/// error (see the [module docs](self) for the rules and error texts). An empty list
/// gives an empty result; [`servers_from`] turns that into an error.
pub fn parse_servers<I>(list: I) -> Result<Vec<Server>, ServerError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    list.into_iter()
        .map(|entry| parse_server(entry.as_ref()).map_err(|text| ServerError { text }))
        .collect()
}

/// Why an entry of a resolver's answer is not a usable server: Choria's one-line text
/// (`could not parse host foo: address foo: missing port in address`), credentials
/// masked and control characters escaped, as [`Display`](fmt::Display) shows it and
/// as the error reads when compared with a `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    text: String,
}

impl ServerError {
    /// The one-line text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Why a resolver's result gave no servers ([`servers_from`]): which resolver, which
/// way it failed, and Choria's one-line text for it (ready to show: credentials masked,
/// control characters escaped), as [`Display`](fmt::Display) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetsError {
    resolver: String,
    kind: TargetsErrorKind,
    text: String,
}

/// The ways a resolver's result can give no servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetsErrorKind {
    /// The resolver returned an error.
    Failed,
    /// The resolver returned no targets.
    Empty,
    /// The answer is over [`MAX_TARGETS`] or an entry does not parse.
    Invalid,
}

impl TargetsError {
    /// The resolver's name, as given to [`servers_from`].
    pub fn resolver(&self) -> &str {
        &self.resolver
    }

    /// Which way the result failed.
    pub fn kind(&self) -> TargetsErrorKind {
        self.kind
    }

    /// The one-line text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `Display`, `Deref<Target = str>` (the error reads as its one line,
/// [`crate::text::one_line_text`]) and comparison with text, for the error types whose
/// value is one shown line.
macro_rules! one_line_error {
    ($t:ty) => {
        crate::text::one_line_text!($t, text);
        impl std::error::Error for $t {}
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.text == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.text == *other
            }
        }
    };
}
one_line_error!(ServerError);
one_line_error!(TargetsError);

/// Most targets one answer may hold: an answer with more is refused, before any of it
/// is copied or parsed. A site has a handful of provisioning brokers; a thousand is
/// far beyond any real answer and keeps a runaway or hostile resolver from filling
/// memory and the terminal (a list of a million targets printed 35 MB).
pub const MAX_TARGETS: usize = 1000;

/// Longest entry read, in bytes (before trimming): a URL with a 253-byte host name,
/// credentials, a path and a query fits; a longer entry is refused without being
/// parsed or shown.
pub const MAX_ENTRY_LEN: usize = 1024;

/// Longest host name, in bytes, without a trailing dot (DNS, RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Longest label of a host name, in bytes (DNS, RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// What a host may be, appended to every refusal of a host's characters or shape.
const HOST_RULE: &str = "hosts must be DNS names, IPv4 addresses or bracketed IPv6 addresses";

/// Why a resolver's answer holds no usable servers; see [`read_answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The list is empty.
    Empty,
    /// The list is over [`MAX_TARGETS`] or an entry does not parse: one line,
    /// credentials masked, control and format characters escaped.
    Invalid(String),
}

/// Reads a resolver's answer: an empty list is [`AnswerError::Empty`]; a list of more
/// than [`MAX_TARGETS`] entries is refused, stating both numbers, before anything in
/// it is read; otherwise the list is parsed with [`parse_servers`].
pub fn read_answer(list: &RawTargets) -> Result<Vec<Server>, AnswerError> {
    if list.is_empty() {
        return Err(AnswerError::Empty);
    }
    if list.len() > MAX_TARGETS {
        return Err(AnswerError::Invalid(format!(
            "it returned {} targets; the limit is {MAX_TARGETS}",
            list.len()
        )));
    }
    parse_servers(list).map_err(|e| AnswerError::Invalid(e.text))
}

/// Whether `list` is within the bounds [`read_answer`] checks before parsing anything:
/// at most [`MAX_TARGETS`] entries, none over [`MAX_ENTRY_LEN`] bytes. A list over them
/// is always refused; one within them may still hold entries that do not parse.
pub fn within_bounds(list: &RawTargets) -> bool {
    list.len() <= MAX_TARGETS && list.iter().all(|entry| entry.len() <= MAX_ENTRY_LEN)
}

/// Applies Choria's provisioning wrapper to a resolver's result:
///
/// - an error becomes `could not determine provisioning servers using <Name>
///   provisioning target plugin: <err>`;
/// - an empty list becomes `provisioning target plugin <Name> returned no servers`;
/// - otherwise the list is read with [`read_answer`], its error being wrapped like a
///   resolver error.
///
/// Every error text is one line ready to show: credentials in URLs masked and control
/// and format characters escaped ([`shown`](crate::text::shown)), as it is printed,
/// logged and carried in JSON.
pub fn servers_from(
    resolver_name: &str,
    result: Result<RawTargets, ResolverError>,
) -> Result<Vec<Server>, TargetsError> {
    let error = |kind, text| TargetsError {
        resolver: resolver_name.to_string(),
        kind,
        text,
    };
    let could_not = |err: &dyn fmt::Display| {
        crate::text::shown(&format!(
            "could not determine provisioning servers using {resolver_name} provisioning target plugin: {err}"
        ))
    };
    let list = result.map_err(|e| error(TargetsErrorKind::Failed, could_not(&e)))?;
    read_answer(&list).map_err(|e| match e {
        AnswerError::Empty => error(
            TargetsErrorKind::Empty,
            crate::text::printable(&format!(
                "provisioning target plugin {resolver_name} returned no servers"
            )),
        ),
        AnswerError::Invalid(err) => error(TargetsErrorKind::Invalid, could_not(&err)),
    })
}

/// One entry; the error is the full Choria-style message, credentials masked and
/// control and format characters escaped.
fn parse_server(entry: &str) -> Result<Server, String> {
    if entry.len() > MAX_ENTRY_LEN {
        // Neither parsed nor shown: it may be megabytes long.
        return Err(format!(
            "could not parse host: an entry of {} bytes is over the limit of {MAX_ENTRY_LEN} bytes (a host name has at most {MAX_HOST_LEN})",
            entry.len()
        ));
    }
    parse_entry(entry).map_err(|err| masked_error(entry.trim(), err))
}

/// The error for `entry` with the credentials it may carry masked: whatever precedes
/// the last `@` after the scheme, also in an entry that is not a URL
/// (`user:pw@h:4222`). The message is made from the entry with its credentials
/// replaced by `*****`, so no piece of them (a password read as a port, say) can
/// appear in it; then escaped.
fn masked_error(entry: &str, err: String) -> String {
    let start = match split_scheme(entry) {
        Some((Some(scheme), rest)) if rest.starts_with("//") => scheme.len() + 3,
        _ if entry.starts_with("//") => 2,
        _ => 0,
    };
    let err = match entry[start..].rfind('@') {
        Some(at) if at > 0 => {
            let masked = format!(
                "{}{}{}",
                &entry[..start],
                crate::text::MASK,
                &entry[start + at..]
            );
            match parse_entry(&masked) {
                Err(e) => e,
                Ok(_) => format!("could not parse host {masked}: not a host:port or a URL"),
            }
        }
        _ => err,
    };
    crate::text::shown(&err)
}

fn parse_entry(entry: &str) -> Result<Server, String> {
    let entry = entry.trim();
    let (scheme, hostport) = match url_host(entry) {
        Some((scheme, host)) => (scheme.unwrap_or_else(|| DEFAULT_SCHEME.to_string()), host),
        None => (DEFAULT_SCHEME.to_string(), entry),
    };

    let (host, port) = split_host_port(hostport)
        .map_err(|err| format!("could not parse host {hostport}: {err}"))?;
    let port =
        parse_port(port).map_err(|err| format!("could not parse host port {hostport}: {err}"))?;

    let host = host.trim();
    if host.is_empty() {
        return Err(format!(
            "could not parse host {hostport}: address {hostport}: missing host in address"
        ));
    }
    if port == 0 {
        return Err(format!(
            "could not parse host port {hostport}: port 0 is not a usable broker port"
        ));
    }
    if host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "could not parse host {hostport}: host contains white space or control characters"
        ));
    }
    if scheme == "file" {
        return Err(format!(
            "could not parse host {hostport}: a file URL names no broker; use nats:// or tls://"
        ));
    }
    check_host(host, hostport.starts_with('['))
        .map_err(|why| format!("could not parse host {hostport}: {why}"))?;
    Ok(Server {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// A host is a bracketed IPv6 address (no zone), an IPv4 address, or a DNS name of
/// ASCII letters, digits, `-` and `_` in labels of 1 to [`MAX_LABEL_LEN`] bytes, at
/// most [`MAX_HOST_LEN`] bytes in all (one trailing dot allowed), whose last label is
/// not a number (URL parsers read `1.2.3` or `h.0x10` as IPv4 addresses). Anything
/// else (URL delimiters such as `@ # / ? \ %`, non-ASCII, format characters) would be
/// printed as a URL another parser reads as a different host, so it is refused.
fn check_host(host: &str, bracketed: bool) -> Result<(), String> {
    if bracketed {
        return match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) if host.contains('%') => Err(format!(
                "an IPv6 zone (%...) cannot be written in a URL; {HOST_RULE}"
            )),
            Err(_) => Err(format!("[{host}] is not an IPv6 address; {HOST_RULE}")),
        };
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.contains('@') {
        return Err(format!(
            "host holds '@' (credentials before the host are read only from a URL with a scheme, such as nats://); {HOST_RULE}"
        ));
    }
    if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        let why = if c.is_ascii() {
            format!("host holds {c:?}, which a URL parser reads as a delimiter or escape")
        } else {
            format!(
                "host holds the non-ASCII character {}; write an internationalised name in its xn-- form",
                c.escape_unicode()
            )
        };
        return Err(format!("{why}; {HOST_RULE}"));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_HOST_LEN {
        return Err(format!(
            "host name is {} bytes; the limit is {MAX_HOST_LEN}",
            name.len()
        ));
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("host name has an empty label; {HOST_RULE}"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "host name has a label of {} bytes; the limit is {MAX_LABEL_LEN}",
                label.len()
            ));
        }
        last = label;
    }
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "host ends in a number but is not an IPv4 address (URL parsers would read it as one); {HOST_RULE}"
        ));
    }
    Ok(())
}

/// The scheme (lower-cased, if any) and the `host[:port]` part of `entry` when Go's
/// `url.Parse` would accept it and find a non-empty host; `None` otherwise.
fn url_host(entry: &str) -> Option<(Option<String>, &str)> {
    if entry.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None; // net/url: invalid control character in URL
    }
    let (entry, fragment) = entry.split_once('#').unwrap_or((entry, ""));
    if !valid_escapes(fragment) {
        return None;
    }
    let (scheme, rest) = split_scheme(entry)?;
    // The query is cut off first (a lone trailing `?` is a "forced" empty query).
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);

    if !rest.starts_with('/') {
        // With a scheme this is an opaque URL (`foo:4222`): no host. Without one, Go
        // refuses a first path segment holding a colon; either way there is no host.
        return None;
    }
    if !rest.starts_with("//") || (scheme.is_none() && rest.starts_with("///")) {
        return None; // a path, no authority
    }
    let authority = &rest[2..];
    let (authority, path) = match authority.find('/') {
        Some(i) => (&authority[..i], &authority[i..]),
        None => (authority, ""),
    };
    let host = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            if !valid_userinfo(userinfo) || !valid_escapes(userinfo) {
                return None; // net/url: invalid userinfo
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    if !valid_url_host(host) || !valid_escapes(path) || host.is_empty() {
        return None;
    }
    Some((scheme.map(|s| s.to_ascii_lowercase()), host))
}

/// Go's `getScheme`: `Some((scheme, rest))` where scheme is `None` when the entry does
/// not start with one; `None` when it starts with `:` (missing protocol scheme).
fn split_scheme(entry: &str) -> Option<(Option<&str>, &str)> {
    for (i, c) in entry.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((Some(&entry[..i]), &entry[i + 1..])),
            _ => return Some((None, entry)),
        }
    }
    Some((None, entry))
}

/// Go's `parseHost` checks (without percent-decoding, see the module docs): a
/// bracketed host may only be followed by `:digits`; otherwise whatever follows the
/// last colon must be digits; every byte must be allowed in a URL host.
fn valid_url_host(host: &str) -> bool {
    let port_part = if host.starts_with('[') {
        match host.rfind(']') {
            Some(i) => &host[i + 1..],
            None => return false, // missing ']' in host
        }
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let valid_optional_port = port_part.is_empty()
        || (port_part.starts_with(':') && port_part[1..].bytes().all(|b| b.is_ascii_digit()));
    valid_optional_port
        && host.bytes().all(|b| {
            b >= 0x80 || b.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&b)
        })
}

/// Go's `validUserinfo`.
fn valid_userinfo(userinfo: &str) -> bool {
    userinfo
        .bytes()
        .all(|b| b >= 0x80 || b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b))
}

/// Every `%` is followed by two hex digits (Go refuses the URL otherwise).
fn valid_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Go's `net.SplitHostPort`, with its `*net.AddrError` texts.
fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    let addr_err = |why: &str| {
        if hostport.is_empty() {
            why.to_string()
        } else {
            format!("address {hostport}: {why}")
        }
    };

    let Some(last_colon) = hostport.rfind(':') else {
        return Err(addr_err(MISSING_PORT));
    };
    let (host, after_open, after_close) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(addr_err("missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return Err(addr_err(MISSING_PORT));
        } else if end + 1 != last_colon {
            return Err(addr_err(if hostport.as_bytes()[end + 1] == b':' {
                TOO_MANY_COLONS
            } else {
                MISSING_PORT
            }));
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..last_colon];
        if host.contains(':') {
            return Err(addr_err(TOO_MANY_COLONS));
        }
        (host, 0, 0)
    };
    if hostport[after_open..].contains('[') {
        return Err(addr_err("unexpected '[' in address"));
    }
    if hostport[after_close..].contains(']') {
        return Err(addr_err("unexpected ']' in address"));
    }
    Ok((host, &hostport[last_colon + 1..]))
}

/// Go's `strconv.ParseUint(port, 10, 16)`, with its `*strconv.NumError` texts. Like
/// Go, a value that overflows before a bad character is reported as out of range.
fn parse_port(port: &str) -> Result<u16, String> {
    let syntax = || {
        format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(port)
        )
    };
    let range = || {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(port)
        )
    };
    if port.is_empty() {
        return Err(syntax());
    }
    let mut n: u32 = 0;
    for b in port.bytes() {
        if !b.is_ascii_digit() {
            return Err(syntax());
        }
        n = n * 10 + u32::from(b - b'0');
        if n > u32::from(u16::MAX) {
            return Err(range());
        }
    }
    Ok(n as u16)
}

/// Go's `strconv.Quote` for the strings a port can hold: printable characters as they
/// are, `"` and `\` escaped, control characters as `\n`, `\t`, `\xNN` or `\uNNNN`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_errors_carry_the_resolver_and_the_way_it_failed() {
        let failed = servers_from("Acme", Err("consul is down".into())).unwrap_err();
        assert_eq!(failed.resolver(), "Acme");
        assert_eq!(failed.kind(), TargetsErrorKind::Failed);
        assert_eq!(
            failed.to_string(),
            "could not determine provisioning servers using Acme provisioning target plugin: consul is down"
        );
        let empty = servers_from("Acme", Ok(RawTargets::default())).unwrap_err();
        assert_eq!(empty.kind(), TargetsErrorKind::Empty);
        assert_eq!(
            empty.as_str(),
            "provisioning target plugin Acme returned no servers"
        );
        let invalid = servers_from("Acme", Ok(vec!["foo".to_string()].into())).unwrap_err();
        assert_eq!(invalid.kind(), TargetsErrorKind::Invalid);
        assert!(invalid.ends_with("could not parse host foo: address foo: missing port in address"));
        let bad = parse_servers(["ok:1", "foo"]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "could not parse host foo: address foo: missing port in address"
        );
        assert_eq!(
            bad,
            "could not parse host foo: address foo: missing port in address"
        );
    }

    fn one(entry: &str) -> Result<String, String> {
        parse_server(entry).map(|s| s.to_string())
    }

    #[test]
    fn go_split_host_port_texts() {
        assert_eq!(split_host_port("h:1"), Ok(("h", "1")));
        assert_eq!(split_host_port("[::1]:1"), Ok(("::1", "1")));
        assert_eq!(split_host_port(":1"), Ok(("", "1")));
        assert_eq!(split_host_port("h:"), Ok(("h", "")));
        assert_eq!(
            split_host_port("h").unwrap_err(),
            "address h: missing port in address"
        );
        assert_eq!(split_host_port("").unwrap_err(), "missing port in address");
        assert_eq!(
            split_host_port("[::1]").unwrap_err(),
            "address [::1]: missing port in address"
        );
        assert_eq!(
            split_host_port("[::1]:1:2").unwrap_err(),
            "address [::1]:1:2: too many colons in address"
        );
        assert_eq!(
            split_host_port("[::1]x:1").unwrap_err(),
            "address [::1]x:1: missing port in address"
        );
        assert_eq!(
            split_host_port("[::1:1").unwrap_err(),
            "address [::1:1: missing ']' in address"
        );
        assert_eq!(
            split_host_port("a[b:1").unwrap_err(),
            "address a[b:1: unexpected '[' in address"
        );
        assert_eq!(
            split_host_port("ab]:1").unwrap_err(),
            "address ab]:1: unexpected ']' in address"
        );
        assert_eq!(
            split_host_port("::1").unwrap_err(),
            "address ::1: too many colons in address"
        );
    }

    #[test]
    fn go_parse_uint_texts() {
        assert_eq!(parse_port("4222"), Ok(4222));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(parse_port("0004222"), Ok(4222));
        assert_eq!(
            parse_port("65536").unwrap_err(),
            r#"strconv.ParseUint: parsing "65536": value out of range"#
        );
        assert_eq!(
            parse_port("").unwrap_err(),
            r#"strconv.ParseUint: parsing "": invalid syntax"#
        );
        assert_eq!(
            parse_port("+1").unwrap_err(),
            r#"strconv.ParseUint: parsing "+1": invalid syntax"#
        );
        assert_eq!(
            parse_port("-1").unwrap_err(),
            r#"strconv.ParseUint: parsing "-1": invalid syntax"#
        );
        // Go reports overflow as soon as it happens, before a later bad character.
        assert_eq!(
            parse_port("999999x").unwrap_err(),
            r#"strconv.ParseUint: parsing "999999x": value out of range"#
        );
        assert_eq!(
            parse_port("1x99999").unwrap_err(),
            r#"strconv.ParseUint: parsing "1x99999": invalid syntax"#
        );
        assert_eq!(
            parse_port("4\t2\"\\").unwrap_err(),
            r#"strconv.ParseUint: parsing "4\t2\"\\": invalid syntax"#
        );
        assert_eq!(go_quote("\u{1}\u{85}é"), "\"\\x01\\u0085é\"");
    }

    #[test]
    fn url_detection_follows_go() {
        assert_eq!(url_host("foo:4222"), None, "opaque: scheme foo");
        assert_eq!(url_host("127.0.0.1:4222"), None, "colon in first segment");
        assert_eq!(url_host("nats://h:x"), None, "invalid port after host");
        assert_eq!(url_host("nats://h 1:1"), None, "space in host");
        assert_eq!(url_host("nats://u{x@h:1"), None, "invalid userinfo");
        assert_eq!(url_host("nats://h:1/%zz"), None, "bad escape in path");
        assert_eq!(url_host("nats:///h:1"), None, "empty host");
        assert_eq!(url_host("://h:1"), None, "missing protocol scheme");
        assert_eq!(url_host("nats://[::1:1"), None, "missing ']' in host");
        assert_eq!(url_host("nats://[::1]x"), None, "invalid port after host");
        assert_eq!(
            url_host("NATS://u:p@h:1/p?q#f"),
            Some((Some("nats".to_string()), "h:1"))
        );
        assert_eq!(url_host("//h:1"), Some((None, "h:1")));
        assert_eq!(
            url_host("nats://h?x"),
            Some((Some("nats".to_string()), "h"))
        );
        assert_eq!(
            url_host("nats://[::1]"),
            Some((Some("nats".into()), "[::1]"))
        );
    }

    #[test]
    fn entries() {
        assert_eq!(one("foo:4222").unwrap(), "nats://foo:4222");
        assert_eq!(one("//foo:4222").unwrap(), "nats://foo:4222");
        assert_eq!(one("nats://h:4222?x=1#frag").unwrap(), "nats://h:4222");
        assert_eq!(
            one("[fe80::1%eth0]:4222").unwrap_err(),
            "could not parse host [fe80::1%eth0]:4222: an IPv6 zone (%...) cannot be written in a URL; hosts must be DNS names, IPv4 addresses or bracketed IPv6 addresses"
        );
        assert_eq!(
            one("nats://h").unwrap_err(),
            "could not parse host h: address h: missing port in address"
        );
        assert_eq!(
            one("nats://h:x").unwrap_err(),
            "could not parse host nats://h:x: address nats://h:x: too many colons in address"
        );
        assert_eq!(
            one("nats://:4222").unwrap_err(),
            "could not parse host :4222: address :4222: missing host in address"
        );
        assert_eq!(
            one("nats://h:0").unwrap_err(),
            "could not parse host port h:0: port 0 is not a usable broker port"
        );
        assert_eq!(
            parse_servers(&["evil\u{1b}x:4222".to_string()]).unwrap_err(),
            "could not parse host evil\\u{1b}x:4222: host contains white space or control characters"
        );
        assert_eq!(
            servers_from("P", Err("bad\nline\u{1b}[2J".into())).unwrap_err(),
            "could not determine provisioning servers using P provisioning target plugin: bad\\nline\\u{1b}[2J"
        );
        assert!(parse_servers(&["a b:4222".to_string()]).is_err());
    }

    #[test]
    fn credentials_are_masked_in_every_error() {
        for (entry, secret) in [
            ("nats://user:SECRETPW@h:x", "SECRETPW"),
            ("user:SECRETPW@h:4222", "SECRETPW"),
            ("SECRETPW@h:4222", "SECRETPW"),
            ("tls://u:SECRETPW@h:y", "SECRETPW"),
            ("nats://u:SECRETPW@h:99999", "SECRETPW"),
            ("//u:SECRETPW@[::1", "SECRETPW"),
            ("u:SECRETPW@h#x:4222", "SECRETPW"),
        ] {
            let err = one(entry).unwrap_err();
            assert!(!err.contains(secret), "{entry}: {err}");
            // Where the message names the credentials' place, the mask stands there.
            assert!(
                !err.contains('@') || err.contains("*****@"),
                "{entry}: {err}"
            );
            let err = servers_from("P", Ok(vec![entry.to_string()].into())).unwrap_err();
            assert!(!err.contains(secret), "{entry}: {err}");
        }
        // A resolver's own error text is masked too.
        let err = servers_from("P", Err("cannot reach nats://a:SECRETPW@b:1".into()));
        assert!(!err.unwrap_err().contains("SECRETPW"));
    }

    #[test]
    fn hosts_a_url_parser_would_read_differently_are_refused() {
        for entry in [
            "good.example%2f@evil:4222",
            "a@b:4222",
            "h#x:4222",
            "h/x:4222",
            "h?x:4222",
            "h\\x:4222",
            "h%41:4222",
            "[fe80::1%25eth0]:4222",
            "[1.2.3.4]:4222",
            "1.2.3:4222",
            "h.0x10:4222",
            "4222:4222",
            "01.2.3.4:4222",
            "a..b:4222",
            ".a:4222",
            "h\u{202e}x:4222",
            "h\u{200b}:4222",
            "h\u{2066}x\u{2069}:4222",
            "\u{feff}h:4222",
            "b\u{fc}cher.example:4222",
            "file://h:4222",
            "h\"x:4222",
            "h<x:4222",
        ] {
            let err = one(entry).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(err.starts_with("could not parse host"), "{entry}: {err}");
        }
        for ok in [
            "h_x.example:1",
            "h.example.:1",
            "1.2.3.4:1",
            "[::ffff:1.2.3.4]:1",
            "h1.x2:1",
        ] {
            assert!(one(ok).is_ok(), "{ok}: {:?}", one(ok));
        }
    }

    #[test]
    fn dns_length_limits_state_the_numbers() {
        let label = "a".repeat(63);
        let name = [label.as_str(); 4].join("."); // 255 bytes
        assert_eq!(
            one(&format!("{name}:1")).unwrap_err(),
            format!("could not parse host {name}:1: host name is 255 bytes; the limit is 253")
        );
        let ok = format!("{}.{}", &name[..249], "ab"); // 252 bytes
        assert!(one(&format!("{ok}:1")).is_ok());
        assert!(
            one(&format!("{}.:1", &name[..253])).is_ok(),
            "a trailing dot is not counted"
        );
        let long_label = "b".repeat(64);
        assert_eq!(
            one(&format!("{long_label}.example:1")).unwrap_err(),
            format!("could not parse host {long_label}.example:1: host name has a label of 64 bytes; the limit is 63")
        );
        let huge = format!("{}:1", "h".repeat(5_000_000));
        assert_eq!(
            one(&huge).unwrap_err(),
            "could not parse host: an entry of 5000002 bytes is over the limit of 1024 bytes (a host name has at most 253)"
        );
    }

    #[test]
    fn answers_over_the_target_limit_are_refused_with_the_numbers() {
        let at_limit: Vec<String> = (0..MAX_TARGETS).map(|i| format!("h{i}:1")).collect();
        assert_eq!(
            servers_from("P", Ok(at_limit.into())).unwrap().len(),
            MAX_TARGETS
        );
        let over: Vec<String> = (0..=MAX_TARGETS)
            .map(|_| "not parsed".to_string())
            .collect();
        assert_eq!(
            servers_from("P", Ok(over.into())).unwrap_err(),
            "could not determine provisioning servers using P provisioning target plugin: it returned 1001 targets; the limit is 1000"
        );
    }

    #[test]
    fn display_brackets_only_ipv6() {
        let s = |host: &str| Server {
            scheme: "nats".into(),
            host: host.into(),
            port: 1,
        };
        assert_eq!(s("::1").to_string(), "nats://[::1]:1");
        assert_eq!(s("10.0.0.1").to_string(), "nats://10.0.0.1:1");
        assert_eq!(s("h.example").to_string(), "nats://h.example:1");
    }
}
