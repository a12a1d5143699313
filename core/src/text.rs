//! Making untrusted text safe to show: plugin-supplied strings may hold terminal
//! escape sequences or newlines, and settings may hold credentials inside URLs.
//!
//! ```
//! use provtarget::text::{printable, redact_userinfo, shown};
//! assert_eq!(printable("Acme\x1b[31m\nEvil"), "Acme\\u{1b}[31m\\nEvil");
//! assert_eq!(redact_userinfo("nats://prov:hunter2@b:4222,c:4222"), "nats://*****@b:4222,c:4222");
//! assert_eq!(shown("bad nats://u:pw@h:x\n"), "bad nats://*****@h:x\\n");
//! ```
//!
//! The policy: text for a terminal or a log line goes through [`shown`] (masked, then
//! escaped); JSON carries text through [`redact_userinfo`] only (masked, raw: serde
//! escapes what JSON needs, and a JSON reader gets the text back unchanged).

/// What replaces a secret's value (and the credentials inside a URL) wherever input
/// is echoed: buildinfo's settings, `targets`' parse errors, masked input lines.
pub const MASK: &str = "*****";

/// `s` with every control character escaped, so it shows as one line and cannot drive
/// the terminal (the loader's rule, shared so reasons and reports escape alike).
pub use provtarget_loader::printable;

/// `text` for a terminal or a log line: credentials inside URLs masked
/// ([`redact_userinfo`]), then control and format characters escaped ([`printable`]).
/// The one function every message that may carry a setting, a resolver's answer or a
/// resolver's error goes through.
pub fn shown(text: &str) -> String {
    printable(&redact_userinfo(text))
}

/// `value` with the user-information part of every `scheme://user:password@host`
/// URL in it replaced by `*****`.
pub fn redact_userinfo(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', ',' or white space.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | ',') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a configuration key (or any word of input naming one) names a secret: its
/// last dotted part holds `token`, `password`, `passwd`, `pwd`, `secret`,
/// `passphrase`, `credential`, `authorization`, `cookie`, `apikey`/`api_key`,
/// `private_key`/`privatekey`, or is `extensions` (which may carry anything). The one
/// policy for every echo of input: settings shown by buildinfo
/// ([`is_secret_key`]) and malformed lines, flags and variables
/// ([`masked_input`]).
pub fn is_secret_key(key: &str) -> bool {
    let last = key
        .trim_matches(|c: char| c == '"' || c == '\'')
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "pwd",
        "secret",
        "passphrase",
        "credential",
        "authorization",
        "cookie",
        "apikey",
        "api_key",
        "api-key",
        "private_key",
        "private-key",
        "privatekey",
        "extensions",
    ]
    .iter()
    .any(|s| last.contains(s))
}

/// A piece of input echoed in a message (a malformed configuration line, a `--set`
/// argument, a variable), masked whatever its separator: from the first word that
/// names a secret ([`is_secret_key`]) on, the rest is `*****`; credentials inside URLs
/// are masked too ([`redact_userinfo`]). Not escaped: pass the result through
/// [`printable`] for a terminal.
///
/// ```
/// use provtarget::text::masked_input;
/// assert_eq!(masked_input("plugin.provtarget.etcd.password: S3CRET"), "plugin.provtarget.etcd.password: *****");
/// assert_eq!(masked_input("http.header.Authorization Bearer abc"), "http.header.Authorization *****");
/// assert_eq!(masked_input("plugin.provtarget.timeout 30"), "plugin.provtarget.timeout 30");
/// ```
pub fn masked_input(text: &str) -> String {
    let is_separator = |c: char| c == ':' || c == '=' || c.is_whitespace();
    let mut at = 0;
    for word in text.split(is_separator) {
        let end = at + word.len();
        if !word.is_empty() && is_secret_key(word) {
            let rest = &text[end..];
            // Keep the separator as written (it may be why the line is malformed).
            let separator: String = rest.chars().take_while(|c| is_separator(*c)).collect();
            if rest.len() == separator.len() {
                // Nothing follows the key: nothing to hide.
                break;
            }
            let separator = if separator.trim().is_empty() {
                " ".to_string()
            } else {
                format!("{} ", separator.trim())
            };
            return redact_userinfo(&format!("{}{separator}*****", &text[..end]));
        }
        // The separator character after this word.
        at = end + text[end..].chars().next().map_or(0, char::len_utf8);
    }
    redact_userinfo(text)
}

/// A setting's value for JSON: a secret's (by [`is_secret_key`]) replaced by [`MASK`],
/// credentials inside URLs masked, nothing escaped (JSON carries raw text; its
/// encoder escapes what it must).
pub fn masked_setting(key: &str, value: &str) -> String {
    if is_secret_key(key) && !value.is_empty() {
        MASK.to_string()
    } else {
        redact_userinfo(value)
    }
}

/// A setting's value for a terminal: [`masked_setting`], then escaped to one line.
pub fn shown_setting(key: &str, value: &str) -> String {
    printable(&masked_setting(key, value))
}

/// `Display` and `Deref<Target = str>` for a type whose value is one shown line held
/// in the named `String` field: the error and warning types read as their line.
macro_rules! one_line_text {
    ($t:ty, $field:ident) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.$field)
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.$field
            }
        }
    };
}
pub(crate) use one_line_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_naming_a_secret_is_masked_whatever_the_separator() {
        for (input, shown) in [
            (
                "plugin.provtarget.etcd.password: S3CRET",
                "plugin.provtarget.etcd.password: *****",
            ),
            (
                "plugin.provtarget.etcd.password S3CRET",
                "plugin.provtarget.etcd.password *****",
            ),
            (
                "plugin.provtarget.etcd.password=S3CRET",
                "plugin.provtarget.etcd.password= *****",
            ),
            (
                "plugin.provtarget.etcd.password\tS3CRET x",
                "plugin.provtarget.etcd.password *****",
            ),
            (
                "plugin.provtarget.http.header.Authorization: Bearer S3CRET",
                "plugin.provtarget.http.header.Authorization: *****",
            ),
            ("x.api_key:S3CRET", "x.api_key: *****"),
            ("tls.private_key -----BEGIN S3CRET", "tls.private_key *****"),
            (
                "broker nats://u:S3CRET@h:4222",
                "broker nats://*****@h:4222",
            ),
        ] {
            let masked = masked_input(input);
            assert_eq!(masked, shown, "{input}");
            assert!(!masked.contains("S3CRET"), "{input}");
        }
        assert_eq!(
            masked_input("plugin.provtarget.timeout 30"),
            "plugin.provtarget.timeout 30"
        );
        assert_eq!(masked_input("just.a.password"), "just.a.password");
        assert_eq!(
            masked_input("plugin.provtarget.http.token.url x"),
            "plugin.provtarget.http.token.url x"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_text_kept() {
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            printable("a\tb\r\nc\u{7f}\u{9b}"),
            "a\\tb\\r\\nc\\u{7f}\\u{9b}"
        );
        assert_eq!(printable("\x1b]0;title\x07"), "\\u{1b}]0;title\\u{7}");
    }

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(redact_userinfo("nats://b:4222"), "nats://b:4222");
        assert_eq!(redact_userinfo("tls://u@b:4222/x"), "tls://*****@b:4222/x");
        assert_eq!(
            redact_userinfo("nats://u:p@a:1, tls://x:y@[::1]:2?q=a@b"),
            "nats://*****@a:1, tls://*****@[::1]:2?q=a@b"
        );
        assert_eq!(redact_userinfo("no url here: a@b"), "no url here: a@b");
        assert_eq!(redact_userinfo("ends with ://"), "ends with ://");
    }
}
