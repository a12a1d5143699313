//! The child protocol: every message the host and its children exchange, as typed
//! values both ends use (they are the same binary), one JSON object per line.
//!
//! - A child's first line is the [`Handshake`]: [`MAGIC`], [`PROTOCOL`] and the
//!   report of the library it loaded ([`super::wire::report`], carried as it is).
//!   A probing child writes only that, on its report descriptor.
//! - A resolver child is sent [`Request`]s on its socket: first [`Request::Load`]
//!   (with the sealed copy attached; or [`Request::Hold`] with it, then
//!   [`Request::Go`] once the host has verified its signature), then [`Request::Configure`] and
//!   [`Request::Targets`], each answered by one [`Reply`] with the same id, and
//!   [`Request::Cancel`] for the call in progress.
//!
//! Reading a line never guesses: a message that is not JSON, names an unknown
//! request or reply, lacks a field, has one of the wrong type or one more is a
//! [`ProtocolError`] naming the field. The line bounds are the readers' (see
//! [`super::resolver_child::MAX_LINE`]).
#![forbid(unsafe_code)]

use std::{fmt, io::Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

pub use provtarget_abi::host::Answer as AnswerRecord;

use crate::resolver::Settings;

/// The first field of every handshake: a child that does not send it is not a
/// provtarget helper (e.g. the wrong executable was named), whatever it prints.
pub const MAGIC: &str = "provtarget-plugin-child-7c1e4b9a";

/// The version of the messages exchanged with a child. 2: a resolver child is handed
/// its library on its socket (the `load` line with the descriptor attached) instead
/// of at start; 1 had it as inherited descriptor 3 and `__serve PATH`. 3: a
/// `targets` reply carries the answer's provenance (interface 1.2). 4: the typed
/// messages of this module (externally tagged, the report nested in the handshake,
/// a `targets` answer carrying the answer record whole). 5: `hold` and `go`, a library
/// handed over while the host still verifies its signature.
pub const PROTOCOL: u64 = 5;

/// A child's first line: who it is and what it loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handshake {
    /// Always [`MAGIC`].
    pub magic: String,
    /// Always [`PROTOCOL`].
    pub protocol: u64,
    /// The verdict on the library and the plugin's information, as
    /// [`super::wire::report`] wrote it (read back by [`super::wire::parse`]).
    pub report: Value,
}

/// What the host asks a resolver child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The first request: load the library at `path` (its name in messages), whose
    /// sealed copy is attached to the line (`SCM_RIGHTS`).
    Load {
        /// The library's path.
        path: String,
    },
    /// The first request, instead of `load`, while the host still verifies the
    /// library's signature: check the sealed copy attached (as `load` does before
    /// `dlopen`) and wait, running none of its code, for [`Request::Go`] (then load
    /// it); anything else, or the end of the socket, ends the child unloaded.
    Hold {
        /// The library's path.
        path: String,
    },
    /// After [`Request::Hold`]: the host verified the library; load it.
    Go,
    /// Call the resolver's `configure` with these `(key, value)` pairs.
    Configure {
        /// Echoed by the reply.
        id: u64,
        /// The plugin's configuration.
        config: Settings,
    },
    /// Call the resolver's `targets`.
    Targets {
        /// Echoed by the reply.
        id: u64,
    },
    /// Cancel the call in progress (its reply is the resolver's answer when told).
    Cancel,
}

/// A resolver child's answer to the request with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// What the call returned.
    pub answer: Answer,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// `configure` succeeded: the provisioning settings to report.
    Configured(Settings),
    /// `targets` succeeded.
    Targets {
        /// The targets, unvalidated (the host reads them as any answer).
        list: Vec<String>,
        /// The rest of the answer (interface 1.2 on: its provenance), every text
        /// already bounded and escaped: the record whole, so a new field of it
        /// crosses with no edit here.
        answer: AnswerRecord,
    },
    /// The call failed: the resolver's one-line error.
    Error(String),
}

/// A line that is not the message expected, saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first line has no [`MAGIC`]: not a provtarget helper.
    NotAHelper,
    /// The handshake names another protocol version (as it wrote it).
    Version(String),
    /// Not the message expected: which message, the field at fault (`.` for the
    /// message as a whole) and serde's words.
    Malformed {
        /// `handshake`, `request`, `reply`.
        message: &'static str,
        /// The field's path, as `answer.targets.list`.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// The handshake's report does not read as a verdict (its reader's words).
    Report(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::NotAHelper => {
                f.write_str("the child is not a provtarget helper (no handshake)")
            }
            ProtocolError::Version(theirs) => write!(
                f,
                "the child speaks protocol {theirs}, this host {PROTOCOL}; use the same \
                 provtarget build"
            ),
            ProtocolError::Malformed {
                message,
                field,
                why,
            } => write!(f, "a malformed {message}: field `{field}`: {why}"),
            ProtocolError::Report(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Reads one message of type `T` from `line`, naming the field at fault when it is
/// not one.
fn decode<T: DeserializeOwned>(message: &'static str, line: &[u8]) -> Result<T, ProtocolError> {
    let mut reader = serde_json::Deserializer::from_slice(line);
    let value =
        serde_path_to_error::deserialize(&mut reader).map_err(|e| ProtocolError::Malformed {
            message,
            field: e.path().to_string(),
            why: cut_position(&e.inner().to_string()),
        })?;
    reader.end().map_err(|e| ProtocolError::Malformed {
        message,
        field: ".".into(),
        why: cut_position(&e.to_string()),
    })?;
    Ok(value)
}

/// serde_json's words without their ` at line 1 column 20`.
fn cut_position(why: &str) -> String {
    match why.rfind(" at line ") {
        Some(at) => why[..at].to_string(),
        None => why.to_string(),
    }
}

impl Handshake {
    /// The handshake of a child that loaded a library and judged it `report`.
    pub fn new(report: Value) -> Handshake {
        Handshake {
            magic: MAGIC.into(),
            protocol: PROTOCOL,
            report,
        }
    }

    /// Reads a child's first line: one without [`MAGIC`] is from no provtarget
    /// helper, one of another [`PROTOCOL`] from another build (said before any other
    /// fault, in one line).
    pub fn decode(line: &[u8]) -> Result<Handshake, ProtocolError> {
        let value: Value = serde_json::from_slice(line).map_err(|_| ProtocolError::NotAHelper)?;
        if value.get("magic").and_then(Value::as_str) != Some(MAGIC) {
            return Err(ProtocolError::NotAHelper);
        }
        if value.get("protocol").and_then(Value::as_u64) != Some(PROTOCOL) {
            let theirs = value.get("protocol").cloned().unwrap_or_default();
            return Err(ProtocolError::Version(theirs.to_string()));
        }
        decode("handshake", line)
    }
}

impl Request {
    /// Reads a request line.
    pub fn decode(line: &[u8]) -> Result<Request, ProtocolError> {
        decode("request", line)
    }

    /// The request's kind, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Load { .. } => "load",
            Request::Hold { .. } => "hold",
            Request::Go => "go",
            Request::Configure { .. } => "configure",
            Request::Targets { .. } => "targets",
            Request::Cancel => "cancel",
        }
    }

    /// Whether `answer` is of a kind this request may get: its own, or an error.
    pub fn answered_by(&self, answer: &Answer) -> bool {
        matches!(
            (self, answer),
            (_, Answer::Error(_))
                | (Request::Configure { .. }, Answer::Configured(_))
                | (Request::Targets { .. }, Answer::Targets { .. })
        )
    }
}

impl Reply {
    /// Reads a reply line.
    pub fn decode(line: &[u8]) -> Result<Reply, ProtocolError> {
        decode("reply", line)
    }
}

impl Answer {
    /// The answer's kind, as messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Configured(_) => "configured",
            Answer::Targets { .. } => "targets",
            Answer::Error(_) => "error",
        }
    }
}

/// Writes `message` as one line.
pub fn send(mut to: impl Write, message: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    to.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes `message` as [`send`] does and reads it back with `read`.
    fn round_trip<T: Serialize + PartialEq + fmt::Debug>(
        message: T,
        read: fn(&[u8]) -> Result<T, ProtocolError>,
    ) {
        let mut line = Vec::new();
        send(&mut line, &message).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(read(&line[..line.len() - 1]).unwrap(), message);
    }

    #[test]
    fn every_message_survives_the_round_trip() {
        let report = serde_json::json!({"verdict": "loaded", "plugin": {"name": "p\n\"q"}});
        round_trip(Handshake::new(report), Handshake::decode);
        let config = vec![("a.b".to_string(), "x\ny\u{0}".to_string())];
        for request in [
            Request::Load {
                path: "/usr/lib/choria/provtarget/libx.so".into(),
            },
            Request::Configure {
                id: 1,
                config: config.clone(),
            },
            Request::Configure {
                id: 2,
                config: Vec::new(),
            },
            Request::Targets { id: u64::MAX },
            Request::Cancel,
            Request::Hold {
                path: "/usr/lib/choria/provtarget/liby.so".into(),
            },
            Request::Go,
        ] {
            round_trip(request, Request::decode);
        }
        for answer in [
            Answer::Configured(config),
            Answer::Targets {
                list: vec!["nats://b:4222".into(), "b2:4222".into()],
                answer: {
                    let mut answer = AnswerRecord::default();
                    answer.provenance = Some("etcd key /choria/prov revision 42".into());
                    answer
                },
            },
            Answer::Targets {
                list: Vec::new(),
                answer: AnswerRecord::default(),
            },
            Answer::Error("context canceled".into()),
        ] {
            round_trip(Reply { id: 7, answer }, Reply::decode);
        }
    }

    /// The variant lists above are every variant: a new one fails to compile here
    /// until it is added to the round trip.
    #[test]
    fn the_round_trip_lists_every_variant() {
        let kinds = |r: &Request| match r {
            Request::Load { .. }
            | Request::Hold { .. }
            | Request::Go
            | Request::Configure { .. }
            | Request::Targets { .. }
            | Request::Cancel => r.kind(),
        };
        assert_eq!(kinds(&Request::Cancel), "cancel");
        let answer = |a: &Answer| match a {
            Answer::Configured(_) | Answer::Targets { .. } | Answer::Error(_) => a.kind(),
        };
        assert_eq!(answer(&Answer::Error(String::new())), "error");
    }

    /// A reader of one kind of message, its value dropped.
    type Reader = fn(&[u8]) -> Result<(), ProtocolError>;

    #[test]
    fn a_malformed_message_is_refused_naming_the_field() {
        let refused = |line: &str, read: Reader| read(line.as_bytes()).unwrap_err().to_string();
        let reply: Reader = |l| Reply::decode(l).map(drop);
        let request: Reader = |l| Request::decode(l).map(drop);
        let cases: [(&str, Reader, &str); 7] = [
            (
                r#"{"id": "7", "answer": {"error": "x"}}"#,
                reply,
                "a malformed reply: field `id`: invalid type: string \"7\", expected u64",
            ),
            (
                r#"{"id": 7, "answer": {"targets": {"list": [1], "answer": {"provenance": null}}}}"#,
                reply,
                "field `answer.targets.list[0]`: invalid type: integer `1`",
            ),
            (
                r#"{"id": 7, "answer": {"targets": {"answer": {"provenance": null}}}}"#,
                reply,
                "field `answer.targets`: missing field `list`",
            ),
            (
                r#"{"id": 7, "answer": {"fine": []}}"#,
                reply,
                "field `answer`: unknown variant `fine`",
            ),
            (
                r#"{"id": 7, "answer": {"error": "x"}, "extra": 1}"#,
                reply,
                "unknown field `extra`",
            ),
            (
                r#"{"configure": {"id": 1, "config": [["k"]]}}"#,
                request,
                "a malformed request: field `configure.config[0]`: invalid length 1",
            ),
            (
                r#"{"targets": {"id": 1}} {"cancel": null}"#,
                request,
                "field `.`: trailing characters",
            ),
        ];
        for (line, read, expected) in cases {
            let err = refused(line, read);
            assert!(err.contains(expected), "{line}: {err}");
            assert!(!err.contains('\n') && !err.contains(" at line "), "{err}");
        }
    }

    #[test]
    fn a_handshake_without_the_cookie_or_of_another_version_is_refused_in_one_line() {
        let err = Handshake::decode(b"hello, I am some other program").unwrap_err();
        assert_eq!(err, ProtocolError::NotAHelper);
        assert_eq!(
            err.to_string(),
            "the child is not a provtarget helper (no handshake)"
        );
        let line = format!(r#"{{"protocol": {PROTOCOL}, "report": {{}}}}"#);
        assert_eq!(
            Handshake::decode(line.as_bytes()),
            Err(ProtocolError::NotAHelper)
        );
        let other = PROTOCOL + 1;
        let line = format!(r#"{{"magic": "{MAGIC}", "protocol": {other}, "report": {{}}}}"#);
        let err = Handshake::decode(line.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the child speaks protocol {other}, this host {PROTOCOL}; use the same \
                 provtarget build"
            )
        );
        let line = format!(r#"{{"magic": "{MAGIC}", "protocol": {PROTOCOL}}}"#);
        let err = Handshake::decode(line.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("missing field `report`"), "{err}");
    }

    #[test]
    fn a_reply_of_the_wrong_kind_does_not_answer_a_request() {
        let targets = Request::Targets { id: 1 };
        let configure = Request::Configure {
            id: 1,
            config: Vec::new(),
        };
        let configured = Answer::Configured(Vec::new());
        assert!(configure.answered_by(&configured));
        assert!(!targets.answered_by(&configured));
        assert!(targets.answered_by(&Answer::Error("e".into())));
    }
}
