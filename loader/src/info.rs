//! What a loaded plugin says about itself, judged: its info (name, version), its
//! type, and whether an earlier file already provides a plugin of that name.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use provtarget_abi::{host::PluginInfo, PluginType};

use crate::{
    text::{printable, shown},
    Refusal, RefusalKind, Stage,
};

/// Plugin info rules: a printable, non-empty name and a semver version.
pub(crate) fn validate(info: &PluginInfo, path: &Path) -> Result<(), Refusal> {
    let p = shown(path);
    if info.name.trim().is_empty() {
        return Err(Refusal::new(
            Stage::Info,
            RefusalKind::BadInfo,
            format!("{p} declares an empty plugin name; give the plugin a name and rebuild it"),
        ));
    }
    if info.name.chars().any(char::is_control) {
        return Err(Refusal::new(
            Stage::Info,
            RefusalKind::BadInfo,
            format!(
                "{p} declares a plugin name with control characters ({}); rename the plugin \
                 and rebuild it",
                printable(&info.name)
            ),
        ));
    }
    if crate::is_reserved_name(&info.name) {
        return Err(Refusal::new(
            Stage::Info,
            RefusalKind::ReservedName,
            format!(
                "{p}: plugin name {} is reserved for the built-in resolver; rename the \
                 plugin and rebuild it",
                printable(&info.name)
            ),
        ));
    }
    if let Err(e) = semver::Version::parse(&info.version) {
        return Err(Refusal::new(
            Stage::Info,
            RefusalKind::BadInfo,
            format!(
                "{p}: plugin {} declares version `{}`, which is not semver ({e}); use a \
                 version like 1.2.3 and rebuild it",
                printable(&info.name),
                printable(&info.version)
            ),
        ));
    }
    Ok(())
}

/// The plugin-type rule: only Provisioning Target Resolvers load.
pub(crate) fn check_type(info: &PluginInfo, path: &Path) -> Result<(), Refusal> {
    if info.plugin_type == PluginType::ProvisionTargetResolver {
        return Ok(());
    }
    Err(Refusal::new(
        Stage::PluginType,
        RefusalKind::WrongType,
        format!(
            "{}: plugin {} is not a valid ProvisionTargetResolver (it declares type {} ({})); \
             remove it from the provtarget plugin directory",
            shown(path),
            printable(&info.name),
            info.plugin_type,
            info.plugin_type_id
        ),
    ))
}

/// The duplicate-name rule: `loaded` lists (name, file) of the plugins already loaded
/// in this run; the later file is refused, naming the earlier.
pub(crate) fn check_unique(
    info: &PluginInfo,
    path: &Path,
    loaded: &[(String, PathBuf)],
) -> Result<(), Refusal> {
    match loaded.iter().find(|(n, _)| *n == info.name) {
        None => Ok(()),
        Some((_, earlier)) => Err(Refusal::new(
            Stage::Duplicate,
            RefusalKind::Duplicate,
            format!(
                "{}: plugin {} is also in {} (of two files with one plugin name, the higher \
                 plugin version wins, then the first file in scan order); remove the file \
                 not wanted",
                shown(path),
                printable(&info.name),
                shown(earlier)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            plugin_type: PluginType::ProvisionTargetResolver,
            plugin_type_id: 3,
            vendor: "v".into(),
            description: String::new(),
            interface_version: "1.1.0".into(),
            rustc_version: String::new(),
            target: String::new(),
            abi_stable_version: String::new(),
            sdk_version: String::new(),
        }
    }

    #[test]
    fn info_needs_a_name_and_a_semver_version() {
        let p = Path::new("/d/x.so");
        assert!(validate(&info("Acme", "1.2.3-rc.1"), p).is_ok());
        let r = validate(&info("  ", "1.0.0"), p).unwrap_err();
        assert_eq!((r.stage, r.kind), (Stage::Info, RefusalKind::BadInfo));
        assert!(r.message.contains("empty plugin name"), "{r:?}");
        let r = validate(&info("Acme", "1.0"), p).unwrap_err();
        assert_eq!(r.kind, RefusalKind::BadInfo);
        assert!(r.message.contains("`1.0`, which is not semver"), "{r:?}");
        let r = validate(&info("A\ncme", "1.0.0"), p).unwrap_err();
        assert!(r.message.contains("control characters") && !r.message.contains('\n'));
    }

    #[test]
    fn names_reserved_for_the_built_in_resolver_are_refused() {
        let p = Path::new("/d/x.so");
        for name in [
            "default",
            "DEFAULT",
            " Default ",
            "Choria JWT Resolver",
            "choria jwt resolver",
        ] {
            let r = validate(&info(name, "1.0.0"), p).unwrap_err();
            assert_eq!(
                (r.stage, r.kind),
                (Stage::Info, RefusalKind::ReservedName),
                "{name:?}"
            );
            let reason = r.message;
            assert!(
                reason.starts_with("/d/x.so: plugin name ")
                    && reason.contains("is reserved for the built-in resolver; rename the plugin"),
                "{reason}"
            );
            assert!(!reason.contains('\n'));
        }
        for name in ["defaults", "Choria JWT Resolver 2", "Acme"] {
            assert!(validate(&info(name, "1.0.0"), p).is_ok(), "{name:?}");
        }
    }
}
