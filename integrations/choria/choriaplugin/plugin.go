//go:build choria

package choriaplugin

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/choria-io/go-choria/backoff"
	"github.com/choria-io/go-choria/build"
	"github.com/choria-io/go-choria/config"
	"github.com/choria-io/go-choria/inter"
	"github.com/choria-io/go-choria/plugin"
	"github.com/sirupsen/logrus"

	"provtarget.example.net/integrations/choria/provtargetexec"
)

// Binary is the provtarget executable the plugin runs.
var Binary = "/usr/bin/provtarget"

// Version is this plugin's version, shown by `choria buildinfo`.
const Version = "0.1.0"

// PluginName is the plugin's name in Choria.
const PluginName = "provtarget"

// NameTimeout bounds the `provtarget buildinfo` run that finds the active
// resolver's name for Name.
var NameTimeout = 10 * time.Second

// The host's keys fed from the Choria binary's compiled-in provisioning settings,
// when the server's configuration does not set them itself.
var buildKeys = map[string]func() string{
	"plugin.provtarget.jwt_file":    func() string { return build.ProvisionJWTFile },
	"plugin.provtarget.broker_urls": func() string { return build.ProvisionBrokerURLs },
	"plugin.provtarget.srv_domain":  func() string { return build.ProvisionBrokerSRVDomain },
}

// Resolver is Choria's provtarget.TargetResolver backed by the provtarget binary;
// it is also its own plugin.Pluggable.
type Resolver struct {
	mu sync.Mutex
	// args are the host flags Configure worked out.
	args []string
	// env are the PROVTARGET_<NAME> entries Configure worked out.
	env []string
	// logLevel is the host's --log-level matching the server's logger.
	logLevel string
	// name is the active resolver's name, once known.
	name string
}

// ChoriaPlugin is the entry point Choria's generated loader calls.
func ChoriaPlugin() plugin.Pluggable {
	return &Resolver{}
}

// PluginInstance returns the resolver itself.
func (r *Resolver) PluginInstance() any { return r }

// PluginName returns "provtarget".
func (r *Resolver) PluginName() string { return PluginName }

// PluginType returns inter.ProvisionTargetResolverPlugin.
func (r *Resolver) PluginType() inter.PluginType { return inter.ProvisionTargetResolverPlugin }

// PluginVersion returns Version.
func (r *Resolver) PluginVersion() string { return Version }

// host returns a provtargetexec.Resolver with the configured flags, relaying the
// host's log lines to log (when not nil).
func (r *Resolver) host(log *logrus.Entry) *provtargetexec.Resolver {
	r.mu.Lock()
	args := append([]string(nil), r.args...)
	env := append([]string(nil), r.env...)
	level := r.logLevel
	r.mu.Unlock()
	if level != "" {
		args = append(args, "--log-level", level)
	}
	h := provtargetexec.New(Binary, args...)
	h.Env = env
	if log != nil {
		h.Logger = func(level provtargetexec.Level, msg string) {
			switch {
			case level == provtargetexec.LevelError && strings.HasPrefix(msg, "provtarget: "):
				// The host's final line: it is the message of the error Targets
				// and Configure log.
				log.Debugf("%s", msg)
			case level == provtargetexec.LevelError:
				log.Errorf("provtarget: %s", msg)
			case level == provtargetexec.LevelWarn:
				log.Warnf("provtarget: %s", msg)
			case level == provtargetexec.LevelInfo:
				log.Infof("provtarget: %s", msg)
			case level == provtargetexec.LevelDebug:
				log.Debugf("provtarget: %s", msg)
			default:
				log.Tracef("provtarget: %s", msg)
			}
		}
	}
	return h
}

// Name returns the active resolver's name as `provtarget buildinfo` reports it,
// followed by " (via provtarget)"; "provtarget" alone when the binary cannot
// tell (the next call tries again).
func (r *Resolver) Name() string {
	r.mu.Lock()
	name := r.name
	r.mu.Unlock()
	if name != "" {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), NameTimeout)
	defer cancel()
	active, err := r.host(nil).Name(ctx)
	if err != nil {
		return PluginName
	}
	name = active + " (via provtarget)"
	r.mu.Lock()
	r.name = name
	r.mu.Unlock()
	return name
}

// Configure hands the server's configuration file, identity and provisioning
// settings to the host, and asks it which resolver is active.
func (r *Resolver) Configure(ctx context.Context, cfg *config.Config, log *logrus.Entry) {
	var args, env []string
	if cfg != nil {
		if cfg.ConfigFile != "" {
			args = append(args, "--config", cfg.ConfigFile)
		}
		if cfg.Identity != "" {
			args = append(args, "--set", "identity="+cfg.Identity)
		}
		// Compiled-in settings go through the environment (PROVTARGET_<NAME>),
		// which outranks the file, so only for keys the file does not set; not in
		// argv, since broker URLs may carry credentials.
		keys := make([]string, 0, len(buildKeys))
		for key := range buildKeys {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if value := buildKeys[key](); value != "" && !cfg.HasOption(key) {
				env = append(env, "PROVTARGET_"+strings.ToUpper(strings.TrimPrefix(key, "plugin.provtarget."))+"="+value)
			}
		}
	}
	level := ""
	if log != nil && log.Logger != nil {
		level = hostLevel(log.Logger.GetLevel())
	}
	r.mu.Lock()
	r.args, r.env, r.logLevel, r.name = args, env, level, ""
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, NameTimeout)
	defer cancel()
	info, err := r.host(log).Buildinfo(ctx)
	if err != nil {
		if log != nil {
			log.Warnf("provtarget cannot tell its active resolver: %v", err)
		}
		return
	}
	r.mu.Lock()
	r.name = info.Resolver.Name + " (via provtarget)"
	r.mu.Unlock()
	if log != nil {
		log.Infof("provtarget %s: active resolver %s %s", info.Build.Version, info.Resolver.Name, info.Resolver.Version)
	}
}

// Targets asks the host until it answers with servers or ctx ends (then it
// returns nil), sleeping between tries with Choria's FiveSec backoff.
func (r *Resolver) Targets(ctx context.Context, log *logrus.Entry) []string {
	host := r.host(log)
	var servers []string
	err := backoff.FiveSec.For(ctx, func(try int) error {
		report, err := host.Resolve(ctx)
		if err != nil {
			if ctx.Err() == nil && log != nil {
				log.Warnf("provisioning target resolution through provtarget failed (try %d): %v", try, err)
			}
			return err
		}
		servers = report.Servers
		if log != nil {
			by := "provtarget"
			if report.Resolver != nil {
				by = *report.Resolver
			}
			log.Infof("%s found %d provisioning broker(s): %s", by, len(servers), strings.Join(servers, ", "))
		}
		return nil
	})
	if err != nil {
		if log != nil {
			log.Warnf("provisioning target resolution through provtarget stopped: %v", err)
		}
		return nil
	}
	return servers
}

// hostLevel maps a logrus level to the host's --log-level.
func hostLevel(l logrus.Level) string {
	switch l {
	case logrus.TraceLevel:
		return "trace"
	case logrus.DebugLevel:
		return "debug"
	case logrus.InfoLevel:
		return "info"
	case logrus.WarnLevel:
		return "warn"
	default:
		return "error"
	}
}
