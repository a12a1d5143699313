//! Choria's plugin types, with the numeric ids and display strings Choria uses.
#![forbid(unsafe_code)]

use std::fmt;

/// The kind of a Choria plugin. Only [`PluginType::ProvisionTargetResolver`] is loaded
/// by provtarget; every other type is refused.
///
/// ```
/// use provtarget_abi::PluginType;
/// assert_eq!(PluginType::from_id(3), PluginType::ProvisionTargetResolver);
/// assert_eq!(PluginType::from_id(3).to_string(), "Provisioning Target Resolver");
/// assert_eq!(PluginType::from_id(42), PluginType::Unknown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PluginType {
    /// 0, also what any id outside 0–7 maps to.
    Unknown = 0,
    /// 1
    AgentProvider = 1,
    /// 2
    Agent = 2,
    /// 3: the only type provtarget loads.
    ProvisionTargetResolver = 3,
    /// 4
    ConfigMutator = 4,
    /// 5
    MachineWatcher = 5,
    /// 6
    DataSource = 6,
    /// 7
    AutonomousAgent = 7,
}

impl PluginType {
    /// Every type, in id order.
    pub const ALL: [PluginType; 8] = [
        PluginType::Unknown,
        PluginType::AgentProvider,
        PluginType::Agent,
        PluginType::ProvisionTargetResolver,
        PluginType::ConfigMutator,
        PluginType::MachineWatcher,
        PluginType::DataSource,
        PluginType::AutonomousAgent,
    ];

    /// The type with this numeric id; unknown ids give [`PluginType::Unknown`].
    pub fn from_id(id: u32) -> PluginType {
        Self::ALL
            .get(id as usize)
            .copied()
            .unwrap_or(PluginType::Unknown)
    }

    /// The numeric id Choria uses for this type.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Choria's display string for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::Unknown => "Unknown Plugin Type",
            PluginType::AgentProvider => "Agent Provider",
            PluginType::Agent => "Agent",
            PluginType::ProvisionTargetResolver => "Provisioning Target Resolver",
            PluginType::ConfigMutator => "Configuration Mutator",
            PluginType::MachineWatcher => "Machine Watcher",
            PluginType::DataSource => "Data Source",
            PluginType::AutonomousAgent => "Autonomous Agent",
        }
    }
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_display_strings_match_choria() {
        let expected = [
            (0, "Unknown Plugin Type"),
            (1, "Agent Provider"),
            (2, "Agent"),
            (3, "Provisioning Target Resolver"),
            (4, "Configuration Mutator"),
            (5, "Machine Watcher"),
            (6, "Data Source"),
            (7, "Autonomous Agent"),
        ];
        for (id, text) in expected {
            let t = PluginType::from_id(id);
            assert_eq!(t.id(), id);
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(PluginType::from_id(8), PluginType::Unknown);
        assert_eq!(PluginType::from_id(u32::MAX), PluginType::Unknown);
    }
}
