//go:build choria

package choriacheck

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choria-io/go-choria/build"
	"github.com/choria-io/go-choria/config"
	"github.com/choria-io/go-choria/inter"
	"github.com/choria-io/go-choria/plugin"
	"github.com/choria-io/go-choria/providers/provtarget"
	"github.com/sirupsen/logrus"

	"provtarget.example.net/integrations/choria/choriaplugin"
)

// The adapter has the types Choria asks for.
var (
	_ provtarget.TargetResolver = (*choriaplugin.Resolver)(nil)
	_ plugin.Pluggable          = (*choriaplugin.Resolver)(nil)
	_ func() plugin.Pluggable   = choriaplugin.ChoriaPlugin
)

func realHost(t *testing.T) string {
	t.Helper()
	bin, dir := os.Getenv("PROVTARGET_BIN"), os.Getenv("PROVTARGET_PLUGIN_DIR")
	if bin == "" || dir == "" {
		msg := "PROVTARGET_BIN and PROVTARGET_PLUGIN_DIR are not set (integrations/choria/ci.sh sets them)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	choriaplugin.Binary = bin
	return dir
}

// serverConf writes a Choria server.conf using the test plugins and no cache.
func serverConf(t *testing.T, lines ...string) string {
	dir := realHost(t)
	path := filepath.Join(t.TempDir(), "server.conf")
	text := "plugin.provtarget.directories = " + dir + "\nplugin.provtarget.cache_dir = none\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func logger(level logrus.Level) (*logrus.Entry, *syncBuffer) {
	out := &syncBuffer{}
	l := logrus.New()
	l.Out = out
	l.Level = level
	return logrus.NewEntry(l), out
}

// register registers a fresh adapter the way Choria's generated loader does.
func register(t *testing.T) plugin.Pluggable {
	t.Helper()
	p := choriaplugin.ChoriaPlugin()
	if p.PluginType() != inter.ProvisionTargetResolverPlugin || p.PluginType().String() != "Provisioning Target Resolver" ||
		p.PluginName() != "provtarget" || p.PluginVersion() == "" {
		t.Fatalf("plugin type %v, name %q, version %q", p.PluginType(), p.PluginName(), p.PluginVersion())
	}
	if err := plugin.Register("provtarget", p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTheAdapterResolvesWithTheServersIdentity(t *testing.T) {
	conf := serverConf(t, "plugin.provtarget.resolvers = FQDN Provisioning Target")
	register(t)
	cfg := config.NewConfigForTests()
	cfg.ConfigFile = conf
	// The fqdn plugin falls back to Choria's identity key: the server's identity
	// must reach the host.
	cfg.Identity = "web1.lon1.example.net"
	log, out := logger(logrus.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provtarget.Configure(ctx, cfg, log)
	if name := provtarget.Name(); name != "FQDN Provisioning Target (via provtarget)" {
		t.Fatalf("Name = %q; log:\n%s", name, out)
	}
	servers, err := provtarget.Targets(ctx, log)
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, out)
	}
	if strings.Join(servers, ",") != "nats://provision.lon1.example.net:4222" {
		t.Fatalf("servers = %q", servers)
	}
	for _, want := range []string{
		`info provtarget: identity "web1.lon1.example.net" (set by identity) gave 1 target(s)`,
		"info FQDN Provisioning Target found 1 provisioning broker(s): nats://provision.lon1.example.net:4222",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestCompiledInProvisioningSettingsReachTheHost(t *testing.T) {
	defer func(jwt, urls string) { build.ProvisionJWTFile, build.ProvisionBrokerURLs = jwt, urls }(build.ProvisionJWTFile, build.ProvisionBrokerURLs)
	build.ProvisionJWTFile = filepath.Join(t.TempDir(), "no-provisioning.jwt")
	build.ProvisionBrokerURLs = "nats://compiled.example.net:4222"
	register(t)
	log, out := logger(logrus.WarnLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The built-in Choria JWT Resolver reads the JWT file and broker URLs.
	cfg := config.NewConfigForTests()
	cfg.ConfigFile = serverConf(t, "plugin.provtarget.resolvers = default")
	provtarget.Configure(ctx, cfg, log)
	servers, err := provtarget.Targets(ctx, log)
	if err != nil || strings.Join(servers, ",") != "nats://compiled.example.net:4222" {
		t.Fatalf("servers %q, %v; log:\n%s", servers, err, out)
	}
	if name := provtarget.Name(); name != "Choria JWT Resolver (via provtarget)" {
		t.Fatalf("Name = %q", name)
	}

	// A value in the server's configuration wins over the compiled-in one.
	cfg = config.NewConfigForTests()
	cfg.ConfigFile = serverConf(t, "plugin.provtarget.resolvers = default", "plugin.provtarget.broker_urls = nats://configured.example.net:4222")
	cfg.SetOption("plugin.provtarget.broker_urls", "nats://configured.example.net:4222")
	provtarget.Configure(ctx, cfg, log)
	servers, err = provtarget.Targets(ctx, log)
	if err != nil || strings.Join(servers, ",") != "nats://configured.example.net:4222" {
		t.Fatalf("servers %q, %v; log:\n%s", servers, err, out)
	}
}

func TestTargetsRetriesWithBackoffUntilCancelled(t *testing.T) {
	conf := serverConf(t, "plugin.provtarget.resolvers = Test Kit", "testkit.mode = error")
	register(t)
	cfg := config.NewConfigForTests()
	cfg.ConfigFile = conf
	log, out := logger(logrus.WarnLevel)
	provtarget.Configure(context.Background(), cfg, log)
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	servers, err := provtarget.Targets(ctx, log)
	took := time.Since(start)
	if err == nil || len(servers) != 0 || err.Error() != "provisioning target plugin Test Kit (via provtarget) returned no servers" {
		t.Fatalf("servers %q, %v", servers, err)
	}
	text := out.String()
	for _, want := range []string{
		"warning provisioning target resolution through provtarget failed (try 1): provtarget targets: could not determine provisioning servers using Test Kit provisioning target plugin: testkit was told to fail",
		"(try 2): provtarget targets:",
		"warning provisioning target resolution through provtarget stopped: context deadline exceeded",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "error provtarget: ") {
		t.Errorf("the host's final line was relayed as an error besides the warning:\n%s", text)
	}
	if took < 2400*time.Millisecond || took > 10*time.Second {
		t.Fatalf("Targets returned after %v; it should retry until the 2.5 s deadline", took)
	}
}

func TestNameWithoutAHostIsThePluginsName(t *testing.T) {
	realHost(t)
	defer func(b string) { choriaplugin.Binary = b }(choriaplugin.Binary)
	choriaplugin.Binary = filepath.Join(t.TempDir(), "no-provtarget")
	r := choriaplugin.ChoriaPlugin().PluginInstance().(provtarget.TargetResolver)
	if name := r.Name(); name != "provtarget" {
		t.Fatalf("Name = %q", name)
	}
}
