//! Target templates: literal text with `${name}` placeholders naming capture groups of
//! the pattern, parsed once at configure time so that what is validated is exactly
//! what is expanded.
//!
//! The syntax is the braced form of the `regex` crate's `Captures::expand`: `${name}`
//! (or `${1}` for a numbered group) and `$$` for a literal `$`. Its unbraced form
//! (`$name`) is refused: `$domain_x` would silently look up a group called
//! `domain_x`, which is exactly the mistake this plugin wants to name at start-up.

use std::fmt;

use regex::{Captures, Regex};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(GroupRef),
}

/// A placeholder: a group name, or a group number written as digits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupRef {
    Name(String),
    Index(usize),
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRef::Name(n) => write!(f, "${{{n}}}"),
            GroupRef::Index(i) => write!(f, "${{{i}}}"),
        }
    }
}

/// A parsed template whose every placeholder names a group of its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template cannot be used; the caller adds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// `${` without a closing `}`.
    Unclosed,
    /// `${}`.
    EmptyName,
    /// `$` followed by something other than `{` or `$`.
    BareDollar,
    /// A placeholder naming no group of the pattern; carries the groups there are.
    UnknownGroup(String, Vec<String>),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unclosed => f.write_str("a placeholder is missing its closing '}'"),
            TemplateError::EmptyName => f.write_str("'${}' names no capture group"),
            TemplateError::BareDollar => f.write_str(
                "placeholders are written ${name} (write $$ for a literal '$')",
            ),
            TemplateError::UnknownGroup(p, groups) if groups.is_empty() => write!(
                f,
                "{p} names no capture group of the pattern, which has none; add one such as (?P<domain>.+)"
            ),
            TemplateError::UnknownGroup(p, groups) => write!(
                f,
                "{p} names no capture group of the pattern (its groups: {})",
                groups.join(", ")
            ),
        }
    }
}

/// Why a template could not be expanded for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmatched(String);

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture group {} took no part in the match", self.0)
    }
}

impl Template {
    /// Parses `source` and checks every placeholder against `pattern`'s groups.
    /// The template as configured.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn parse(source: &str, pattern: &Regex) -> Result<Template, TemplateError> {
        let parts = parse_parts(source)?;
        for part in &parts {
            if let Part::Group(g) = part {
                let known = match g {
                    GroupRef::Name(n) => pattern.capture_names().flatten().any(|c| c == n),
                    GroupRef::Index(i) => *i < pattern.captures_len(),
                };
                if !known {
                    let groups = pattern
                        .capture_names()
                        .flatten()
                        .map(|n| format!("${{{n}}}"))
                        .collect();
                    return Err(TemplateError::UnknownGroup(g.to_string(), groups));
                }
            }
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The template with every placeholder replaced by `sample`: lets configure check
    /// the literal parts (a port is present, the scheme is well formed) before any
    /// identity is known.
    pub(crate) fn sample(&self, sample: &str) -> String {
        self.render(|_| Some(sample)).unwrap_or_default()
    }

    /// Expands the template with the groups of one match. A placeholder whose group
    /// took no part in the match (an optional group) is an error, not an empty string.
    pub(crate) fn expand(&self, caps: &Captures<'_>) -> Result<String, Unmatched> {
        self.render(|g| {
            match g {
                GroupRef::Name(n) => caps.name(n),
                GroupRef::Index(i) => caps.get(*i),
            }
            .map(|m| m.as_str())
        })
    }

    fn render<'a>(
        &self,
        mut value: impl FnMut(&GroupRef) -> Option<&'a str>,
    ) -> Result<String, Unmatched> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Group(g) => match value(g) {
                    Some(v) => out.push_str(v),
                    None => return Err(Unmatched(g.to_string())),
                },
            }
        }
        Ok(out)
    }
}

fn parse_parts(source: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = source;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or(TemplateError::Unclosed)?;
            let name = inner[..end].trim();
            if name.is_empty() {
                return Err(TemplateError::EmptyName);
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            let group = match name.parse::<usize>() {
                Ok(i) if name.bytes().all(|b| b.is_ascii_digit()) => GroupRef::Index(i),
                _ => GroupRef::Name(name.to_string()),
            };
            parts.push(Part::Group(group));
            rest = &inner[end + 1..];
        } else {
            return Err(TemplateError::BareDollar);
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    fn expand(pattern: &str, template: &str, identity: &str) -> Result<String, String> {
        let pattern = re(pattern);
        let t = Template::parse(template, &pattern).map_err(|e| e.to_string())?;
        let caps = pattern.captures(identity).ok_or("no match")?;
        t.expand(&caps).map_err(|e| e.to_string())
    }

    #[test]
    fn expands_named_and_numbered_groups() {
        let p = r"^(?P<host>[^.]+)\.(?P<dc>[^.]+)\.(?P<domain>.+)$";
        for (template, want) in [
            (
                "provision.${dc}.${domain}:4222",
                "provision.lon1.example.net:4222",
            ),
            (
                "tls://${2}-prov.${domain}:4223",
                "tls://lon1-prov.example.net:4223",
            ),
            ("static.example.net:4222", "static.example.net:4222"),
            // $$ is a literal dollar; spaces inside the braces are forgiven.
            ("$$${ dc }", "$lon1"),
            ("$${dc}", "${dc}"),
        ] {
            assert_eq!(
                expand(p, template, "web1.lon1.example.net").unwrap(),
                want,
                "{template}"
            );
        }
    }

    #[test]
    fn placeholders_must_name_groups_of_the_pattern() {
        let p = re(r"^[^.]+\.(?P<domain>.+)$");
        let err = Template::parse("provision.${dom}:4222", &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "${dom} names no capture group of the pattern (its groups: ${domain})"
        );
        let err = Template::parse("p.${2}:4222", &p).unwrap_err();
        assert!(matches!(err, TemplateError::UnknownGroup(..)), "{err}");
        let err = Template::parse("p.${domain}:4222", &re(r"^[^.]+\.(.+)$")).unwrap_err();
        assert!(err.to_string().contains("which has none"), "{err}");
        // ${0}, the whole match, always exists.
        assert!(Template::parse("${0}:4222", &p).is_ok());
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        let p = re(r"^[^.]+\.(?P<domain>.+)$");
        assert_eq!(
            Template::parse("provision.${domain:4222", &p),
            Err(TemplateError::Unclosed)
        );
        assert_eq!(
            Template::parse("x.${}:1", &p),
            Err(TemplateError::EmptyName)
        );
        // The unbraced form is ambiguous ($domain_x): refused, with the fix.
        let err = Template::parse("provision.$domain:4222", &p).unwrap_err();
        assert_eq!(err, TemplateError::BareDollar);
        assert!(err.to_string().contains("${name}"), "{err}");
        assert_eq!(
            Template::parse("trailing$", &p),
            Err(TemplateError::BareDollar)
        );
    }

    #[test]
    fn an_optional_group_that_did_not_match_is_an_error() {
        let err = expand(
            r"^(?P<host>[^.]+)(\.(?P<domain>.+))?$",
            "p.${domain}:4222",
            "web1",
        )
        .unwrap_err();
        assert_eq!(err, "capture group ${domain} took no part in the match");
    }

    #[test]
    fn sample_fills_every_placeholder() {
        let p = re(r"^(?P<a>x)(?P<b>y)$");
        let t = Template::parse("${a}.${b}.net", &p).unwrap();
        assert_eq!(t.sample("s"), "s.s.net");
        assert_eq!(t.as_str(), "${a}.${b}.net");
    }
}
