package provtargetexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real host: PROVTARGET_BIN is the provtarget binary built by cargo and
// PROVTARGET_PLUGIN_DIR a directory holding the plugin cdylibs (mode 0755 dir,
// 0644 files), both set by integrations/choria/ci.sh.
func realHost(t *testing.T) (string, string) {
	t.Helper()
	bin, dir := os.Getenv("PROVTARGET_BIN"), os.Getenv("PROVTARGET_PLUGIN_DIR")
	if bin == "" || dir == "" {
		msg := "PROVTARGET_BIN and PROVTARGET_PLUGIN_DIR are not set (integrations/choria/ci.sh sets them)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, f := range []string{"libprovtarget_fqdn.so", "libprovtarget_testkit.so"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("plugin %s missing from PROVTARGET_PLUGIN_DIR: %v", f, err)
		}
	}
	return bin, dir
}

// logRecorder is a Logger keeping every line, and telling when one contains a
// given text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	seen  map[string]chan struct{}
}

func newRecorder(waitFor ...string) *logRecorder {
	l := &logRecorder{seen: map[string]chan struct{}{}}
	for _, w := range waitFor {
		l.seen[w] = make(chan struct{})
	}
	return l
}

func (l *logRecorder) log(level Level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(level)+" "+msg)
	for w, ch := range l.seen {
		if strings.Contains(msg, w) {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}
}

func (l *logRecorder) has(level Level, prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.HasPrefix(line, string(level)+" "+prefix) {
			return true
		}
	}
	return false
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logRecorder) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-l.seen[what]:
	case <-time.After(20 * time.Second):
		t.Fatalf("the host never logged %q; it logged:\n%s", what, l)
	}
}

// tag returns a unique PROVTARGETEXEC_TEST_TAG=... environment entry.
func tag(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "PROVTARGETEXEC_TEST_TAG=" + hex.EncodeToString(b)
}

// tagged lists the live processes whose environment holds entry.
func tagged(entry string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, e := range strings.Split(string(env), "\x00") {
			if e == entry {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// ppidOf reads a process's parent from /proc/PID/stat.
func ppidOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// nothingLeft fails unless every process carrying entry is gone within 2 s of
// the call's return (SIGKILL is delivered asynchronously).
func nothingLeft(t *testing.T, entry string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := tagged(entry)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("processes left behind: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostFor is a Resolver on the real host with a plugin directory, no system
// configuration and no cache, plus extra flags.
func hostFor(t *testing.T, extra ...string) *Resolver {
	bin, dir := realHost(t)
	args := []string{"--config", "/dev/null", "--set", "plugin.provtarget.cache_dir=none", "--plugin-dir", dir}
	return New(bin, append(args, extra...)...)
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got none")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *provtargetexec.Error", err, err)
	}
	return e
}

func fqdnArgs() []string {
	return []string{"--resolver", "FQDN Provisioning Target", "--set", "plugin.provtarget.fqdn.identity=web1.lon1.example.net"}
}

func TestTargetsResolvesWithTheRealHost(t *testing.T) {
	rec := newRecorder()
	r := hostFor(t, append(fqdnArgs(), "--log-level", "info")...)
	r.Logger = rec.log
	servers, err := r.Targets(context.Background())
	if err != nil {
		t.Fatalf("Targets: %v\nlog:\n%s", err, rec)
	}
	if len(servers) != 1 || servers[0] != "nats://provision.lon1.example.net:4222" {
		t.Fatalf("servers = %q", servers)
	}
	if !rec.has(LevelInfo, `identity "web1.lon1.example.net"`) {
		t.Fatalf("the host's info line about the identity was not relayed; got:\n%s", rec)
	}
	report, err := r.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if report.Resolver == nil || *report.Resolver != "FQDN Provisioning Target" {
		t.Fatalf("report names resolver %v", report.Resolver)
	}
}

func TestNameIsTheActiveResolverFromBuildinfo(t *testing.T) {
	name, err := hostFor(t, fqdnArgs()...).Name(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if name != "FQDN Provisioning Target" {
		t.Fatalf("Name = %q", name)
	}
	name, err = hostFor(t, "--resolver", "Test Kit").Name(context.Background())
	if err != nil || name != "Test Kit" {
		t.Fatalf("Name = %q, %v", name, err)
	}
}

func TestStderrLinesAreRelayedWithTheirLevel(t *testing.T) {
	rec := newRecorder()
	r := hostFor(t, "--resolver", "Test Kit", "--set", "testkit.mode=log", "--set", "testkit.targets=a.example:4222", "--log-level", "debug")
	r.Logger = rec.log
	if _, err := r.Targets(context.Background()); err != nil {
		t.Fatal(err)
	}
	for level, msg := range map[Level]string{
		LevelError: "testkit error line",
		LevelWarn:  "testkit warn line",
		LevelInfo:  "testkit info line",
		LevelDebug: "testkit debug line",
	} {
		if !rec.has(level, msg) {
			t.Errorf("no %s line %q relayed; got:\n%s", level, msg, rec)
		}
	}
	if rec.has(LevelError, "20") {
		t.Errorf("a timestamp was left in a message:\n%s", rec)
	}
}

func TestAFailingResolverIsAnErrorWithTheHostsMessage(t *testing.T) {
	_, err := hostFor(t, "--resolver", "Test Kit", "--set", "testkit.mode=error").Targets(context.Background())
	e := asError(t, err)
	want := "could not determine provisioning servers using Test Kit provisioning target plugin: testkit was told to fail"
	if e.Kind != "failed" || e.Message != want || e.ExitCode != 1 {
		t.Fatalf("got kind %q, exit %d, message %q", e.Kind, e.ExitCode, e.Message)
	}
	if e.Error() != "provtarget targets: "+want {
		t.Fatalf("Error() = %q", e.Error())
	}
	if e.Report == nil || len(e.Report.Failed) != 1 || e.Report.Failed[0].Kind != "failed" {
		t.Fatalf("report = %+v", e.Report)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("a failure is not a cancellation")
	}
}

func TestNoServersIsAnError(t *testing.T) {
	_, err := hostFor(t, "--resolver", "Test Kit", "--set", "testkit.mode=empty").Targets(context.Background())
	e := asError(t, err)
	if e.Kind != "no-servers" || !strings.Contains(e.Message, "returned no servers") {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
}

func TestAUsageErrorCarriesTheHostsLine(t *testing.T) {
	_, err := hostFor(t, "--no-such-flag").Targets(context.Background())
	e := asError(t, err)
	if e.Kind != "usage" || e.ExitCode != 2 || !strings.Contains(e.Message, "--no-such-flag") {
		t.Fatalf("got kind %q, exit %d, message %q", e.Kind, e.ExitCode, e.Message)
	}
	_, err = hostFor(t, "--no-such-flag").Name(context.Background())
	if e := asError(t, err); e.Kind != "usage" || !strings.Contains(e.Message, "--no-such-flag") {
		t.Fatalf("Name: kind %q, message %q", e.Kind, e.Message)
	}
}

func TestAMissingBinaryIsAStartError(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "no-provtarget")).Targets(context.Background())
	if e := asError(t, err); e.Kind != "start" || !strings.Contains(e.Message, "no-provtarget") {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
}

func TestACancelledContextDoesNotStartTheHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New("/bin/false").Targets(ctx)
	if e := asError(t, err); e.Kind != "cancelled" || !errors.Is(err, context.Canceled) {
		t.Fatalf("got kind %q, %v", e.Kind, err)
	}
}

// cancelWhileResolving starts a resolution in testkit mode, cancels it once the
// resolver runs, and returns the error, how long the call took after the cancel,
// and the environment tag of its processes.
func cancelWhileResolving(t *testing.T, mode string, grace time.Duration) (error, time.Duration, string) {
	t.Helper()
	rec := newRecorder("testkit configured in mode")
	r := hostFor(t, "--resolver", "Test Kit", "--set", "testkit.mode="+mode, "--set", "testkit.hang_ms=60000", "--log-level", "info")
	r.Logger = rec.log
	r.Grace = grace
	entry := tag(t)
	r.Env = []string{entry}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, err := r.Targets(ctx)
		done <- result{err, time.Now()}
	}()
	rec.wait(t, "testkit configured in mode")
	time.Sleep(300 * time.Millisecond)
	if n := len(tagged(entry)); n < 2 {
		t.Fatalf("expected the host and its resolver process, found %d tagged process(es)", n)
	}
	cancelled := time.Now()
	cancel()
	select {
	case res := <-done:
		return res.err, res.at.Sub(cancelled), entry
	case <-time.After(30 * time.Second):
		t.Fatal("Targets did not return within 30 s of the cancel")
	}
	return nil, 0, ""
}

func TestCancellingEndsTheHostAndItsResolver(t *testing.T) {
	err, took, entry := cancelWhileResolving(t, "wait", 0)
	e := asError(t, err)
	if !errors.Is(err, context.Canceled) || e.Kind != "cancelled" {
		t.Fatalf("got kind %q, %v", e.Kind, err)
	}
	// The host's own report: it cancelled the resolver and said so.
	if e.Report == nil || !strings.Contains(e.Message, "context canceled") || e.ExitCode != 143 {
		t.Fatalf("expected the host's report (exit 143), got exit %d, message %q", e.ExitCode, e.Message)
	}
	if took > DefaultGrace+time.Second {
		t.Fatalf("took %v after the cancel", took)
	}
	nothingLeft(t, entry)
}

func TestAResolverIgnoringCancellationIsKilledWithItsHost(t *testing.T) {
	// The host gives the resolver 2 s; a grace of 300 ms makes the bridge kill
	// the whole group first.
	err, took, entry := cancelWhileResolving(t, "hang", 300*time.Millisecond)
	e := asError(t, err)
	if !errors.Is(err, context.Canceled) || e.Kind != "cancelled" || !strings.Contains(e.Message, "did not end within 300ms of SIGTERM") {
		t.Fatalf("got kind %q, %v", e.Kind, err)
	}
	// Ended by the bridge's SIGKILL, before the host's own 2 s grace was over.
	if e.Signal != "SIGKILL" || took > 1500*time.Millisecond {
		t.Fatalf("the host ended by %q, %v after the cancel", e.Signal, took)
	}
	nothingLeft(t, entry)
}

func TestAResolverIgnoringCancellationIsEndedByTheHostsGrace(t *testing.T) {
	err, took, entry := cancelWhileResolving(t, "hang", 0)
	e := asError(t, err)
	if !errors.Is(err, context.Canceled) || e.Kind != "cancelled" {
		t.Fatalf("got kind %q, %v", e.Kind, err)
	}
	if took > DefaultGrace+time.Second {
		t.Fatalf("took %v after the cancel", took)
	}
	nothingLeft(t, entry)
}

func TestAHostKilledMidAnswerIsAnErrorAndLeavesNothing(t *testing.T) {
	rec := newRecorder("testkit configured in mode")
	r := hostFor(t, "--resolver", "Test Kit", "--set", "testkit.mode=hang", "--set", "testkit.hang_ms=60000", "--log-level", "info")
	r.Logger = rec.log
	entry := tag(t)
	r.Env = []string{entry}
	done := make(chan error, 1)
	go func() {
		_, err := r.Targets(context.Background())
		done <- err
	}()
	rec.wait(t, "testkit configured in mode")
	time.Sleep(300 * time.Millisecond)
	host := -1
	procs := tagged(entry)
	for _, pid := range procs {
		if ppidOf(pid) == os.Getpid() {
			host = pid
		}
	}
	if host < 0 || len(procs) < 2 {
		t.Fatalf("expected the host and its resolver among %v", procs)
	}
	if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Targets did not return within 10 s of the host's death")
	}
	e := asError(t, err)
	if e.Kind != "killed" || e.Signal != "SIGKILL" || e.ExitCode != -1 ||
		!strings.Contains(e.Message, "killed by SIGKILL before it finished answering (nothing on stdout)") {
		t.Fatalf("got kind %q, signal %q, message %q", e.Kind, e.Signal, e.Message)
	}
	nothingLeft(t, entry)
}
