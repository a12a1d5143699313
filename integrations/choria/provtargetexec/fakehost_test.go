package provtargetexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The real host never writes these answers; a shell script stands in for it to
// show what the bridge does with a broken, cut or endless stdout.
func fakeHost(t *testing.T, script string) *Resolver {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-provtarget")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return New(path)
}

// within fails when f takes longer than d (a hang would stop the test run).
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("the call did not return within %v", d)
	}
	return nil
}

func TestAHugeStdoutIsRefusedAndTheHostKilled(t *testing.T) {
	r := fakeHost(t, "exec yes '{\"servers\": [\"a:4222\"]}'")
	entry := tag(t)
	r.Env = []string{entry}
	err := within(t, 60*time.Second, func() error {
		_, err := r.Targets(context.Background())
		return err
	})
	e := asError(t, err)
	if e.Kind != "output" || !strings.Contains(e.Message, "more than 16 MiB to stdout; it was killed") {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
	nothingLeft(t, entry)

	// The bound is adjustable.
	r.MaxOutput = 1000
	_, err = r.Targets(context.Background())
	if e := asError(t, err); !strings.Contains(e.Message, "more than 1000 bytes") {
		t.Fatalf("got %q", e.Message)
	}
}

func TestAnOutputPastTheBoundFromAHostThatHasEndedIsRefused(t *testing.T) {
	// The host ends at once; its output waits in the pipe.
	r := fakeHost(t, `head -c 5000 /dev/zero | tr '\0' ' '; echo '{"servers": ["a:4222"]}'`)
	r.MaxOutput = 1000
	for i := 0; i < 20; i++ {
		_, err := r.Targets(context.Background())
		if e := asError(t, err); e.Kind != "output" || !strings.Contains(e.Message, "more than 1000 bytes to stdout") {
			t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
		}
	}
}

func TestAnOutputAtTheBoundIsRead(t *testing.T) {
	doc := `{"resolver": "x", "servers": ["nats://a:4222"], "failed": []}`
	r := fakeHost(t, "printf '%s' '"+doc+"'")
	r.MaxOutput = len(doc)
	servers, err := r.Targets(context.Background())
	if err != nil || len(servers) != 1 {
		t.Fatalf("servers %q, %v", servers, err)
	}
}

func TestAStdoutCutMidJSONNamesTheExit(t *testing.T) {
	r := fakeHost(t, `printf '{"resolver": "x", "serv'; echo 'provtarget: dying' >&2; kill -9 $$`)
	_, err := r.Targets(context.Background())
	e := asError(t, err)
	want := "the host was killed by SIGKILL before it finished answering (stdout cut after 23 bytes); its last message: provtarget: dying"
	if e.Kind != "killed" || e.Signal != "SIGKILL" || e.Message != want {
		t.Fatalf("got kind %q, signal %q, message %q", e.Kind, e.Signal, e.Message)
	}
}

func TestMalformedStdoutIsAnErrorNamingIt(t *testing.T) {
	for _, c := range []struct{ name, script, want string }{
		{"not JSON", "echo 'Provisioning using 1 broker(s):'; exit 0", "stdout is not the documented JSON: invalid character 'P'"},
		{"cut", `printf '{"servers": ["a:4222"'; exit 0`, "stdout is not the documented JSON: the JSON document is cut short (21 bytes read)"},
		{"trailing", `echo '{"servers": ["a:4222"]} {}'; exit 0`, "stdout is not the documented JSON: text follows the JSON document"},
		{"empty", "exit 0", "stdout is not the documented JSON: it is empty"},
		{"wrong type", `echo '{"servers": "a:4222"}'`, "stdout is not the documented JSON: json: cannot unmarshal string"},
		{"no servers", `echo '{"servers": []}'`, "the host exited 0 without servers in its answer"},
		{"not ok", `echo '{"schema": "provtarget/targets/1", "ok": false, "servers": ["a:4222"]}'`, "the host exited 0 without servers in its answer"},
		{"other schema", `echo '{"schema": "provtarget/targets/2", "servers": ["a:4222"]}'`, `the host answered with schema "provtarget/targets/2"; this bridge reads "provtarget/targets/1"`},
		{"failure without JSON", "echo 'provtarget: something broke' >&2; exit 1", "the host exited with status 1 without an answer on stdout; its last message: provtarget: something broke"},
		{"failure with garbage", "echo garbage; exit 1", "the host exited with status 1 and its stdout (8 bytes) is not the documented JSON failure"},
		{"panic", "echo 'thread main panicked' >&2; exit 101", "the host exited with status 101 without an answer on stdout; its last message: thread main panicked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := fakeHost(t, c.script).Targets(context.Background())
			e := asError(t, err)
			if !strings.Contains(e.Message, c.want) {
				t.Fatalf("message %q does not contain %q", e.Message, c.want)
			}
		})
	}
}

func TestTheAgreedSchemaIsRead(t *testing.T) {
	ok := `{"schema": "provtarget/targets/1", "ok": true, "resolver": "Acme", "servers": ["nats://a:4222", "nats://b:4222"], "error": null, "kind": null, "note": null, "failed": [], "chain": [{"resolver": "Acme", "state": "answered", "reason": null}], "brokers": [{"resolver": "Acme", "server": "nats://a:4222", "passed": true, "reason": null, "server_id": "N1", "version": "2.9.10", "tls": false, "ms": 1.5}], "future_field": 1}`
	report, err := fakeHost(t, "cat <<'EOF'\n"+ok+"\nEOF").Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(report.Servers, ",") != "nats://a:4222,nats://b:4222" || len(report.Chain) != 1 || report.Chain[0].State != "answered" ||
		len(report.Brokers) != 1 || report.Brokers[0].ServerID == nil || *report.Brokers[0].ServerID != "N1" {
		t.Fatalf("report = %+v", report)
	}

	failed := `{"schema": "provtarget/targets/1", "ok": false, "resolver": null, "servers": [], "error": "provisioning target plugin Acme returned no servers", "kind": "no-servers", "note": "a note", "failed": [{"resolver": "Acme", "kind": "no-servers", "error": "provisioning target plugin Acme returned no servers"}], "chain": []}`
	_, err = fakeHost(t, "cat <<'EOF'\n"+failed+"\nEOF\nexit 1").Resolve(context.Background())
	e := asError(t, err)
	if e.Kind != "no-servers" || e.Message != "provisioning target plugin Acme returned no servers" || e.Report == nil || *e.Report.Note != "a note" {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
}

func TestBuildinfoSchemaIsChecked(t *testing.T) {
	name, err := fakeHost(t, `echo '{"schema": "provtarget/buildinfo/1", "resolver": {"name": "Acme", "version": "1.0"}}'`).Name(context.Background())
	if err != nil || name != "Acme" {
		t.Fatalf("Name = %q, %v", name, err)
	}
	_, err = fakeHost(t, `echo '{"schema": "provtarget/buildinfo/9", "resolver": {"name": "Acme"}}'`).Name(context.Background())
	if e := asError(t, err); e.Kind != "output" || !strings.Contains(e.Message, "provtarget/buildinfo/9") {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
	_, err = fakeHost(t, `echo '{"resolver": {}}'`).Name(context.Background())
	if e := asError(t, err); !strings.Contains(e.Message, "names no active resolver") {
		t.Fatalf("got %q", e.Message)
	}
}

func TestAnOverlongStderrLineIsCut(t *testing.T) {
	var got []string
	r := fakeHost(t, `head -c 200000 /dev/zero | tr '\0' x >&2; echo >&2; echo 'after' >&2; echo '{"servers": ["a:4222"]}'`)
	r.Logger = func(level Level, msg string) { got = append(got, msg) }
	if _, err := r.Targets(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != MaxLogLine+len(" [cut]") || !strings.HasSuffix(got[0], "x [cut]") || got[1] != "after" {
		t.Fatalf("got %d line(s), first %d bytes", len(got), len(got[0]))
	}
}

func TestLogLinesAreSplitIntoLevelAndMessage(t *testing.T) {
	for _, c := range []struct {
		line  string
		level Level
		msg   string
		isLog bool
	}{
		{`2026-12-07T12:21:58.967839Z ERROR testkit error line plugin="Test Kit"`, LevelError, `testkit error line plugin="Test Kit"`, true},
		{`2026-12-07T12:21:58.967871Z  WARN a warning`, LevelWarn, "a warning", true},
		{`2026-12-07T12:21:58Z  INFO x`, LevelInfo, "x", true},
		{`2026-12-07T12:21:58.1+01:00 DEBUG y`, LevelDebug, "y", true},
		{`2026-12-07T12:21:58.1Z TRACE z`, LevelTrace, "z", true},
		{`provtarget: interrupted by SIGTERM; exiting`, LevelError, "provtarget: interrupted by SIGTERM; exiting", false},
		{`error: unexpected argument '--bogus' found`, LevelError, "error: unexpected argument '--bogus' found", false},
		{`2026-12-07 INFO not a log line`, LevelError, "2026-12-07 INFO not a log line", false},
	} {
		level, msg, isLog := parseLogLine(c.line)
		if level != c.level || msg != c.msg || isLog != c.isLog {
			t.Errorf("%q: got %q %q %v", c.line, level, msg, isLog)
		}
	}
}

func TestWhatAKilledHostLeftBehindIsEnded(t *testing.T) {
	// A child that would outlive its parent by a minute; the host dies mid-answer.
	r := fakeHost(t, `sleep 60 & printf '{"servers": ['; kill -9 $$`)
	entry := tag(t)
	r.Env = []string{entry}
	_, err := r.Targets(context.Background())
	if e := asError(t, err); e.Kind != "killed" || !strings.Contains(e.Message, "stdout cut after 13 bytes") {
		t.Fatalf("got kind %q, message %q", e.Kind, e.Message)
	}
	nothingLeft(t, entry)
}

func TestAHostIgnoringSIGTERMIsKilledWithItsChildren(t *testing.T) {
	r := fakeHost(t, `trap '' TERM; sleep 60 & echo started >&2; wait`)
	entry := tag(t)
	r.Env = []string{entry}
	r.Grace = 200 * time.Millisecond
	started := make(chan struct{})
	r.Logger = func(_ Level, msg string) {
		if msg == "started" {
			close(started)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	err := within(t, 10*time.Second, func() error {
		_, err := r.Targets(ctx)
		return err
	})
	e := asError(t, err)
	if e.Kind != "cancelled" || e.Signal != "SIGKILL" || !errors.Is(err, context.Canceled) ||
		!strings.Contains(e.Message, "the call was cancelled (context canceled) and the host did not end within 200ms of SIGTERM; its process group was killed") {
		t.Fatalf("got kind %q, signal %q, message %q", e.Kind, e.Signal, e.Message)
	}
	nothingLeft(t, entry)
}
