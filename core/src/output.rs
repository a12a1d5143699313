//! The JSON documents of `provtarget targets --json`, with their schema names.
//!
//! Every JSON document the command prints carries a `schema` field naming its shape
//! and version; the JSON Schema files in the repository's `schemas/` folder describe
//! them (`targets.schema.json`, `buildinfo.schema.json`,
//! `plugins-check.schema.json`). A version changes only when a field is removed or
//! changes meaning; fields are added without one.
//!
//! ```
//! use provtarget::{config::{keys, ConfigBuilder}, host::Host, output, resolver::CancelToken};
//!
//! let config = ConfigBuilder::new()
//!     .flag(keys::DIRECTORIES, "/nonexistent/provtarget")
//!     .flag(keys::JWT_FILE, "")
//!     .flag(keys::BROKER_URLS, "prov1.example.net:4222")
//!     .build();
//! let host = Host::start(config);
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let result = runtime.block_on(host.resolve(&CancelToken::new()));
//! let doc = output::targets_json(&result);
//! assert_eq!(doc["schema"], output::TARGETS_SCHEMA);
//! assert_eq!(doc["ok"], true);
//! assert_eq!(doc["servers"][0], "nats://prov1.example.net:4222");
//! assert_eq!(doc["chain"][0]["state"], "answered");
//! assert!(doc["error"].is_null());
//! ```
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use provtarget_abi::host::Answer;

use crate::host::{ChainEntry, Failure, Resolution, ResolveError};

/// The `schema` of `provtarget targets --json` (`schemas/targets.schema.json`).
pub const TARGETS_SCHEMA: &str = "provtarget/targets/1";
/// The `schema` of `provtarget buildinfo --json` (`schemas/buildinfo.schema.json`).
pub const BUILDINFO_SCHEMA: &str = "provtarget/buildinfo/1";
/// The `schema` of `provtarget plugins check --json`
/// (`schemas/plugins-check.schema.json`).
pub const PLUGINS_CHECK_SCHEMA: &str = "provtarget/plugins-check/1";

/// A stable name for a failure's kind, for JSON consumers: `no-resolver`,
/// `cancelled`, `deadline-exceeded`, `no-servers` or `failed`.
pub fn failure_kind(f: &Failure) -> &'static str {
    match f {
        Failure::NoResolver => "no-resolver",
        Failure::Cancelled { .. } => "cancelled",
        Failure::DeadlineExceeded { .. } => "deadline-exceeded",
        Failure::NoServers { .. } => "no-servers",
        Failure::Failed { .. } => "failed",
    }
}

fn failed_json(failed: &[Failure]) -> Vec<Value> {
    failed
        .iter()
        .map(|f| json!({"resolver": f.resolver(), "kind": failure_kind(f), "error": f.to_string()}))
        .collect()
}

fn chain_json(chain: &[ChainEntry]) -> Vec<Value> {
    chain
        .iter()
        .map(|c| json!({"resolver": c.resolver, "state": c.state.as_str(), "reason": c.reason}))
        .collect()
}

/// The one document of `targets --json`, for success and failure alike:
/// `schema`, `ok`, `resolver` (who answered), `servers`, `error` (the final line
/// printed), `kind`, `note`, `failed` (every resolver tried that gave nothing) and
/// `chain` (every member in order with its state: `answered`, `failed`, `disabled`
/// or `not-run`, and the reason), and `provenance` (where the answer came from, as
/// printed; null when the resolver said nothing or on failure). Values are raw;
/// messages are the lines printed.
pub fn targets_json(result: &Result<Resolution, ResolveError>) -> Value {
    match result {
        Ok(res) => json!({
            "schema": TARGETS_SCHEMA,
            "ok": true,
            "resolver": res.resolver,
            "servers": res.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "error": null,
            "kind": null,
            "note": null,
            "failed": failed_json(&res.failed),
            "chain": chain_json(&res.chain),
        })
        .with_answer(&res.answer),
        Err(e) => json!({
            "schema": TARGETS_SCHEMA,
            "ok": false,
            "resolver": null,
            "servers": [],
            "error": e.to_string(),
            "kind": failure_kind(&e.failure),
            "note": e.note,
            "failed": failed_json(&e.failed),
            "chain": chain_json(&e.chain),
        })
        .with_answer(&Answer::default()),
    }
}

/// Adds the answer record's fields (`provenance`, ...) to a `targets` document, null
/// when not given, so a new field of the record reaches the JSON with no edit here.
trait WithAnswer {
    fn with_answer(self, answer: &Answer) -> Value;
}

impl WithAnswer for Value {
    fn with_answer(mut self, answer: &Answer) -> Value {
        if let (Some(doc), Ok(Value::Object(fields))) =
            (self.as_object_mut(), serde_json::to_value(answer))
        {
            doc.extend(fields);
        }
        self
    }
}

/// The chain as text, one member a line (`   1. NAME: STATE[: WHY]`), under a
/// `Resolver chain:` heading; empty for a chain of one resolver (the output is then
/// exactly Choria's, and the final line names that resolver).
pub fn chain_text(chain: &[ChainEntry]) -> String {
    if chain.len() <= 1 {
        return String::new();
    }
    let mut out = String::from("Resolver chain:\n");
    for (i, c) in chain.iter().enumerate() {
        out.push_str(&format!("   {}. {c}\n", i + 1));
    }
    out
}

/// The `Provenance: ...` line `targets` prints last (after the brokers and their
/// check), or nothing when
/// the resolver said nothing (1.0 and 1.1 plugins).
pub fn provenance_text(res: &Resolution) -> String {
    let answer = &res.answer;
    let mut text = String::new();
    if let Some(p) = &answer.provenance {
        text.push_str(&format!("Provenance: {p}\n"));
    }
    text
}
