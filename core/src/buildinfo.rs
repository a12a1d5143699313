//! `provtarget buildinfo`: Choria-like text, and one JSON object for tools.

use std::fmt::Write as _;

use provtarget_loader::{LibraryRecord, Verdict};
use serde_json::{json, Value};

use crate::{
    host::{Host, Origin},
    text::{printable, shown},
};

pub use crate::text::MASK;
use crate::text::{masked_setting as masked, shown_setting};

/// The configuration's settings with their sources, for buildinfo: secrets masked by
/// the host's policy and also every key an active plugin masked in its own settings
/// (`Settings::secret`), so a value a plugin keeps secret is never shown by its source.
fn sources(host: &Host) -> Vec<crate::config::SettingSource> {
    let plugin_secrets: Vec<&str> = host
        .chain()
        .iter()
        .flat_map(|r| r.settings.iter())
        .filter(|(_, v)| v.as_str() == MASK)
        .map(|(k, _)| k.as_str())
        .collect();
    let mut all = host.config().sources(&declared_keys(host));
    for s in &mut all {
        if let Some(v) = s.value.as_mut() {
            *v = if plugin_secrets.contains(&s.key.as_str()) && !v.is_empty() {
                MASK.to_string()
            } else {
                masked(&s.key, v)
            };
        }
    }
    all
}

/// The Choria-style text report.
pub fn text(host: &Host) -> String {
    let mut out = String::new();
    write_build(&mut out);
    write_server_settings(&mut out, host);
    write_provisioning_settings(&mut out, host);
    write_sources(&mut out, host);
    write_plugins(&mut out, host);
    write_warnings(&mut out, host);
    out
}

/// `Build Data:` this host's version, interfaces, compiler, target and abi_stable.
fn write_build(out: &mut String) {
    let _ = writeln!(out, "Build Data:");
    let _ = writeln!(out, "     Version: {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        out,
        "     Plugin Interface: {} (reads {})",
        provtarget_abi::INTERFACE_VERSION,
        provtarget_abi::host::supported_interfaces()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "     Compiler: {}", provtarget_abi::BUILD_RUSTC);
    let _ = writeln!(out, "     Target: {}", provtarget_abi::BUILD_TARGET);
    let _ = writeln!(
        out,
        "     abi_stable: {}",
        provtarget_abi::ABI_STABLE_VERSION
    );
}

/// `Server Settings:` the resolvers, then where plugins come from and how they are
/// checked and run.
fn write_server_settings(out: &mut String, host: &Host) {
    let _ = writeln!(out);
    let _ = writeln!(out, "Server Settings:");
    write_resolvers(out, host);
    write_plugin_policy(out, host);
}

/// The resolver in charge, the chain when there is more than one, and the resolvers
/// disabled with why.
fn write_resolvers(out: &mut String, host: &Host) {
    let (name, version) = host.resolver_name();
    let (name, version) = (printable(&name), printable(&version));
    if version.is_empty() {
        let _ = writeln!(out, "    Provisioning Target Resolver: {name}");
    } else {
        let _ = writeln!(
            out,
            "    Provisioning Target Resolver: {name} version {version}"
        );
    }
    if host.chain().len() > 1 {
        let chain: Vec<String> = host.chain().iter().map(|r| printable(&r.name)).collect();
        let _ = writeln!(out, "            Resolver Chain: {}", chain.join(" -> "));
    }
    for d in host.disabled() {
        let _ = writeln!(
            out,
            "            Disabled Resolver: {}: {}",
            printable(&d.name),
            shown(&d.reason)
        );
    }
}

/// The configured plugin directories, escaped for the terminal.
fn directories(host: &Host) -> Vec<String> {
    host.config()
        .directories()
        .iter()
        .map(|d| printable(&d.to_string_lossy()))
        .collect()
}

/// The configuration file, plugin directories, pins, owner checks, isolation,
/// signatures, verdict cache and timeout.
fn write_plugin_policy(out: &mut String, host: &Host) {
    let config = host.config();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "            {label}: {value}");
    };
    line(
        "Configuration File",
        &config
            .file()
            .map(|p| printable(&p.to_string_lossy()))
            .unwrap_or_else(|| "none (built-in defaults)".into()),
    );
    line("Plugin Directories", &directories(host).join(", "));
    line(
        "Plugin Pins",
        &config
            .pin_file()
            .map(|p| printable(&p.to_string_lossy()))
            .unwrap_or_else(|| "not pinned".into()),
    );
    line(
        "Plugin Owner Checks",
        if config.insecure_skip_owner_checks() {
            "DISABLED (developer override plugin.provtarget.insecure_skip_owner_checks)"
        } else {
            "enforced"
        },
    );
    line("Plugin Isolation", &config.isolation().to_string());
    line("Plugin Signatures", &signatures_line(host));
    line(
        "Verdict Cache",
        &config
            .cache_dir()
            .map(|d| {
                d.join(provtarget_loader::CACHE_FILE_NAME)
                    .display()
                    .to_string()
            })
            .unwrap_or_else(|| "none".into()),
    );
    line(
        "Resolver Timeout",
        &config
            .timeout()
            .map(|t| format!("{:?}", t))
            .unwrap_or_else(|| "none".into()),
    );
}

/// `Provisioning Settings:` what the active resolvers reported (secrets masked), when
/// there is any.
fn write_provisioning_settings(out: &mut String, host: &Host) {
    let settings: Vec<(&str, &str)> = host
        .chain()
        .iter()
        .flat_map(|r| r.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect();
    if !settings.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "    Provisioning Settings:");
        for (k, v) in settings {
            let _ = writeln!(out, "            {}: {}", printable(k), shown_setting(k, v));
        }
    }
}

/// `Configuration Sources:` every key with its value and where it came from.
fn write_sources(out: &mut String, host: &Host) {
    let _ = writeln!(out);
    let _ = writeln!(out, "Configuration Sources:");
    for s in sources(host) {
        let value = s
            .value
            .as_deref()
            .map(|v| format!("\"{}\"", printable(v)))
            .unwrap_or_else(|| "unset".into());
        let _ = writeln!(
            out,
            "            {} = {value} ({})",
            printable(&s.key),
            shown(&s.origin)
        );
    }
}

/// `Provisioning Target Plugins:` every library found, with its verdict.
fn write_plugins(out: &mut String, host: &Host) {
    let _ = writeln!(out);
    let _ = writeln!(out, "Provisioning Target Plugins:");
    if host.report().libraries.is_empty() {
        let _ = writeln!(out, "    none found in {}", directories(host).join(", "));
    }
    for lib in &host.report().libraries {
        write_library(out, host, lib);
    }
}

/// `Warnings:` when there are any.
fn write_warnings(out: &mut String, host: &Host) {
    if !host.warnings().is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Warnings:");
        for w in host.warnings() {
            let _ = writeln!(out, "    {}", shown(w));
        }
    }
}

/// The keys the loaded plugins declare, with their defaults, in scan order.
fn declared_keys(host: &Host) -> Vec<(String, String)> {
    host.report()
        .libraries
        .iter()
        .filter(|l| l.verdict == Verdict::Loaded)
        .filter_map(|l| l.plugin.as_ref())
        .flat_map(|p| {
            p.config_keys
                .iter()
                .map(|k| (k.key.clone(), k.default.clone()))
        })
        .collect()
}

/// The signature mode in force and where its keys come from.
fn signatures_line(host: &Host) -> String {
    let policy = host.config().signature_policy();
    let mode = effective_signatures(host);
    let mut line = format!(
        "{} ({}; trusted keys {}",
        mode.as_str(),
        if policy.mode.is_some() {
            "configured"
        } else {
            "automatic: off until a key is trusted"
        },
        printable(&policy.trusted_keys.to_string_lossy())
    );
    if let Some(r) = &policy.revoked {
        line.push_str(&format!(", revoked {}", printable(&r.to_string_lossy())));
    }
    line.push(')');
    line
}

fn effective_signatures(host: &Host) -> provtarget_loader::SignatureMode {
    let policy = host.config().signature_policy();
    host.report()
        .signatures
        .or(policy.mode)
        .unwrap_or(provtarget_loader::SignatureMode::Off)
}

fn signatures_json(host: &Host) -> Value {
    let policy = host.config().signature_policy();
    json!({
        "mode": effective_signatures(host).as_str(),
        "configured": policy.mode.map(|m| m.as_str()),
        "trusted_keys": policy.trusted_keys.display().to_string(),
        "revoked": policy.revoked.map(|r| r.display().to_string()),
    })
}

fn active_state(host: &Host, lib: &LibraryRecord) -> &'static str {
    let active = host
        .chain()
        .iter()
        .any(|r| r.origin == Origin::Plugin(lib.path.clone()));
    if active {
        "active"
    } else {
        "not active"
    }
}

fn write_library(out: &mut String, host: &Host, lib: &LibraryRecord) {
    let active = (lib.verdict == Verdict::Loaded).then(|| active_state(host, lib) == "active");
    out.push_str(&record_text(lib, active, "    "));
}

/// One library as text: its path on the first line (indented by `indent`), then one
/// `Label: value` line per field, indented four more. The one renderer behind
/// `buildinfo` and `provtarget plugins check`; every text from the file or the
/// plugin is escaped. `active` is `Some` when a host decided whether the loaded
/// plugin is in its chain.
pub fn record_text(lib: &LibraryRecord, active: Option<bool>, indent: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{indent}{}",
        printable(&lib.path.display().to_string())
    );
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{indent}    {label}: {value}");
    };
    verdict_fields(lib, active, &mut field);
    if let Some(p) = &lib.plugin {
        plugin_fields(p, &mut field);
    }
    file_fields(lib, &mut field);
    out
}

/// The `Status` line, and `Reason` (and `Verdict` when cached) of a refusal or skip.
fn verdict_fields(lib: &LibraryRecord, active: Option<bool>, field: &mut impl FnMut(&str, &str)) {
    match &lib.verdict {
        Verdict::Loaded => field(
            "Status",
            match (active, lib.cached) {
                (Some(true), _) => "loaded (active)",
                (Some(false), false) => "loaded (not active)",
                (Some(false), true) => "loaded (not active, from cache)",
                (None, false) => "loaded",
                (None, true) => "loaded (from cache)",
            },
        ),
        Verdict::Rejected(refusal) => {
            field(
                "Status",
                &format!(
                    "rejected at {} ({})",
                    refusal.stage.as_str(),
                    refusal.kind.as_str()
                ),
            );
            field("Reason", &printable(&refusal.message));
            if lib.cached {
                field("Verdict", "from cache (file unchanged; not loaded)");
            }
        }
        Verdict::Skipped { reason } => {
            field("Status", "skipped");
            field("Reason", &printable(reason));
        }
    }
}

/// What the plugin says about itself: name, type, vendor, description, interface and
/// build, and one `Config` line per declared key.
fn plugin_fields(p: &provtarget_loader::PluginFacts, field: &mut impl FnMut(&str, &str)) {
    let i = &p.info;
    field(
        "Plugin",
        &format!("{} version {}", printable(&i.name), printable(&i.version)),
    );
    field("Type", &i.plugin_type.to_string());
    if !i.vendor.is_empty() {
        field("Vendor", &printable(&i.vendor));
    }
    if !i.description.is_empty() {
        field("Description", &printable(&i.description));
    }
    field(
        "Interface",
        &format!(
            "{} (built with {}, {}; provtarget-abi {} on abi_stable {})",
            printable(&p.interface_version),
            printable(&i.rustc_version),
            printable(&i.target),
            printable(&i.sdk_version),
            printable(&i.abi_stable_version)
        ),
    );
    for k in &p.config_keys {
        field(
            "Config",
            &format!(
                "{} (default {:?}): {} [environment: {}]",
                printable(&k.key),
                printable(&k.default),
                printable(&k.description),
                printable(&crate::config::env_var(&k.key)),
            ),
        );
    }
}

/// The `File` line (hash, size, owner, mode) and the `Signature` line when
/// signatures are checked.
fn file_fields(lib: &LibraryRecord, field: &mut impl FnMut(&str, &str)) {
    if let Some(f) = &lib.file {
        let hash = match &f.sha256 {
            Some(h) => format!("sha256:{h} "),
            None => String::new(),
        };
        field(
            "File",
            &format!(
                "{hash}{} bytes, owner {} mode {:04o}",
                f.size, f.uid, f.mode
            ),
        );
    }
    // Signatures off (no key set up): no line, so nothing new to read (JSON still
    // says "off").
    if let Some(sig) = lib
        .signature
        .as_ref()
        .filter(|s| s.state != provtarget_loader::SignatureState::Off)
    {
        field("Signature", &sig.summary());
    }
}

/// The JSON report: `resolver`, `chain`, `plugins` and more.
///
/// One policy for every JSON output (`buildinfo`, `targets`, `plugins check`):
/// *values* (names, versions, paths, settings, servers) carry the raw text, which
/// serde escapes once for JSON; secrets and credentials in URLs are masked.
/// *Messages* (`reason`, `error`, `warnings`, `note`) carry the very line printed on
/// the terminal and in the log: one line, credentials masked, control and format
/// characters already escaped.
pub fn json(host: &Host) -> Value {
    let config = host.config();
    let (name, version) = host.resolver_name();
    let settings: serde_json::Map<String, Value> = host
        .chain()
        .iter()
        .flat_map(|r| r.settings.iter())
        .map(|(k, v)| (k.clone(), Value::String(masked(k, v))))
        .collect();
    let plugins: Vec<Value> = host
        .report()
        .libraries
        .iter()
        .map(|lib| library_json(host, lib))
        .collect();
    let mut doc = json!({
        "schema": crate::output::BUILDINFO_SCHEMA,
        "build": {
            "version": env!("CARGO_PKG_VERSION"),
            "interface_version": provtarget_abi::INTERFACE_VERSION,
            "supported_interfaces": provtarget_abi::host::supported_interfaces().collect::<Vec<_>>(),
            "rustc": provtarget_abi::BUILD_RUSTC,
            "target": provtarget_abi::BUILD_TARGET,
            "abi_stable": provtarget_abi::ABI_STABLE_VERSION,
        },
        "resolver": { "name": name, "version": version },
        "chain": host.chain().iter().map(|r| json!({
            "name": r.name,
            "version": r.version,
            "origin": match &r.origin {
                Origin::BuiltIn => Value::String("built-in".into()),
                Origin::Plugin(p) => Value::String(p.display().to_string()),
            },
        })).collect::<Vec<_>>(),
        "disabled": host.disabled().iter().map(|d| json!({"name": d.name, "reason": shown(&d.reason)})).collect::<Vec<_>>(),
        "settings": settings,
        "sources": sources(host).iter().map(|s| json!({
            "key": s.key,
            "value": s.value,
            "source": s.source,
            "origin": shown(&s.origin),
        })).collect::<Vec<_>>(),
        "config_file": config.file().map(|p| p.display().to_string()),
        "directories": config.directories().iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "pin_file": config.pin_file().map(|p| p.display().to_string()),
        "owner_checks": !config.insecure_skip_owner_checks(),
        "cache_dir": config.cache_dir().map(|d| d.display().to_string()),
        "timeout_seconds": config.timeout().map(|t| t.as_secs_f64()),
        "isolation": config.isolation().as_str(),
        "signatures": signatures_json(host),
        "warnings": host.warnings().iter().map(|w| shown(w)).collect::<Vec<_>>(),
    });
    // Moved in, not through `json!` (which would serialize the whole list again).
    doc["plugins"] = Value::Array(plugins);
    doc
}

/// One library as JSON (also used by `plugins check --json`).
pub fn library_json(host: &Host, lib: &LibraryRecord) -> Value {
    let mut v = record_json(lib);
    if lib.verdict == Verdict::Loaded {
        v["active"] = Value::Bool(active_state(host, lib) == "active");
    }
    v
}

/// One library as JSON, without host context: the record model's document
/// ([`provtarget_loader::record::document`]), each declared key with the environment
/// variable that sets it (`env`).
pub fn record_json(lib: &LibraryRecord) -> Value {
    // JSON carries every text raw (serde_json escapes what JSON needs); only the
    // text renderer escapes for terminals.
    let mut doc = provtarget_loader::record::document(lib);
    if let Some(Value::Array(keys)) = doc.get_mut("config_keys") {
        for k in keys.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(env) = k
                .get("key")
                .and_then(Value::as_str)
                .map(crate::config::env_var)
            {
                k.insert("env".into(), env.into());
            }
        }
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_by_key() {
        for k in [
            "provisioning.token",
            "provisioning.broker_password",
            "chpwd",
            "API_SECRET",
            "testkit.token",
            "provisioning.extensions",
            "plugin.provtarget.etcd.password",
            "plugin.provtarget.http.header.X-aws-ec2-metadata-token",
        ] {
            assert!(crate::text::is_secret_key(k), "{k}");
            assert_eq!(shown_setting(k, "hunter2"), MASK);
        }
        assert_eq!(
            shown_setting("provisioning.token", ""),
            "",
            "empty stays empty"
        );
        assert_eq!(
            shown_setting("provisioning.broker_urls", "nats://prov:hunter2@b:4222"),
            "nats://*****@b:4222"
        );
        assert_eq!(shown_setting("plugin.x", "a\x1b[31m"), "a\\u{1b}[31m");
        for k in [
            "provisioning.broker_urls",
            "provisioning.srv_domain",
            "provisioning.jwt_file",
            "plugin.provtarget.http.token.url",
            "plugin.provtarget.http.token.into",
        ] {
            assert!(!crate::text::is_secret_key(k), "{k}");
            assert_eq!(shown_setting(k, "v"), "v");
        }
    }
}
