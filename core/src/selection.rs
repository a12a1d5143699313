//! Which resolvers form the chain: a pure function of the names the configuration
//! asks for and the plugins that loaded, so the policy is tested without `dlopen`.
//!
//! (Private to the crate: `plan(&["Acme DC", "default"], &["Other", "Acme DC"], true)`
//! is `[Member::Plugin(1), Member::BuiltIn]` with no warnings; see the unit tests.)
#![forbid(unsafe_code)]

use provtarget_loader::LoadReport;

use crate::{config::HostConfig, default_resolver};

/// One member of the planned chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// The built-in `Choria JWT Resolver`.
    BuiltIn,
    /// The loaded plugin at this index of the `loaded` list.
    Plugin(usize),
}

/// The chain to build, in order, and what the operator should hear about the choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The members, in order; never empty.
    pub members: Vec<Member>,
    /// One line each: duplicates, names not loaded, fallbacks, a chain without a
    /// deadline.
    pub warnings: Vec<String>,
}

/// Plans the chain.
///
/// - `wanted` empty (`plugin.provtarget.resolvers` unset): the first loaded plugin (a
///   warning names the others when there are several), else the built-in resolver.
/// - Otherwise each name in order: a reserved name (`default`, `Choria JWT Resolver`)
///   is the built-in resolver; any other is the loaded plugin of that name. A name
///   listed twice is used once; a name not loaded is reported with the loaded names.
///   When nothing named is available, the built-in resolver stands in (so a server
///   with `broker_urls` still provisions) and a warning says so.
/// - A chain of several resolvers without a deadline (`has_timeout` false) is
///   reported: the first resolver that keeps retrying would hold it forever.
pub fn plan(wanted: &[String], loaded: &[&str], has_timeout: bool) -> Plan {
    let mut members: Vec<Member> = Vec::new();
    let mut warnings = Vec::new();
    let shown = |name: &str| crate::text::printable(name);
    if wanted.is_empty() {
        match loaded.split_first() {
            Some((first, others)) => {
                if !others.is_empty() {
                    let others: Vec<String> = others.iter().map(|n| shown(n)).collect();
                    warnings.push(format!(
                        "several resolver plugins are loaded; using {}, the first by file name, and ignoring {}; choose with plugin.provtarget.resolvers",
                        shown(first),
                        others.join(", ")
                    ));
                }
                members.push(Member::Plugin(0));
            }
            None => members.push(Member::BuiltIn),
        }
    } else {
        let loaded_names = if loaded.is_empty() {
            "none".to_string()
        } else {
            loaded
                .iter()
                .map(|n| shown(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in wanted {
            // The same rule the loader uses to refuse plugins with these names.
            let member = if provtarget_loader::is_reserved_name(name) {
                Some(Member::BuiltIn)
            } else {
                loaded.iter().position(|n| n == name).map(Member::Plugin)
            };
            match member {
                Some(m) if members.contains(&m) => warnings.push(format!(
                    "resolver {} is listed twice in plugin.provtarget.resolvers; using it once",
                    shown(name)
                )),
                Some(m) => members.push(m),
                None => warnings.push(format!(
                    "resolver {} named in plugin.provtarget.resolvers is not loaded (loaded: {loaded_names}); check the name in `provtarget buildinfo`",
                    shown(name)
                )),
            }
        }
        if members.is_empty() {
            warnings.push(format!(
                "none of the resolvers in plugin.provtarget.resolvers is available; using the built-in {}",
                default_resolver::NAME
            ));
            members.push(Member::BuiltIn);
        }
    }
    if members.len() > 1 && !has_timeout {
        warnings.push(
            "a resolver chain without plugin.provtarget.timeout waits forever on the first resolver that keeps retrying; set a timeout".into(),
        );
    }
    Plan { members, warnings }
}

/// Loads plugins as `options` say, loading only the plugins the chain `config`
/// selects when the verdict cache (`plugin.provtarget.cache_dir`) can report the
/// others without loading them; new and changed files are always loaded to learn
/// what they are. See [`provtarget_loader::load_with`].
pub fn load_for_chain(
    config: &HostConfig,
    options: &provtarget_loader::LoaderOptions,
) -> LoadReport {
    provtarget_loader::load_with(options, |names| chain_plugins(config, names))
}

/// The indices into `names` (the accepted plugins, in scan order) of the plugins the
/// chain `config` selects would run: what [`provtarget_loader::load_with`] must load.
pub fn chain_plugins(config: &HostConfig, names: &[&str]) -> Vec<usize> {
    plan(config.resolvers(), names, config.timeout().is_some())
        .members
        .into_iter()
        .filter_map(|m| match m {
            Member::Plugin(i) => Some(i),
            Member::BuiltIn => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_plugin_then_the_built_in_resolver() {
        let wanted = vec!["Acme DC".to_string(), "default".to_string()];
        let p = plan(&wanted, &["Other", "Acme DC"], true);
        assert_eq!(p.members, [Member::Plugin(1), Member::BuiltIn]);
        assert!(p.warnings.is_empty());
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nothing_wanted_takes_the_single_plugin_or_the_built_in() {
        assert_eq!(plan(&[], &[], false).members, [Member::BuiltIn]);
        let p = plan(&[], &["A"], false);
        assert_eq!(p.members, [Member::Plugin(0)]);
        assert!(p.warnings.is_empty());
        let p = plan(&[], &["A", "B", "C"], false);
        assert_eq!(p.members, [Member::Plugin(0)]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("using A, the first by file name, and ignoring B, C"));
    }

    #[test]
    fn wanted_names_build_the_chain_in_order() {
        let p = plan(&names(&["B", "default", "A"]), &["A", "B"], true);
        assert_eq!(
            p.members,
            [Member::Plugin(1), Member::BuiltIn, Member::Plugin(0)]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Both reserved spellings are the one built-in resolver.
        let p = plan(&names(&["Choria JWT Resolver", "default"]), &[], true);
        assert_eq!(p.members, [Member::BuiltIn]);
        assert!(p.warnings[0].contains("listed twice"));
    }

    #[test]
    fn duplicates_and_unknown_names_are_reported_not_fatal() {
        let p = plan(&names(&["A", "A", "Nope"]), &["A"], true);
        assert_eq!(p.members, [Member::Plugin(0)]);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("resolver A is listed twice"));
        assert!(p.warnings[1].contains(
            "resolver Nope named in plugin.provtarget.resolvers is not loaded (loaded: A)"
        ));
        // A name holding a comma is one name.
        let p = plan(
            &names(&["Acme, Inc. resolver"]),
            &["Acme", "Acme, Inc. resolver"],
            true,
        );
        assert_eq!(p.members, [Member::Plugin(1)]);
    }

    #[test]
    fn nothing_available_falls_back_to_the_built_in_with_a_warning() {
        let p = plan(&names(&["Gone"]), &[], true);
        assert_eq!(p.members, [Member::BuiltIn]);
        assert!(p.warnings[0].contains("(loaded: none)"));
        assert!(p.warnings[1].contains("using the built-in Choria JWT Resolver"));
    }

    #[test]
    fn a_chain_without_a_deadline_is_reported() {
        let p = plan(&names(&["A", "default"]), &["A"], false);
        assert_eq!(p.members.len(), 2);
        assert!(p
            .warnings
            .iter()
            .any(|w| w.contains("without plugin.provtarget.timeout")));
        assert!(plan(&names(&["A"]), &["A"], false).warnings.is_empty());
    }

    #[test]
    fn plugin_text_in_warnings_is_escaped() {
        let p = plan(&names(&["x\x1b[2J"]), &["y\ninjected"], true);
        assert!(
            p.warnings
                .iter()
                .all(|w| !w.contains('\x1b') && !w.contains('\n')),
            "{:?}",
            p.warnings
        );
    }
}
