//! What a child process reports about the library it loaded, as JSON: the handshake
//! (`magic`, `protocol`) and the loader's [`OutcomeRecord`] (the verdict, with the
//! stage, kind and reason of a refusal, and the plugin's self-description), in the
//! one spelling of the record model (`provtarget_loader::record`). Every field is
//! required and an unknown one is refused: the error names it.
#![forbid(unsafe_code)]

use provtarget_loader::{record::OutcomeRecord, PluginFacts, Verdict};
use serde_json::Value;

/// The first field of every handshake: a child that does not send it is not a
/// provtarget helper (e.g. the wrong executable was named), whatever it prints.
pub const MAGIC: &str = "provtarget-plugin-child-7c1e4b9a";
/// The protocol version of the lines exchanged with a child. 2: a resolver child is
/// handed its library on its socket (the `load` line with the descriptor attached)
/// instead of at start; 1 had it as inherited descriptor 3 and `__serve PATH`.
/// 3: a `targets` reply is `{"targets": [...], "provenance": ...}` (interface 1.2).
/// 4: the report is the record model's `verdict` and `plugin` objects (3 had the
/// verdict's fields at the top and the plugin's spelled by hand).
pub const PROTOCOL: u64 = 4;

/// The verdict and facts as one JSON object.
pub fn report(verdict: &Verdict, plugin: Option<&PluginFacts>) -> Value {
    let mut v = serde_json::to_value(OutcomeRecord::new(verdict, plugin)).unwrap_or(Value::Null);
    v["magic"] = MAGIC.into();
    v["protocol"] = PROTOCOL.into();
    v
}

/// Reads [`report`]'s object back. `Err` says what is wrong with it, naming the field.
pub fn parse(v: &Value) -> Result<(Verdict, Option<PluginFacts>), String> {
    if v["magic"] != MAGIC {
        return Err("the child is not a provtarget helper (no handshake)".into());
    }
    if v["protocol"] != PROTOCOL {
        return Err(format!(
            "the child speaks protocol {}, this host {PROTOCOL}; use the same provtarget build",
            v["protocol"]
        ));
    }
    let mut record = v.clone();
    if let Some(fields) = record.as_object_mut() {
        fields.remove("magic");
        fields.remove("protocol");
    }
    let malformed = |e: &dyn std::fmt::Display| format!("the child's report is malformed: {e}");
    serde_json::from_value::<OutcomeRecord>(record)
        .map_err(|e| malformed(&e))?
        .into_parts()
        .map_err(|e| malformed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use provtarget_loader::{Refusal, RefusalKind, Stage};
    use serde_json::json;

    #[test]
    fn a_refusal_survives_the_round_trip() {
        let verdict = Verdict::Rejected(Refusal::new(
            Stage::Constructor,
            RefusalKind::ConstructorFailed,
            "x.so: plugin could not be constructed",
        ));
        let (back, plugin) = parse(&report(&verdict, None)).unwrap();
        assert_eq!(back, verdict);
        assert!(plugin.is_none());
    }

    #[test]
    fn a_report_without_the_magic_cookie_is_refused() {
        let err = parse(&json!({"verdict": "loaded", "protocol": PROTOCOL})).unwrap_err();
        assert!(err.contains("not a provtarget helper"), "{err}");
        let other = PROTOCOL + 1;
        let err =
            parse(&json!({"magic": MAGIC, "protocol": other, "verdict": "loaded"})).unwrap_err();
        assert!(err.contains(&format!("protocol {other}")), "{err}");
    }

    fn facts() -> PluginFacts {
        PluginFacts {
            info: provtarget_abi::host::PluginInfo {
                name: "n".into(),
                version: "1.0.0".into(),
                plugin_type: provtarget_abi::PluginType::ProvisionTargetResolver,
                plugin_type_id: 3,
                vendor: "v".into(),
                description: "d".into(),
                interface_version: "1.2.0".into(),
                rustc_version: "r".into(),
                target: "t".into(),
                abi_stable_version: "0.11".into(),
                sdk_version: "1.2.0".into(),
            },
            interface_version: "1.1.0".into(),
            config_keys: vec![provtarget_abi::ConfigKey::new("plugin.n.k", "1", "k")],
        }
    }

    #[test]
    fn the_plugin_facts_survive_the_round_trip() {
        let (verdict, plugin) = parse(&report(&Verdict::Loaded, Some(&facts()))).unwrap();
        assert_eq!(verdict, Verdict::Loaded);
        assert_eq!(plugin, Some(facts()));
    }

    /// A report missing a field, or with one the host does not know, is refused naming
    /// it: never read as an empty string.
    #[test]
    fn a_missing_or_unknown_field_is_refused_naming_it() {
        let verdict = Verdict::Rejected(Refusal::new(
            Stage::Constructor,
            RefusalKind::ConstructorFailed,
            "m",
        ));
        let good = report(&verdict, Some(&facts()));
        for (part, field) in [
            ("verdict", "reason"),
            ("verdict", "kind"),
            ("plugin", "sdk_version"),
            ("plugin", "name"),
            ("plugin", "config_keys"),
        ] {
            let mut v = good.clone();
            v[part].as_object_mut().unwrap().remove(field);
            let err = parse(&v).unwrap_err();
            assert!(
                err.contains("malformed") && err.contains(&format!("missing field `{field}`")),
                "{field}: {err}"
            );
        }
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("plugin");
        let err = parse(&v).unwrap_err();
        assert!(err.contains("missing field `plugin`"), "{err}");
        for (part, field) in [("verdict", "why"), ("plugin", "sdk")] {
            let mut v = good.clone();
            v[part][field] = "x".into();
            let err = parse(&v).unwrap_err();
            assert!(err.contains(&format!("unknown field `{field}`")), "{err}");
        }
        let mut v = good;
        v["verdict"]["reason"] = Value::Null;
        let err = parse(&v).unwrap_err();
        assert!(err.contains("field `reason`"), "{err}");
    }
}
