// Package inter stands in for go-choria's inter package: plugin types.
package inter

// PluginType is a kind of Choria plugin.
type PluginType int

// The plugin types, in go-choria's order.
const (
	UnknownPlugin PluginType = iota
	AgentProviderPlugin
	AgentPlugin
	ProvisionTargetResolverPlugin
	ConfigMutatorPlugin
	MachineWatcherPlugin
	DataPlugin
	MachinePlugin
)

// String returns the type's display name.
func (t PluginType) String() string {
	switch t {
	case AgentProviderPlugin:
		return "Agent Provider"
	case AgentPlugin:
		return "Agent"
	case ProvisionTargetResolverPlugin:
		return "Provisioning Target Resolver"
	case ConfigMutatorPlugin:
		return "Configuration Mutator"
	case MachineWatcherPlugin:
		return "Machine Watcher"
	case DataPlugin:
		return "Data Source"
	case MachinePlugin:
		return "Autonomous Agent"
	}
	return "Unknown Plugin Type"
}
