// Package provtargetexec runs the provtarget binary for a Go program, typically a
// Choria server, and reads its answers through the documented JSON schemas.
//
// It uses the standard library only and builds with Go 1.19.
//
//	r := provtargetexec.New("/usr/bin/provtarget", "--config", "/etc/choria/server.conf")
//	name, err := r.Name(ctx)       // buildinfo --json: the active resolver's name
//	servers, err := r.Targets(ctx) // targets --json: ["nats://host:4222", ...]
//
// Every call starts the binary in a process group of its own. Cancelling the
// context sends SIGTERM to the host, which cancels its resolver and reports the
// failure; when the host has not ended after [Resolver.Grace], the whole group is
// killed with SIGKILL. When the host ends, whatever is left of its group (resolver
// child processes of the default `process` isolation) is killed too, so no process
// outlives a call.
//
// What is read is bounded: stdout to [Resolver.MaxOutput] bytes (the host is killed
// and an error returned beyond that), each stderr line to [MaxLogLine] bytes.
// Errors are of type [*Error] and carry the host's own message.
package provtargetexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// TargetsSchema is the schema identifier of `provtarget targets --json`.
const TargetsSchema = "provtarget/targets/1"

// BuildinfoSchema is the schema identifier of `provtarget buildinfo --json`.
const BuildinfoSchema = "provtarget/buildinfo/1"

// DefaultMaxOutput bounds what is read from the host's stdout (16 MiB).
const DefaultMaxOutput = 16 << 20

// MaxLogLine bounds one stderr line relayed to the [Logger]; longer lines are cut
// and marked with " [cut]".
const MaxLogLine = 64 << 10

// DefaultGrace is how long the host may take to end after SIGTERM before its
// process group is killed: the host gives a cancelled resolver 2 s, plus a margin
// to report the failure.
const DefaultGrace = 3 * time.Second

// Level is the level of a line the host logged on stderr.
type Level string

// The levels of the host's log lines. Lines that are not log lines (usage errors,
// the final `provtarget: ...` line) are relayed as LevelError.
const (
	LevelError Level = "error"
	LevelWarn  Level = "warn"
	LevelInfo  Level = "info"
	LevelDebug Level = "debug"
	LevelTrace Level = "trace"
)

// Logger receives each line the host writes on stderr: its level and the message
// (the host's timestamp removed). It is called from one goroutine at a time.
type Logger func(level Level, message string)

// Resolver runs one provtarget binary with fixed extra flags.
type Resolver struct {
	// Binary is the path of the provtarget executable.
	Binary string
	// Args are extra flags given after the subcommand to every call (for example
	// `--config F`, `--plugin-dir D`, `--set K=V`, `--resolver NAME`,
	// `--log-level info`); they must be valid for both `targets` and `buildinfo`.
	Args []string
	// Logger, when set, receives the host's stderr lines.
	Logger Logger
	// Env holds extra `KEY=VALUE` entries added to this process's environment.
	Env []string
	// Grace is how long the host may take to end after SIGTERM (default
	// DefaultGrace).
	Grace time.Duration
	// MaxOutput bounds the bytes read from stdout (default DefaultMaxOutput).
	MaxOutput int
}

// New returns a Resolver running binary with the extra flags args.
func New(binary string, args ...string) *Resolver {
	return &Resolver{Binary: binary, Args: append([]string(nil), args...)}
}

// Failure is one resolver's failure in a targets report.
type Failure struct {
	// Resolver is the resolver that failed, if any.
	Resolver *string `json:"resolver"`
	// Kind is the failure's kind (failed, no-servers, deadline-exceeded, ...).
	Kind string `json:"kind"`
	// Error is the line the host printed for it.
	Error string `json:"error"`
}

// ChainEntry is one resolver of the chain and what became of it.
type ChainEntry struct {
	// Resolver is the resolver's name.
	Resolver string `json:"resolver"`
	// State is answered, failed, disabled or not-run.
	State string `json:"state"`
	// Reason explains a failed or disabled state.
	Reason *string `json:"reason"`
}

// Broker is one broker check result (present only when the host's broker check
// is on).
type Broker struct {
	// Resolver is the resolver that gave the server.
	Resolver string `json:"resolver"`
	// Server is the checked URL.
	Server string `json:"server"`
	// Passed tells whether the check passed.
	Passed bool `json:"passed"`
	// Reason explains a failed check.
	Reason *string `json:"reason"`
	// ServerID is the broker's server_id from its INFO line.
	ServerID *string `json:"server_id"`
	// Version is the broker's version from its INFO line.
	Version *string `json:"version"`
	// TLS tells whether the check used TLS.
	TLS bool `json:"tls"`
	// Ms is how long the check took, in milliseconds.
	Ms float64 `json:"ms"`
}

// TargetsReport is the document `provtarget targets --json` prints, for success
// and failure alike (schema provtarget/targets/1; documents without "schema" and
// "ok", from hosts before it, are read too).
type TargetsReport struct {
	// Schema is "provtarget/targets/1" (empty from older hosts).
	Schema string `json:"schema"`
	// OK tells whether servers were found (nil from older hosts).
	OK *bool `json:"ok"`
	// Resolver is the resolver that answered.
	Resolver *string `json:"resolver"`
	// Servers are the brokers, as nats://host:port URLs; empty on failure.
	Servers []string `json:"servers"`
	// Error is the final line printed on failure.
	Error *string `json:"error"`
	// Kind is no-resolver, cancelled, deadline-exceeded, no-servers or failed.
	Kind *string `json:"kind"`
	// Note is an extra explanation of a failure.
	Note *string `json:"note"`
	// Failed lists every resolver that failed on the way.
	Failed []Failure `json:"failed"`
	// Chain lists the chain's resolvers and their states.
	Chain []ChainEntry `json:"chain"`
	// Brokers are the broker check results.
	Brokers []Broker `json:"brokers"`
}

// BuildInfo is the part of `provtarget buildinfo --json` this package reads.
type BuildInfo struct {
	// Schema is "provtarget/buildinfo/1" (empty from older hosts).
	Schema string `json:"schema"`
	// Build describes the host binary.
	Build struct {
		// Version is the host's version.
		Version string `json:"version"`
		// InterfaceVersion is the plugin interface the host was built with.
		InterfaceVersion string `json:"interface_version"`
	} `json:"build"`
	// Resolver is the active resolver (the chain's first).
	Resolver struct {
		// Name is the active resolver's name.
		Name string `json:"name"`
		// Version is its version.
		Version string `json:"version"`
	} `json:"resolver"`
	// Chain lists the resolvers in order.
	Chain []struct {
		// Name is the resolver's name.
		Name string `json:"name"`
		// Version is its version.
		Version string `json:"version"`
		// Origin is "built-in" or the library's path.
		Origin string `json:"origin"`
	} `json:"chain"`
	// Warnings are the host's warnings, as printed.
	Warnings []string `json:"warnings"`
}

// Error is every error this package returns.
type Error struct {
	// Op is the subcommand run: "targets" or "buildinfo".
	Op string
	// Kind is the host's failure kind (no-resolver, cancelled, deadline-exceeded,
	// no-servers, failed) when it reported one, else one of: "start" (the binary
	// could not be started), "usage" (exit 2: a usage or configuration error),
	// "killed" (the host was killed by a signal before it answered), "output"
	// (stdout too large, malformed or not the documented schema), "exit" (any
	// other exit status).
	Kind string
	// Message is the host's own message (its JSON "error", or its stderr line), or
	// what went wrong reading it.
	Message string
	// ExitCode is the host's exit status; -1 when it was killed by a signal or
	// never started.
	ExitCode int
	// Signal is the name of the signal that killed the host (SIGKILL, ...), if any.
	Signal string
	// Report is the host's targets report, when one was read.
	Report *TargetsReport
	// cause is the context's error when the call was cancelled.
	cause error
}

// Error returns "provtarget <op>: <message>".
func (e *Error) Error() string {
	return fmt.Sprintf("provtarget %s: %s", e.Op, e.Message)
}

// Unwrap returns the context's error when the call was cancelled (so
// errors.Is(err, context.Canceled) works), else nil.
func (e *Error) Unwrap() error { return e.cause }

// Targets runs `targets --json` and returns the servers found.
func (r *Resolver) Targets(ctx context.Context) ([]string, error) {
	report, err := r.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	return report.Servers, nil
}

// Resolve runs `targets --json` and returns the whole report when servers were
// found; otherwise an *Error whose Report is the host's report, if it gave one.
func (r *Resolver) Resolve(ctx context.Context) (*TargetsReport, error) {
	const op = "targets"
	out, err := r.run(ctx, op)
	if err != nil {
		return nil, err
	}
	fail := func(kind, msg string) (*TargetsReport, error) {
		return nil, out.fail(op, kind, msg)
	}
	if out.signal != "" {
		return fail("killed", out.killedMessage())
	}
	switch out.exitCode {
	case 0:
		var report TargetsReport
		if err := decodeStrict(out.stdout, &report); err != nil {
			return fail("output", fmt.Sprintf("the host exited 0 but its stdout is not the documented JSON: %v (%s)", err, sizeOf(out.stdout)))
		}
		if report.Schema != "" && report.Schema != TargetsSchema {
			return fail("output", fmt.Sprintf("the host answered with schema %q; this bridge reads %q", report.Schema, TargetsSchema))
		}
		if (report.OK != nil && !*report.OK) || len(report.Servers) == 0 {
			return fail("output", "the host exited 0 without servers in its answer")
		}
		for _, s := range report.Servers {
			if strings.TrimSpace(s) == "" {
				return fail("output", "the host answered with an empty server")
			}
		}
		return &report, nil
	case 2:
		return fail("usage", out.usageMessage())
	default:
		// 1 (no servers) and 130/143 (signals) come with the failure as JSON.
		var report TargetsReport
		if len(out.stdout) == 0 || decodeStrict(out.stdout, &report) != nil || report.Error == nil ||
			(report.Schema != "" && report.Schema != TargetsSchema) {
			return fail("exit", out.exitMessage())
		}
		kind := "failed"
		if report.Kind != nil && *report.Kind != "" {
			kind = *report.Kind
		}
		e := out.fail(op, kind, *report.Error)
		e.Report = &report
		return nil, e
	}
}

// Buildinfo runs `buildinfo --json` and returns what it reports.
func (r *Resolver) Buildinfo(ctx context.Context) (*BuildInfo, error) {
	const op = "buildinfo"
	out, err := r.run(ctx, op)
	if err != nil {
		return nil, err
	}
	if out.signal != "" {
		return nil, out.fail(op, "killed", out.killedMessage())
	}
	switch out.exitCode {
	case 0:
	case 2:
		return nil, out.fail(op, "usage", out.usageMessage())
	default:
		return nil, out.fail(op, "exit", out.exitMessage())
	}
	var info BuildInfo
	if err := decodeStrict(out.stdout, &info); err != nil {
		return nil, out.fail(op, "output", fmt.Sprintf("the host exited 0 but its stdout is not the documented JSON: %v (%s)", err, sizeOf(out.stdout)))
	}
	if info.Schema != "" && info.Schema != BuildinfoSchema {
		return nil, out.fail(op, "output", fmt.Sprintf("the host answered with schema %q; this bridge reads %q", info.Schema, BuildinfoSchema))
	}
	if info.Resolver.Name == "" {
		return nil, out.fail(op, "output", "the host's buildinfo names no active resolver")
	}
	return &info, nil
}

// Name returns the active resolver's name, from `buildinfo --json`.
func (r *Resolver) Name(ctx context.Context) (string, error) {
	info, err := r.Buildinfo(ctx)
	if err != nil {
		return "", err
	}
	return info.Resolver.Name, nil
}

// decodeStrict decodes exactly one JSON document (and nothing else but white
// space) into v.
func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("it is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errors.New("the JSON document is cut short")
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("text follows the JSON document")
	}
	return nil
}

func sizeOf(b []byte) string {
	return fmt.Sprintf("%d bytes read", len(b))
}
