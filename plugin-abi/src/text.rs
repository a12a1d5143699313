//! The SDK's one text helper, shared by the backoff loop, the export glue and the host
//! side. Private to the crate: it is not part of the vendor-facing API.
#![forbid(unsafe_code)]

/// `s` on one line: every run of whitespace (newlines included) becomes one space, and
/// leading and trailing whitespace is dropped, so an error message from a plugin or a
/// library never spans lines in a log.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn whitespace_runs_become_one_space() {
        assert_eq!(one_line("  a\n\n b\t c \r\n"), "a b c");
        assert_eq!(one_line("\n \t"), "");
        assert_eq!(one_line("plain"), "plain");
    }
}
