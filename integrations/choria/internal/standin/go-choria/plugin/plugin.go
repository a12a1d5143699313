// Package plugin stands in for go-choria's plugin package: Pluggable and the
// registration of a Provisioning Target Resolver.
package plugin

import (
	"fmt"

	"github.com/choria-io/go-choria/inter"
	"github.com/choria-io/go-choria/providers/provtarget"
)

// Pluggable is a Choria plugin.
type Pluggable interface {
	// PluginInstance is the value implementing the plugin.
	PluginInstance() any
	// PluginName is a human friendly name.
	PluginName() string
	// PluginType is the plugin's type.
	PluginType() inter.PluginType
	// PluginVersion is the plugin's version.
	PluginVersion() string
}

// Register registers a plugin; only Provisioning Target Resolvers here.
func Register(name string, p Pluggable) error {
	if p.PluginType() != inter.ProvisionTargetResolverPlugin {
		return fmt.Errorf("unknown plugin type %d from %s", p.PluginType(), name)
	}
	instance, ok := p.PluginInstance().(provtarget.TargetResolver)
	if !ok {
		return fmt.Errorf("plugin %s is not a valid ProvisionTargetResolver", p.PluginName())
	}
	return provtarget.RegisterTargetResolver(instance)
}
