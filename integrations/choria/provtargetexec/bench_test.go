package provtargetexec

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// BenchmarkTargets compares one resolution through the bridge (process group,
// bounded reads, stderr relay, JSON decoding) with the baseline of running the
// same command with exec.Command(...).Output() and nothing else, in the same run:
//
//	PROVTARGET_BIN=... PROVTARGET_PLUGIN_DIR=... go test -run '^$' -bench Targets -benchtime 20x ./provtargetexec
func BenchmarkTargets(b *testing.B) {
	bin, dir := benchHost(b)
	args := []string{"--config", "/dev/null", "--set", "plugin.provtarget.cache_dir=none", "--plugin-dir", dir,
		"--resolver", "FQDN Provisioning Target", "--set", "plugin.provtarget.fqdn.identity=web1.lon1.example.net"}
	b.Run("direct-exec", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			out, err := exec.Command(bin, append([]string{"targets", "--json"}, args...)...).Output()
			if err != nil || len(out) == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("bridge", func(b *testing.B) {
		r := New(bin, args...)
		r.Logger = func(Level, string) {}
		for i := 0; i < b.N; i++ {
			if _, err := r.Targets(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchHost(b *testing.B) (string, string) {
	bin, dir := os.Getenv("PROVTARGET_BIN"), os.Getenv("PROVTARGET_PLUGIN_DIR")
	if bin == "" || dir == "" {
		b.Skip("PROVTARGET_BIN and PROVTARGET_PLUGIN_DIR are not set")
	}
	return bin, dir
}
