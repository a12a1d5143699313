//! What a child process reports about the library it loaded, as JSON: the verdict
//! (with the stage, kind and reason of a refusal) and the plugin's self-description.
#![forbid(unsafe_code)]

use provtarget_abi::{host::PluginInfo, ConfigKey, PluginType};
use provtarget_loader::{PluginFacts, Refusal, RefusalKind, Stage, Verdict};
use serde_json::{json, Value};

/// The first field of every handshake: a child that does not send it is not a
/// provtarget helper (e.g. the wrong executable was named), whatever it prints.
pub const MAGIC: &str = "provtarget-plugin-child-7c1e4b9a";
/// The protocol version of the lines exchanged with a child. 2: a resolver child is
/// handed its library on its socket (the `load` line with the descriptor attached)
/// instead of at start; 1 had it as inherited descriptor 3 and `__serve PATH`.
/// 3: a `targets` reply is `{"targets": [...], "provenance": ...}` (interface 1.2).
pub const PROTOCOL: u64 = 3;

/// The verdict and facts as one JSON object.
pub fn report(verdict: &Verdict, plugin: Option<&PluginFacts>) -> Value {
    let mut v = json!({ "magic": MAGIC, "protocol": PROTOCOL });
    match verdict {
        Verdict::Loaded => v["verdict"] = "loaded".into(),
        Verdict::Rejected(r) => {
            v["verdict"] = "rejected".into();
            v["stage"] = r.stage.as_str().into();
            v["kind"] = r.kind.as_str().into();
            v["reason"] = r.message.clone().into();
        }
        Verdict::Skipped { reason } => {
            v["verdict"] = "skipped".into();
            v["reason"] = reason.clone().into();
        }
    }
    if let Some(p) = plugin {
        let i = &p.info;
        v["plugin"] = json!({
            "name": i.name, "version": i.version, "plugin_type_id": i.plugin_type_id,
            "vendor": i.vendor, "description": i.description,
            "interface_version": i.interface_version, "rustc_version": i.rustc_version,
            "target": i.target, "abi_stable_version": i.abi_stable_version,
            "sdk_version": i.sdk_version, "read_with": p.interface_version,
            "config_keys": p.config_keys.iter()
                .map(|k| json!({"key": k.key, "default": k.default, "description": k.description}))
                .collect::<Vec<_>>(),
        });
    }
    v
}

/// Reads [`report`]'s object back. `Err` says what is wrong with it.
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
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let verdict = match v["verdict"].as_str() {
        Some("loaded") => Verdict::Loaded,
        Some("rejected") => {
            let stage = Stage::parse(&s(v, "stage")).unwrap_or(Stage::Load);
            let kind = RefusalKind::parse(&s(v, "kind")).unwrap_or(RefusalKind::DlopenFailed);
            Verdict::Rejected(Refusal::new(stage, kind, s(v, "reason")))
        }
        Some("skipped") => Verdict::Skipped {
            reason: s(v, "reason"),
        },
        _ => return Err("the child's report has no verdict".into()),
    };
    let plugin = v.get("plugin").filter(|p| p.is_object()).map(|p| {
        let id = p["plugin_type_id"].as_u64().unwrap_or(0) as u32;
        PluginFacts {
            info: PluginInfo {
                name: s(p, "name"),
                version: s(p, "version"),
                plugin_type: PluginType::from_id(id),
                plugin_type_id: id,
                vendor: s(p, "vendor"),
                description: s(p, "description"),
                interface_version: s(p, "interface_version"),
                rustc_version: s(p, "rustc_version"),
                target: s(p, "target"),
                abi_stable_version: s(p, "abi_stable_version"),
                sdk_version: s(p, "sdk_version"),
            },
            interface_version: s(p, "read_with"),
            config_keys: p["config_keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .map(|k| {
                            ConfigKey::new(&s(k, "key"), &s(k, "default"), &s(k, "description"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    });
    Ok((verdict, plugin))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
