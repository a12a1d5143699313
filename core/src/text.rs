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
                out.push_str("*****");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
