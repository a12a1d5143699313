//go:build !linux

package provtargetexec

import (
	"context"
	"runtime"
)

// run is implemented for Linux only: provtarget and its plugins are Linux
// shared libraries, and ending the host's whole process tree relies on Linux.
func (r *Resolver) run(ctx context.Context, sub string) (*outcome, error) {
	return nil, &Error{Op: sub, Kind: "start", Message: "provtargetexec runs the host on Linux only, not on " + runtime.GOOS, ExitCode: -1}
}
