//! The answer record: everything a resolver says besides its targets, one named
//! optional field per optional call of the contract.
#![forbid(unsafe_code)]

/// What a resolver said about its answer besides the targets ([`super::TargetList`]
/// holds both).
///
/// One named, optional field per optional part of an answer. Each layout's adapter
/// fills the fields its layout can give (`plugin-abi/src/host/layouts/v1_*.rs`); an
/// older layout leaves the newer fields at their default (`None`), so growing the
/// contract adds a field here and never edits an older adapter. A host carries the
/// record whole (it derives `serde`'s traits, for a child-process protocol, and
/// [`Answer::map_texts`] bounds and escapes every text field at once), so a new field
/// costs the host only its rendering.
///
/// Marked `non_exhaustive`: start from `Answer::default()` and set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Answer {
    /// Where the answer came from, as the resolver said it (interface 1.2 and later;
    /// `None` when it said nothing, an empty text, or was built against an older
    /// interface). Raw plugin text: bound and escape it before showing it.
    pub provenance: Option<String>,
}

impl Answer {
    /// The same answer with `shown` applied to every text field: the host's one place
    /// to bound and escape plugin text before it shows, logs or sends it. A new text
    /// field is added here, next to its declaration.
    #[must_use]
    pub fn map_texts(self, shown: impl Fn(&str) -> String) -> Answer {
        Answer {
            provenance: self.provenance.as_deref().map(&shown),
        }
    }
}

/// A text a plugin gave as an optional part of its answer: `None` when it is empty
/// (an empty text is how a layout says "nothing").
pub(super) fn given(text: &str) -> Option<String> {
    Some(text).filter(|t| !t.is_empty()).map(str::to_string)
}

// The tests build answers as a host outside this crate must (`non_exhaustive`: from
// the default, field by field).
#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_through_serde_and_refuses_unknown_fields() {
        let mut answer = Answer::default();
        answer.provenance = Some("etcd key /choria/prov revision 42".into());
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            json,
            r#"{"provenance":"etcd key /choria/prov revision 42"}"#
        );
        assert_eq!(serde_json::from_str::<Answer>(&json).unwrap(), answer);
        let nothing = serde_json::to_string(&Answer::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<Answer>(&nothing).unwrap(),
            Answer::default()
        );
        let err = serde_json::from_str::<Answer>(r#"{"provenance":null,"ttl":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ttl`"), "{err}");
    }

    #[test]
    fn map_texts_reaches_every_text_and_empty_texts_are_none() {
        let mut answer = Answer::default();
        answer.provenance = Some("a".into());
        assert_eq!(
            answer.map_texts(|t| t.to_uppercase()).provenance.as_deref(),
            Some("A")
        );
        assert_eq!(given(""), None);
        assert_eq!(given("x").as_deref(), Some("x"));
    }
}
