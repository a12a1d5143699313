//! What a child process reports about the library it loaded, as JSON: the loader's
//! [`OutcomeRecord`] (the verdict, with the stage, kind and reason of a refusal, and
//! the plugin's self-description), in the one spelling of the record model
//! (`provtarget_loader::record`). It travels as the `report` of the child's handshake
//! (`protocol.rs`, which carries the magic cookie and the protocol version). Every
//! field is required and an unknown one is refused: the error names it.
#![forbid(unsafe_code)]

use provtarget_loader::{record::OutcomeRecord, PluginFacts, Verdict};
use serde::Deserialize as _;
use serde_json::Value;

/// The verdict and facts as one JSON object.
pub fn report(verdict: &Verdict, plugin: Option<&PluginFacts>) -> Value {
    serde_json::to_value(OutcomeRecord::new(verdict, plugin)).unwrap_or(Value::Null)
}

/// Reads [`report`]'s object back. `Err` says what is wrong with it, naming the field.
pub fn parse(v: &Value) -> Result<(Verdict, Option<PluginFacts>), String> {
    let malformed = |e: &dyn std::fmt::Display| format!("the child's report is malformed: {e}");
    OutcomeRecord::deserialize(v)
        .map_err(|e| malformed(&e))?
        .into_parts()
        .map_err(|e| malformed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use provtarget_loader::{Refusal, RefusalKind, Stage};

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
