//! What an etcd error answer means, from its HTTP status and the gRPC code in its JSON
//! body (`{"error": "...", "code": N, "message": "..."}`; a watch stream's error
//! carries `grpc_code`), never from the wording of the message.
//!
//! etcd uses one gRPC code for several of its errors (InvalidArgument for an empty
//! user name, a wrong password and a stale auth revision; FailedPrecondition for "not
//! leader" and "authentication is not enabled"). Within such a code the error is told
//! by etcd's exported error value (`api/v3rpc/rpctypes`), compared whole, as etcd's own
//! Go client does (`rpctypes.Error` maps the description to the error).
//!
//! One answer is not etcd's: plain HTTP sent to a TLS port gets Go's TLS server's fixed
//! plain-text reply, status 400 and no JSON. That reply is recognised by its fixed text
//! (the one documented fallback here).

use serde_json::Value;

/// gRPC status codes etcd answers with (google.golang.org/grpc/codes).
mod code {
    pub const CANCELLED: u64 = 1;
    pub const UNKNOWN: u64 = 2;
    pub const INVALID_ARGUMENT: u64 = 3;
    pub const DEADLINE_EXCEEDED: u64 = 4;
    pub const NOT_FOUND: u64 = 5;
    pub const PERMISSION_DENIED: u64 = 7;
    pub const RESOURCE_EXHAUSTED: u64 = 8;
    pub const FAILED_PRECONDITION: u64 = 9;
    pub const ABORTED: u64 = 10;
    pub const INTERNAL: u64 = 13;
    pub const UNAVAILABLE: u64 = 14;
    pub const DATA_LOSS: u64 = 15;
    pub const UNAUTHENTICATED: u64 = 16;
}

/// etcd's error values (rpctypes) that share a code with others.
mod etcd {
    pub const USER_EMPTY: &str = "etcdserver: user name is empty";
    pub const USER_NOT_FOUND: &str = "etcdserver: user name not found";
    pub const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
    pub const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";
    pub const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
    pub const NOT_LEADER: &str = "etcdserver: not leader";
}

/// Go's net/http answer to plain HTTP on a TLS port (status 400, text/plain).
const GO_TLS_PORT_REPLY: &str = "Client sent an HTTP request to an HTTPS server.";

/// The kind of an error answer, which decides what the plugin does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Plain http was spoken to a TLS port: the endpoint wants https://.
    TlsPort,
    /// This member cannot serve now (no leader, stopping, overloaded, timed out,
    /// internal error, any 5xx): another member may.
    Unavailable,
    /// The path is not served here (404 without an etcd code): not an etcd 3.4+
    /// member, or a proxy in front of it; another member may serve it.
    NoSuchPath,
    /// The auth token is no longer valid (Unauthenticated, or etcd's auth revision
    /// moved on): authenticate again.
    InvalidToken,
    /// Auth is on and the request carried no user.
    NoUser,
    /// The user does not exist.
    UnknownUser,
    /// The user name or password was refused.
    AuthFailed,
    /// Authentication is off in this cluster: send no token.
    AuthNotEnabled,
    /// The user may not do this (PermissionDenied).
    PermissionDenied,
    /// Anything else the cluster said (invalid argument, not found, ...).
    Other,
}

impl Refusal {
    /// Whether the next member should be asked (true), or the answer is the
    /// cluster's and another member would repeat it (false).
    pub fn fails_over(self) -> bool {
        matches!(
            self,
            Refusal::TlsPort | Refusal::Unavailable | Refusal::NoSuchPath
        )
    }
}

/// An error answer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorAnswer {
    /// What it means.
    pub kind: Refusal,
    /// The gRPC code, when the body had one.
    pub code: Option<u64>,
    /// The message for people: the body's `message` (or `error`), or the start of a
    /// body that is not JSON, or `HTTP status N`.
    pub text: String,
}

impl ErrorAnswer {
    /// Classifies a non-200 answer by `status` and the code in `body`.
    pub fn parse(status: u16, body: &[u8]) -> ErrorAnswer {
        let json = serde_json::from_slice::<Value>(body).ok();
        let (code, message) = match &json {
            Some(v) => {
                // A watch stream's error wraps the status: {"error": {"grpc_code": ..}}.
                let v = match v.get("error") {
                    Some(e) if e.is_object() => e,
                    _ => v,
                };
                (grpc_code(v), error_text(v))
            }
            None => (None, plain_text(body)),
        };
        let text = if message.is_empty() {
            format!("HTTP status {status}")
        } else {
            message.clone()
        };
        let kind = if json.is_none() && status == 400 && message == GO_TLS_PORT_REPLY {
            Refusal::TlsPort
        } else {
            match code {
                Some(code) => by_code(code, &message),
                None => by_status(status),
            }
        };
        ErrorAnswer { kind, code, text }
    }

    /// Classifies an error object of a watch stream (`{"grpc_code": N, "message": ..}`
    /// or `{"code": N, ...}`), which comes with status 200.
    pub fn of_stream(error: &Value) -> ErrorAnswer {
        let message = error_text(error);
        let code = grpc_code(error);
        ErrorAnswer {
            kind: code.map_or(Refusal::Unavailable, |c| by_code(c, &message)),
            code,
            text: message,
        }
    }
}

fn by_code(code: u64, message: &str) -> Refusal {
    match code {
        code::UNAVAILABLE
        | code::DEADLINE_EXCEEDED
        | code::RESOURCE_EXHAUSTED
        | code::CANCELLED
        | code::UNKNOWN
        | code::ABORTED
        | code::INTERNAL
        | code::DATA_LOSS => Refusal::Unavailable,
        code::UNAUTHENTICATED => Refusal::InvalidToken,
        code::PERMISSION_DENIED => Refusal::PermissionDenied,
        code::INVALID_ARGUMENT => match message {
            etcd::USER_EMPTY => Refusal::NoUser,
            etcd::AUTH_FAILED => Refusal::AuthFailed,
            etcd::AUTH_OLD_REVISION => Refusal::InvalidToken,
            _ => Refusal::Other,
        },
        code::FAILED_PRECONDITION => match message {
            etcd::NOT_LEADER => Refusal::Unavailable,
            etcd::AUTH_NOT_ENABLED => Refusal::AuthNotEnabled,
            etcd::USER_NOT_FOUND => Refusal::UnknownUser,
            _ => Refusal::Other,
        },
        code::NOT_FOUND => Refusal::Other,
        _ => Refusal::Other,
    }
}

fn by_status(status: u16) -> Refusal {
    match status {
        500.. => Refusal::Unavailable,
        404 => Refusal::NoSuchPath,
        429 | 408 => Refusal::Unavailable,
        _ => Refusal::Other,
    }
}

/// `code` (the gateway's unary errors) or `grpc_code` (a stream's), a number.
fn grpc_code(v: &Value) -> Option<u64> {
    v.get("code")
        .or_else(|| v.get("grpc_code"))
        .and_then(Value::as_u64)
}

/// The `message` (or `error`) of an error object, printable, at most 300 characters.
pub(crate) fn error_text(v: &Value) -> String {
    let text = v
        .get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| v.to_string());
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The start of a body that is not JSON, on one line.
fn plain_text(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(status: u16, body: &str) -> Refusal {
        ErrorAnswer::parse(status, body.as_bytes()).kind
    }

    fn etcd(code: u64, message: &str) -> String {
        json!({"error": message, "code": code, "message": message}).to_string()
    }

    #[test]
    fn codes_decide_not_words() {
        // The gateway's real answers (etcd 3.4/3.5), status as grpc-gateway maps it.
        assert_eq!(
            kind(401, &etcd(16, "etcdserver: invalid auth token")),
            Refusal::InvalidToken
        );
        assert_eq!(
            kind(403, &etcd(7, "etcdserver: permission denied")),
            Refusal::PermissionDenied
        );
        assert_eq!(
            kind(503, &etcd(14, "etcdserver: no leader")),
            Refusal::Unavailable
        );
        assert_eq!(
            kind(503, &etcd(14, "etcdserver: request timed out")),
            Refusal::Unavailable
        );
        assert_eq!(
            kind(429, &etcd(8, "etcdserver: too many requests")),
            Refusal::Unavailable
        );
        assert_eq!(
            kind(504, &etcd(4, "context deadline exceeded")),
            Refusal::Unavailable
        );
        assert_eq!(kind(400, &etcd(3, etcd::USER_EMPTY)), Refusal::NoUser);
        assert_eq!(kind(400, &etcd(3, etcd::AUTH_FAILED)), Refusal::AuthFailed);
        assert_eq!(
            kind(400, &etcd(3, etcd::AUTH_OLD_REVISION)),
            Refusal::InvalidToken
        );
        assert_eq!(
            kind(400, &etcd(9, etcd::AUTH_NOT_ENABLED)),
            Refusal::AuthNotEnabled
        );
        assert_eq!(
            kind(400, &etcd(9, etcd::USER_NOT_FOUND)),
            Refusal::UnknownUser
        );
        assert_eq!(kind(400, &etcd(9, etcd::NOT_LEADER)), Refusal::Unavailable);
        assert_eq!(
            kind(400, &etcd(3, "etcdserver: key is not provided")),
            Refusal::Other
        );
        // The code decides, not the words: "timeout" in an InvalidArgument message does
        // not make the member unavailable, and an unknown message under Unavailable
        // still does.
        assert_eq!(kind(400, &etcd(3, "bad timeout value")), Refusal::Other);
        assert_eq!(kind(503, &etcd(14, "something new")), Refusal::Unavailable);
        assert_eq!(kind(400, &etcd(7, "no leader")), Refusal::PermissionDenied);
    }

    #[test]
    fn without_a_code_the_status_decides() {
        assert_eq!(kind(503, "{}"), Refusal::Unavailable);
        assert_eq!(kind(502, "<html>Bad Gateway</html>"), Refusal::Unavailable);
        assert_eq!(kind(404, "404 page not found"), Refusal::NoSuchPath);
        assert_eq!(kind(401, "no"), Refusal::Other);
        assert_eq!(kind(400, "{\"message\": \"unavailable\"}"), Refusal::Other);
        assert_eq!(kind(400, GO_TLS_PORT_REPLY), Refusal::TlsPort);
        assert_eq!(
            kind(400, "\n Client sent an HTTP request to an HTTPS server.\n"),
            Refusal::TlsPort
        );
        // The same words inside etcd's JSON are not Go's TLS reply.
        assert_eq!(
            kind(400, &json!({"message": GO_TLS_PORT_REPLY}).to_string()),
            Refusal::Other
        );
    }

    #[test]
    fn which_kinds_fail_over() {
        for k in [Refusal::TlsPort, Refusal::Unavailable, Refusal::NoSuchPath] {
            assert!(k.fails_over(), "{k:?}");
        }
        for k in [
            Refusal::InvalidToken,
            Refusal::NoUser,
            Refusal::UnknownUser,
            Refusal::AuthFailed,
            Refusal::AuthNotEnabled,
            Refusal::PermissionDenied,
            Refusal::Other,
        ] {
            assert!(!k.fails_over(), "{k:?}");
        }
    }

    #[test]
    fn texts_and_codes_are_kept() {
        let a = ErrorAnswer::parse(401, etcd(16, "etcdserver: invalid auth token").as_bytes());
        assert_eq!(a.code, Some(16));
        assert_eq!(a.text, "etcdserver: invalid auth token");
        let a = ErrorAnswer::parse(503, b"");
        assert_eq!((a.code, a.text.as_str()), (None, "HTTP status 503"));
        assert_eq!(
            ErrorAnswer::parse(500, b"<html>\n oops </html>").text,
            "<html> oops </html>"
        );
        // A watch stream's error.
        let stream = json!({"grpc_code": 16, "http_code": 401, "message": "etcdserver: invalid auth token", "http_status": "Unauthorized"});
        let a = ErrorAnswer::of_stream(&stream);
        assert_eq!((a.kind, a.code), (Refusal::InvalidToken, Some(16)));
        let a = ErrorAnswer::parse(200, json!({"error": stream}).to_string().as_bytes());
        assert_eq!(a.kind, Refusal::InvalidToken);
        assert_eq!(
            ErrorAnswer::of_stream(&json!({"message": "eh"})).kind,
            Refusal::Unavailable
        );
    }
}
