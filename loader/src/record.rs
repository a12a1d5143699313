//! One serde model of a library's record, and the one spelling of its keys.
//!
//! - [`PluginRecord`]: what the plugin says about itself (the fields of
//!   [`PluginInfo`], mirrored here because the
//!   contract crate carries no serde) and the configuration keys it declares
//!   ([`ConfigKeyRecord`]);
//! - [`VerdictRecord`]: loaded, rejected (stage, kind, reason) or skipped (reason);
//! - [`FileRecord`]: the file as reported (hash, size, owner, mode); the verdict cache
//!   binds an entry to the file's [`FileIdentity`](crate::FileIdentity);
//! - [`SignatureRecord`]: the signature facts.
//!
//! The verdict cache, a child process's report ([`OutcomeRecord`]) and the JSON
//! documents (`buildinfo --json`, `plugins check --json`: [`document`]) all map through
//! these types, so a new field is one edit here and cannot vanish on one path. The
//! keys are those the documents have always printed (`rustc`, `sdk_version`,
//! `interface_version` for the layout a library was read with...).
//!
//! What the host reads back (a cache entry, a child's report) is strict: every field
//! is required (null where there is no value) and an unknown field is refused; the
//! error names the field. Nothing is read as an empty string.
#![forbid(unsafe_code)]

use std::{fmt, time::UNIX_EPOCH};

use provtarget_abi::{host::PluginInfo, ConfigKey, PluginType};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{
    FileFacts, LibraryRecord, PluginFacts, Refusal, RefusalKind, SignatureFacts, SignatureState,
    Stage, Verdict,
};

/// Reads an `Option` field that must be present (null for `None`): serde otherwise
/// reads a missing `Option` field as `None`, and a field dropped on one path would go
/// unnoticed.
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A record that parses but says something impossible (a rejected library without
/// its stage, a reason for a loaded one): the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

impl std::error::Error for RecordError {}

/// Loaded, rejected or skipped, as the `status` field spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Loaded and constructed.
    Loaded,
    /// Refused.
    Rejected,
    /// Not considered.
    Skipped,
}

/// A [`Verdict`] as recorded: `status`, and `stage`, `kind` and `reason` (null when
/// they do not apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictRecord {
    /// Loaded, rejected or skipped.
    pub status: Status,
    /// Where a rejected library was refused.
    #[serde(deserialize_with = "required")]
    pub stage: Option<Stage>,
    /// The class of refusal.
    #[serde(deserialize_with = "required")]
    pub kind: Option<RefusalKind>,
    /// Why it was refused (the one-line message) or skipped.
    #[serde(deserialize_with = "required")]
    pub reason: Option<String>,
}

impl From<&Verdict> for VerdictRecord {
    fn from(verdict: &Verdict) -> VerdictRecord {
        let (status, stage, kind, reason) = match verdict {
            Verdict::Loaded => (Status::Loaded, None, None, None),
            Verdict::Rejected(r) => (
                Status::Rejected,
                Some(r.stage),
                Some(r.kind),
                Some(r.message.clone()),
            ),
            Verdict::Skipped { reason } => (Status::Skipped, None, None, Some(reason.clone())),
        };
        VerdictRecord {
            status,
            stage,
            kind,
            reason,
        }
    }
}

impl TryFrom<VerdictRecord> for Verdict {
    type Error = RecordError;

    fn try_from(r: VerdictRecord) -> Result<Verdict, RecordError> {
        let err = |field, problem| Err(RecordError { field, problem });
        match (r.status, r.stage, r.kind, r.reason) {
            (Status::Loaded, None, None, None) => Ok(Verdict::Loaded),
            (Status::Rejected, Some(stage), Some(kind), Some(reason)) => {
                Ok(Verdict::Rejected(Refusal::new(stage, kind, reason)))
            }
            (Status::Skipped, None, None, Some(reason)) => Ok(Verdict::Skipped { reason }),
            (Status::Rejected, None, _, _) => err("stage", "is null for a rejected library"),
            (Status::Rejected, _, None, _) => err("kind", "is null for a rejected library"),
            (Status::Rejected, _, _, None) => err("reason", "is null for a rejected library"),
            (_, Some(_), _, _) => err("stage", "is set for a library that was not rejected"),
            (_, _, Some(_), _) => err("kind", "is set for a library that was not rejected"),
            (Status::Loaded, _, _, Some(_)) => err("reason", "is set for a loaded library"),
            (Status::Skipped, _, _, None) => err("reason", "is null for a skipped library"),
        }
    }
}

/// One configuration key a plugin declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKeyRecord {
    /// The key (`plugin.provtarget.<name>.<setting>`).
    pub key: String,
    /// Its default value.
    pub default: String,
    /// What it sets.
    pub description: String,
}

/// What a plugin says about itself, and the layout the host read it with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRecord {
    /// Its name.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// The numeric plugin type it declares (3: Provisioning Target Resolver).
    pub type_id: u32,
    /// Who made it.
    pub vendor: String,
    /// What it does.
    pub description: String,
    /// The interface version it declares it was built against.
    pub declared_interface: String,
    /// The interface layout the host read it with.
    pub interface_version: String,
    /// The compiler it was built with.
    pub rustc: String,
    /// The target triple it was built for.
    pub target: String,
    /// The provtarget-abi version it was built with.
    pub sdk_version: String,
    /// The abi_stable version it was built with.
    pub abi_stable_version: String,
    /// The configuration keys it declares.
    pub config_keys: Vec<ConfigKeyRecord>,
}

impl From<&PluginFacts> for PluginRecord {
    fn from(p: &PluginFacts) -> PluginRecord {
        let i = &p.info;
        PluginRecord {
            name: i.name.clone(),
            version: i.version.clone(),
            type_id: i.plugin_type_id,
            vendor: i.vendor.clone(),
            description: i.description.clone(),
            declared_interface: i.interface_version.clone(),
            interface_version: p.interface_version.clone(),
            rustc: i.rustc_version.clone(),
            target: i.target.clone(),
            sdk_version: i.sdk_version.clone(),
            abi_stable_version: i.abi_stable_version.clone(),
            config_keys: p
                .config_keys
                .iter()
                .map(|k| ConfigKeyRecord {
                    key: k.key.clone(),
                    default: k.default.clone(),
                    description: k.description.clone(),
                })
                .collect(),
        }
    }
}

impl From<PluginRecord> for PluginFacts {
    fn from(p: PluginRecord) -> PluginFacts {
        PluginFacts {
            info: PluginInfo {
                name: p.name,
                version: p.version,
                plugin_type: PluginType::from_id(p.type_id),
                plugin_type_id: p.type_id,
                vendor: p.vendor,
                description: p.description,
                interface_version: p.declared_interface,
                rustc_version: p.rustc,
                target: p.target,
                abi_stable_version: p.abi_stable_version,
                sdk_version: p.sdk_version,
            },
            interface_version: p.interface_version,
            config_keys: p
                .config_keys
                .iter()
                .map(|k| ConfigKey::new(&k.key, &k.default, &k.description))
                .collect(),
        }
    }
}

/// The file as reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// SHA-256 of its bytes (lower-case hex), when computed.
    #[serde(deserialize_with = "required")]
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch (null before it).
    #[serde(deserialize_with = "required")]
    pub mtime: Option<u64>,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits, four octal digits (`0644`).
    pub mode: String,
}

impl From<&FileFacts> for FileRecord {
    fn from(f: &FileFacts) -> FileRecord {
        FileRecord {
            sha256: f.sha256.clone(),
            size: f.size,
            mtime: f.mtime.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()),
            uid: f.uid,
            gid: f.gid,
            mode: format!("{:04o}", f.mode),
        }
    }
}

impl Serialize for SignatureState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SignatureState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SignatureState, D::Error> {
        let name = String::deserialize(d)?;
        SignatureState::parse(&name).ok_or_else(|| {
            serde::de::Error::unknown_variant(&name, &["signed", "unsigned", "refused", "off"])
        })
    }
}

/// A library's signature as reported: [`SignatureFacts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// Signed, unsigned, refused or off.
    pub state: SignatureState,
    /// The id of the key that made the signature, when it could be read.
    #[serde(deserialize_with = "required")]
    pub key_id: Option<String>,
    /// The signature's trusted comment, when it could be read.
    #[serde(deserialize_with = "required")]
    pub trusted_comment: Option<String>,
    /// Why it is unsigned or refused.
    #[serde(deserialize_with = "required")]
    pub reason: Option<String>,
}

impl From<&SignatureFacts> for SignatureRecord {
    fn from(s: &SignatureFacts) -> SignatureRecord {
        SignatureRecord {
            state: s.state,
            key_id: s.key_id.clone(),
            trusted_comment: s.trusted_comment.clone(),
            reason: s.reason.clone(),
        }
    }
}

impl From<SignatureRecord> for SignatureFacts {
    fn from(s: SignatureRecord) -> SignatureFacts {
        SignatureFacts {
            state: s.state,
            key_id: s.key_id,
            trusted_comment: s.trusted_comment,
            reason: s.reason,
        }
    }
}

/// What loading one library decided, as a child process reports it to its host: the
/// verdict and, when the library got that far, the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// The verdict.
    pub verdict: VerdictRecord,
    /// The plugin, when its information could be read.
    #[serde(deserialize_with = "required")]
    pub plugin: Option<PluginRecord>,
}

impl OutcomeRecord {
    /// The record of `verdict` and `plugin`.
    pub fn new(verdict: &Verdict, plugin: Option<&PluginFacts>) -> OutcomeRecord {
        OutcomeRecord {
            verdict: verdict.into(),
            plugin: plugin.map(PluginRecord::from),
        }
    }

    /// The verdict and plugin facts it records; `Err` names the impossible field.
    pub fn into_parts(self) -> Result<(Verdict, Option<PluginFacts>), RecordError> {
        Ok((self.verdict.try_into()?, self.plugin.map(PluginFacts::from)))
    }
}

/// One library as the JSON documents show it (an element of `buildinfo --json`'s
/// `plugins`, and `plugins check --json`): `path`, the [`VerdictRecord`], the
/// [`PluginRecord`] fields and `type` (its plugin type by name), the [`FileRecord`]
/// fields, `load_time_ms`, `cached` and `signature`. The fields of a part the record
/// lacks (no plugin facts, no file facts) are null, so every document has every key.
/// Values are raw text; JSON escapes what it must.
pub fn document(lib: &LibraryRecord) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("path".into(), lib.path.display().to_string().into());
    put(&mut doc, Some(VerdictRecord::from(&lib.verdict)));
    put(&mut doc, lib.plugin.as_ref().map(PluginRecord::from));
    doc.insert(
        "type".into(),
        lib.plugin
            .as_ref()
            .map(|p| p.info.plugin_type.to_string())
            .into(),
    );
    put(&mut doc, lib.file.as_ref().map(FileRecord::from));
    doc.insert(
        "load_time_ms".into(),
        (lib.load_time.as_secs_f64() * 1000.0).into(),
    );
    doc.insert("cached".into(), lib.cached.into());
    doc.insert(
        "signature".into(),
        lib.signature
            .as_ref()
            .map_or(Value::Null, |s| to_value(SignatureRecord::from(s))),
    );
    doc
}

/// Adds the fields of `part` to `doc`; all null when there is no `part`.
fn put<T: Serialize + Default>(doc: &mut Map<String, Value>, part: Option<T>) {
    let present = part.is_some();
    if let Value::Object(mut fields) = to_value(part.unwrap_or_default()) {
        if !present {
            fields.values_mut().for_each(|v| *v = Value::Null);
        }
        doc.append(&mut fields);
    }
}

impl Default for VerdictRecord {
    fn default() -> VerdictRecord {
        VerdictRecord::from(&Verdict::Loaded)
    }
}

/// A model value as JSON (these types have string keys only: this cannot fail).
fn to_value<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plugin with every field set, odd text included (also the cache tests'
    /// sample).
    pub(crate) fn plugin() -> PluginFacts {
        PluginFacts {
            info: PluginInfo {
                name: "Acme \"DC\"\n".into(),
                version: "1.2.3".into(),
                plugin_type: PluginType::ProvisionTargetResolver,
                plugin_type_id: 3,
                vendor: "Acme".into(),
                description: "d".into(),
                interface_version: "1.1.0".into(),
                rustc_version: "rustc 1".into(),
                target: "x86_64".into(),
                abi_stable_version: "0.11".into(),
                sdk_version: "1.1.1".into(),
            },
            interface_version: "1.0.0".into(),
            config_keys: vec![
                ConfigKey::new("plugin.acme.file", "/x", "where"),
                ConfigKey::new("plugin.acme.b", "", "b"),
            ],
        }
    }

    /// Every verdict kind: loaded, every stage and kind of refusal, skipped.
    fn verdicts() -> Vec<Verdict> {
        let mut all = vec![
            Verdict::Loaded,
            Verdict::Skipped {
                reason: "a dotfile".into(),
            },
        ];
        let stages = [
            "open",
            "trust",
            "pin",
            "format",
            "load",
            "root-module",
            "abi-header",
            "interface",
            "info",
            "plugin-type",
            "constructor",
            "duplicate",
            "signature",
        ];
        let kinds = [
            "unreadable",
            "symlink",
            "not-regular-file",
            "bad-owner",
            "writable-by-others",
            "changed-while-read",
            "too-large",
            "pin-missing",
            "pin-mismatch",
            "pin-conflict",
            "pin-file-unusable",
            "not-elf",
            "wrong-class",
            "wrong-machine",
            "not-a-shared-library",
            "malformed",
            "truncated",
            "no-root-symbol",
            "panic-abort-build",
            "dlopen-failed",
            "unresolved-symbol",
            "not-a-plugin",
            "abi-stable-mismatch",
            "interface-mismatch",
            "layout-mismatch",
            "bad-info",
            "reserved-name",
            "wrong-type",
            "constructor-failed",
            "duplicate",
            "crashed-while-loading",
            "cache-mismatch",
            "unsigned",
            "bad-signature",
            "untrusted-key",
            "revoked-key",
            "revoked-build",
            "signature-mismatch",
            "name-not-allowed",
        ];
        for (i, kind) in kinds.iter().enumerate() {
            let stage = Stage::parse(stages[i % stages.len()]).expect("stage");
            let kind = RefusalKind::parse(kind).expect("kind");
            all.push(Verdict::Rejected(Refusal::new(
                stage,
                kind,
                format!("x.so: {kind}"),
            )));
        }
        all
    }

    #[test]
    fn every_verdict_and_every_plugin_field_survive_the_round_trip() {
        for verdict in verdicts() {
            for plugin in [None, Some(plugin())] {
                let record = OutcomeRecord::new(&verdict, plugin.as_ref());
                let text = serde_json::to_string(&record).unwrap();
                let back: OutcomeRecord = serde_json::from_str(&text).unwrap();
                assert_eq!(back, record, "{text}");
                let (v, p) = back.into_parts().unwrap();
                assert_eq!(v, verdict);
                assert_eq!(p, plugin);
            }
        }
        for state in [
            SignatureState::Signed,
            SignatureState::Unsigned,
            SignatureState::Refused,
            SignatureState::Off,
        ] {
            let facts = SignatureFacts {
                state,
                key_id: Some("RWQ".into()),
                trusted_comment: None,
                reason: Some("r".into()),
            };
            let text = serde_json::to_string(&SignatureRecord::from(&facts)).unwrap();
            let back: SignatureRecord = serde_json::from_str(&text).unwrap();
            assert_eq!(SignatureFacts::from(back), facts);
        }
        let file = FileRecord {
            sha256: Some("ab".repeat(32)),
            size: 7,
            mtime: Some(9),
            uid: 0,
            gid: 1,
            mode: "0644".into(),
        };
        let back: FileRecord =
            serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
        assert_eq!(back, file);
    }

    #[test]
    fn a_missing_or_unknown_field_is_refused_naming_it() {
        let good = serde_json::to_value(OutcomeRecord::new(
            &Verdict::Rejected(Refusal::new(
                Stage::Interface,
                RefusalKind::LayoutMismatch,
                "m",
            )),
            Some(&plugin()),
        ))
        .unwrap();
        for (path, field) in [
            (&["verdict"][..], "stage"),
            (&["verdict"], "reason"),
            (&["plugin"], "sdk_version"),
            (&["plugin"], "type_id"),
            (&[], "plugin"),
        ] {
            let mut v = good.clone();
            let mut o = &mut v;
            for p in path {
                o = &mut o[*p];
            }
            o.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<OutcomeRecord>(v)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("missing field `{field}`")), "{err}");
        }
        let mut v = good.clone();
        v["plugin"]["sdk"] = "1.0.0".into();
        let err = serde_json::from_value::<OutcomeRecord>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `sdk`"), "{err}");
        let mut v = good.clone();
        v["verdict"]["stage"] = "nowhere".into();
        let err = serde_json::from_value::<OutcomeRecord>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `nowhere`"), "{err}");
        // Parses, but impossible: named too.
        let mut v = good;
        v["verdict"]["kind"] = Value::Null;
        let record: OutcomeRecord = serde_json::from_value(v).unwrap();
        let err = record.into_parts().unwrap_err().to_string();
        assert!(err.contains("field `kind`"), "{err}");
    }

    #[test]
    fn a_document_has_every_key_null_when_its_part_is_missing() {
        let mut lib = LibraryRecord::new("/p/x.so");
        lib.verdict = Verdict::Skipped { reason: "r".into() };
        let doc = document(&lib);
        for key in [
            "stage",
            "kind",
            "name",
            "type",
            "type_id",
            "declared_interface",
            "interface_version",
            "rustc",
            "sdk_version",
            "abi_stable_version",
            "config_keys",
            "sha256",
            "size",
            "mtime",
            "uid",
            "gid",
            "mode",
            "signature",
        ] {
            assert_eq!(doc.get(key), Some(&Value::Null), "{key}");
        }
        assert_eq!(doc["status"], "skipped");
        assert_eq!(doc["reason"], "r");
        lib.plugin = Some(plugin());
        let doc = document(&lib);
        assert_eq!(doc["type"], "Provisioning Target Resolver");
        assert_eq!(doc["sdk_version"], "1.1.1");
        assert_eq!(doc["interface_version"], "1.0.0");
        assert_eq!(doc["declared_interface"], "1.1.0");
        assert_eq!(doc["config_keys"][0]["key"], "plugin.acme.file");
    }
}
