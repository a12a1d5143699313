// Package provtarget stands in for go-choria's providers/provtarget package: the
// TargetResolver interface and its global registration.
package provtarget

import (
	"context"
	"fmt"
	"sync"

	"github.com/choria-io/go-choria/config"
	"github.com/sirupsen/logrus"
)

// TargetResolver resolves the provisioning brokers.
type TargetResolver interface {
	// Name is the display name shown by `choria buildinfo`.
	Name() string
	// Targets returns host:port or scheme://host:port strings.
	Targets(context.Context, *logrus.Entry) []string
	// Configure is called during server configuration.
	Configure(context.Context, *config.Config, *logrus.Entry)
}

var (
	mu       sync.Mutex
	resolver TargetResolver
)

// RegisterTargetResolver makes r the resolver; the last one registered wins.
func RegisterTargetResolver(r TargetResolver) error {
	mu.Lock()
	defer mu.Unlock()
	resolver = r
	return nil
}

// Configure calls the resolver's Configure.
func Configure(ctx context.Context, cfg *config.Config, log *logrus.Entry) {
	mu.Lock()
	defer mu.Unlock()
	if resolver != nil {
		resolver.Configure(ctx, cfg, log)
	}
}

// Targets calls the resolver's Targets, holding the lock for the whole call.
// (go-choria returns srvcache.Servers; the stand-in returns the strings.)
func Targets(ctx context.Context, log *logrus.Entry) ([]string, error) {
	mu.Lock()
	defer mu.Unlock()
	if resolver == nil {
		return nil, fmt.Errorf("no Provisioning Target Resolver registered")
	}
	s := resolver.Targets(ctx, log)
	if len(s) == 0 {
		return nil, fmt.Errorf("provisioning target plugin %s returned no servers", resolver.Name())
	}
	return s, nil
}

// Name is the resolver's name, or "Unknown".
func Name() string {
	if resolver == nil {
		return "Unknown"
	}
	return resolver.Name()
}
