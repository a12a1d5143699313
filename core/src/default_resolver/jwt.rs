//! The provisioning JWT: decoded *without* verifying its signature (as Choria does, the
//! token only carries defaults; the provisioner verifies it later) and validated with
//! Choria's error texts.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use serde_json::{Map, Value};

/// The provisioning claims Choria reads (`tokens.ProvisioningClaims`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProvClaims {
    /// `cht`: the provisioning token.
    pub token: String,
    /// `chs`: whether provisioning uses TLS.
    pub secure: bool,
    /// `chu`: comma-separated broker URLs.
    pub urls: String,
    /// `chsrv`: the SRV domain.
    pub srv_domain: String,
    /// `chpd`: whether the server provisions by default.
    pub provision_by_default: bool,
    /// `chrd`: registration data.
    pub registration_data: String,
    /// `chf`: facts.
    pub facts: String,
    /// `chusr`: broker user.
    pub broker_user: String,
    /// `chpwd`: broker password.
    pub broker_password: String,
    /// `extensions`: free-form extension claims.
    pub extensions: Option<Map<String, Value>>,
}

/// The largest provisioning JWT file read (64 KiB). A real token is one or two
/// kilobytes; a larger file is refused before it is read.
pub const MAX_JWT_FILE: u64 = 64 << 10;

/// What reading the JWT file gave.
#[derive(Debug)]
pub(crate) enum JwtFile {
    /// There is no file at the path: normal, the JWT is optional.
    Missing,
    /// A token whose claims passed Choria's checks.
    Claims(ProvClaims),
    /// Why the file cannot be used (one line, without the path: the caller names it).
    Refused(String),
}

/// Reads the JWT file at `path` without blocking (a FIFO is refused at once), never
/// more than [`MAX_JWT_FILE`] bytes (a device such as `/dev/zero` is refused from its
/// type), and decodes it. A UTF-8 byte-order mark before the token is ignored.
pub(crate) fn read_file(path: &std::path::Path) -> JwtFile {
    use provtarget_loader::InputError;
    const FIX: &str =
        "point plugin.provtarget.jwt_file at the provisioning JWT, or set it empty to read none";
    let bytes = match provtarget_loader::read_bounded(path, MAX_JWT_FILE) {
        Ok(input) => input.bytes,
        Err(InputError::NotFound) => return JwtFile::Missing,
        // Reads as empty, as it always did: an empty token.
        Err(InputError::NullDevice) => Vec::new(),
        Err(e @ InputError::Io(_)) => {
            return JwtFile::Refused(format!("the file {e}; check its permissions"))
        }
        Err(e) => return JwtFile::Refused(format!("the file {e}; {FIX}")),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return JwtFile::Refused(format!(
            "jwt parse error: the file is not UTF-8 text; {FIX}"
        ));
    };
    match parse_unverified(text.strip_prefix('\u{feff}').unwrap_or(&text)) {
        Ok(claims) => JwtFile::Claims(claims),
        Err(reason) => JwtFile::Refused(reason),
    }
}

/// base64url as JWTs use it; padding is optional (JWTs omit it, some tools add it).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes `text` (a compact JWT, surrounding white space allowed) and validates the
/// claims. Errors are one line: `jwt parse error: …` for a token that cannot be read,
/// or Choria's `no auth token`, `no srv domain or urls`, `both srv domain and URLs
/// supplied`.
pub(crate) fn parse_unverified(text: &str) -> Result<ProvClaims, String> {
    let claims = decode(text.trim()).map_err(|e| format!("jwt parse error: {e}"))?;
    validate(&claims)?;
    Ok(claims)
}

fn decode(token: &str) -> Result<ProvClaims, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(format!(
            "token contains an invalid number of segments: expected 3 dot-separated parts, found {}",
            parts.len()
        ));
    }
    segment_object(parts[0], "header")?;
    let payload = segment_object(parts[1], "payload")?;

    let string = |claim: &str| -> Result<String, String> {
        match payload.get(claim) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "claim {claim} must be a string, found {}",
                json_kind(other)
            )),
        }
    };
    let boolean = |claim: &str| -> Result<bool, String> {
        match payload.get(claim) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!(
                "claim {claim} must be true or false, found {}",
                json_kind(other)
            )),
        }
    };
    let extensions = match payload.get("extensions") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(other) => {
            return Err(format!(
                "claim extensions must be an object, found {}",
                json_kind(other)
            ))
        }
    };

    Ok(ProvClaims {
        token: string("cht")?,
        secure: boolean("chs")?,
        urls: string("chu")?,
        srv_domain: string("chsrv")?,
        provision_by_default: boolean("chpd")?,
        registration_data: string("chrd")?,
        facts: string("chf")?,
        broker_user: string("chusr")?,
        broker_password: string("chpwd")?,
        extensions,
    })
}

/// Decodes one base64url segment holding a JSON object.
fn segment_object(segment: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = BASE64URL
        .decode(segment)
        .map_err(|e| format!("{what} is not valid base64url: {e}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "{what} must be a JSON object, found {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Choria's checks, in Choria's order.
fn validate(claims: &ProvClaims) -> Result<(), String> {
    if claims.token.is_empty() {
        return Err("no auth token".into());
    }
    if claims.srv_domain.is_empty() && claims.urls.is_empty() {
        return Err("no srv domain or urls".into());
    }
    if !claims.srv_domain.is_empty() && !claims.urls.is_empty() {
        return Err("both srv domain and URLs supplied".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_every_claim() {
        let c = parse_unverified(&jwt(
            r#"{"cht":"t","chs":true,"chu":"a:1,b:2","chpd":true,"chrd":"r","chf":"f",
                "chusr":"u","chpwd":"p","extensions":{"x":1},"exp":1}"#,
        ))
        .unwrap();
        assert_eq!(c.token, "t");
        assert!(c.secure && c.provision_by_default);
        assert_eq!(c.urls, "a:1,b:2");
        assert_eq!((c.registration_data.as_str(), c.facts.as_str()), ("r", "f"));
        assert_eq!(
            (c.broker_user.as_str(), c.broker_password.as_str()),
            ("u", "p")
        );
        assert_eq!(c.extensions.unwrap()["x"], 1);
    }

    #[test]
    fn padding_is_optional() {
        // A payload whose encoding needs padding, written both ways.
        let payload = r#"{"cht":"t","chsrv":"example.net" }"#;
        assert_ne!(payload.len() % 3, 0);
        let header = URL_SAFE_NO_PAD.encode("{}");
        for encoded in [URL_SAFE.encode(payload), URL_SAFE_NO_PAD.encode(payload)] {
            let c = parse_unverified(&format!("{header}.{encoded}.")).unwrap();
            assert_eq!(c.srv_domain, "example.net");
        }
    }

    #[test]
    fn choria_validation_texts() {
        assert_eq!(
            parse_unverified(&jwt(r#"{"chu":"a:1"}"#)).unwrap_err(),
            "no auth token"
        );
        assert_eq!(
            parse_unverified(&jwt(r#"{"cht":"t"}"#)).unwrap_err(),
            "no srv domain or urls"
        );
        assert_eq!(
            parse_unverified(&jwt(r#"{"cht":"t","chu":"a:1","chsrv":"d"}"#)).unwrap_err(),
            "both srv domain and URLs supplied"
        );
    }

    #[test]
    fn unreadable_tokens() {
        let err = parse_unverified("not a jwt").unwrap_err();
        assert!(
            err.starts_with("jwt parse error: token contains an invalid number of segments"),
            "{err}"
        );
        let err = parse_unverified("e30.!!!.sig").unwrap_err();
        assert!(
            err.starts_with("jwt parse error: payload is not valid base64url"),
            "{err}"
        );
        let err =
            parse_unverified(&format!("e30.{}.sig", URL_SAFE_NO_PAD.encode("{nope"))).unwrap_err();
        assert!(
            err.starts_with("jwt parse error: payload is not valid JSON"),
            "{err}"
        );
        let err =
            parse_unverified(&format!("e30.{}.sig", URL_SAFE_NO_PAD.encode("[1]"))).unwrap_err();
        assert_eq!(
            err,
            "jwt parse error: payload must be a JSON object, found an array"
        );
        let err = parse_unverified(&jwt(r#"{"cht":"t","chu":"a:1","chs":"yes"}"#)).unwrap_err();
        assert_eq!(
            err,
            "jwt parse error: claim chs must be true or false, found a string"
        );
        let err = parse_unverified(&jwt(r#"{"cht":5}"#)).unwrap_err();
        assert_eq!(
            err,
            "jwt parse error: claim cht must be a string, found a number"
        );
        let err = parse_unverified(&format!("x.{}.s", URL_SAFE_NO_PAD.encode("{}"))).unwrap_err();
        assert!(
            err.starts_with("jwt parse error: header is not valid base64url"),
            "{err}"
        );
    }

    #[test]
    fn the_file_is_read_without_blocking_and_with_a_bound() {
        let tmp = provtarget_testsupport::TempDir::new("jwt");
        let dir = tmp.path().to_path_buf();
        let refused = |path: &std::path::Path| match read_file(path) {
            JwtFile::Refused(reason) => reason,
            other => panic!("{other:?}"),
        };
        let fifo = tmp.fifo("fifo.jwt");
        assert!(refused(&fifo).starts_with(
            "the file is a FIFO (named pipe), not a regular file; point plugin.provtarget.jwt_file at"
        ));
        assert!(refused(std::path::Path::new("/dev/zero"))
            .starts_with("the file is a character device, not a regular file"));
        let big = dir.join("big.jwt");
        std::fs::write(&big, vec![b'a'; MAX_JWT_FILE as usize + 1]).unwrap();
        assert!(refused(&big)
            .starts_with("the file is 65537 bytes, more than the limit of 65536 bytes"));
        assert!(matches!(
            read_file(&dir.join("missing.jwt")),
            JwtFile::Missing
        ));
        // A byte-order mark before the token is ignored.
        let bom = dir.join("bom.jwt");
        std::fs::write(
            &bom,
            format!("\u{feff}{}\n", jwt(r#"{"cht":"t","chu":"b:1"}"#)),
        )
        .unwrap();
        match read_file(&bom) {
            JwtFile::Claims(c) => assert_eq!(c.urls, "b:1"),
            other => panic!("{other:?}"),
        }
    }

    mod properties {
        //! Property tests: the JWT reader as a fuzz target (256 cases each in the
        //! normal suite; `PROPTEST_CASES=100000` for a longer run).
        use super::*;
        use proptest::prelude::*;

        fn check_reason(reason: &str) -> Result<(), TestCaseError> {
            prop_assert!(!reason.contains('\n'), "{:?}", reason);
            prop_assert!(reason.len() <= 300, "{} bytes: {:?}", reason.len(), reason);
            Ok(())
        }

        /// A JSON object of claims with arbitrary kinds of values.
        fn claims() -> impl Strategy<Value = String> {
            let value = prop_oneof![
                Just("null".to_string()),
                any::<bool>().prop_map(|b| b.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
                Just("[1,{}]".to_string()),
                Just("{\"a\":1}".to_string()),
            ];
            let key = prop_oneof![
                Just("cht"),
                Just("chs"),
                Just("chu"),
                Just("chsrv"),
                Just("chpd"),
                Just("chrd"),
                Just("chf"),
                Just("chusr"),
                Just("chpwd"),
                Just("extensions"),
                Just("exp"),
            ];
            proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
                let body: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            })
        }

        proptest! {
            // 256 cases (proptest's default), or PROPTEST_CASES from the environment.
            #![proptest_config(ProptestConfig::default())]

            #[test]
            fn any_text_is_decoded_or_refused_in_one_bounded_line(text in any::<String>()) {
                if let Err(reason) = parse_unverified(&text) {
                    check_reason(&reason)?;
                }
            }

            #[test]
            fn any_segments_are_decoded_or_refused_in_one_bounded_line(
                header in proptest::collection::vec(any::<u8>(), 0..64),
                payload in proptest::collection::vec(any::<u8>(), 0..256),
                dots in 0usize..5,
            ) {
                let mut token = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
                token.push_str(&".sig".repeat(dots));
                if let Err(reason) = parse_unverified(&token) {
                    check_reason(&reason)?;
                }
            }

            #[test]
            fn any_claims_are_accepted_only_when_choria_would(payload in claims()) {
                match parse_unverified(&jwt(&payload)) {
                    Ok(c) => {
                        prop_assert!(!c.token.is_empty());
                        prop_assert!(c.urls.is_empty() != c.srv_domain.is_empty());
                    }
                    Err(reason) => check_reason(&reason)?,
                }
            }
        }
    }
}
