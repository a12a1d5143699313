//go:build linux

package provtargetexec

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
	"unsafe"
)

// drainWait bounds how long the readers may take to finish once the host and its
// group have ended (only a process that left the group can keep a pipe open).
const drainWait = time.Second

// run starts `<binary> <sub> --json <args...>` in a process group of its own,
// reads its stdout (bounded) and stderr (relayed), and waits for it, signalling it
// when ctx ends. Only a failure to start is returned as an error.
func (r *Resolver) run(ctx context.Context, sub string) (*outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: sub, Kind: "cancelled", Message: fmt.Sprintf("not started: %v", err), ExitCode: -1, cause: err}
	}
	if r.Binary == "" {
		return nil, &Error{Op: sub, Kind: "start", Message: "no provtarget binary given (provtargetexec.New needs its path)", ExitCode: -1}
	}
	limit := r.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	grace := r.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}

	args := append([]string{sub, "--json"}, r.Args...)
	cmd := exec.Command(r.Binary, args...)
	cmd.Env = append(os.Environ(), r.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, &Error{Op: sub, Kind: "start", Message: fmt.Sprintf("cannot make a pipe: %v", err), ExitCode: -1}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, &Error{Op: sub, Kind: "start", Message: fmt.Sprintf("cannot make a pipe: %v", err), ExitCode: -1}
	}
	cmd.Stdout = outW
	cmd.Stderr = errW
	startErr := cmd.Start()
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		return nil, &Error{Op: sub, Kind: "start", Message: fmt.Sprintf("cannot run %s: %v", r.Binary, startErr), ExitCode: -1}
	}
	pid := cmd.Process.Pid

	overflowCh := make(chan struct{})
	type stdoutRead struct {
		data     []byte
		overflow bool
	}
	stdoutCh := make(chan stdoutRead, 1)
	go func() {
		data, overflow := readBounded(outR, limit, overflowCh)
		stdoutCh <- stdoutRead{data, overflow}
	}()
	stderrCh := make(chan stderrSummary, 1)
	go func() { stderrCh <- relayStderr(errR, r.Logger) }()
	exited := make(chan struct{})
	go func() {
		waitExited(pid)
		close(exited)
	}()

	out := &outcome{limit: limit, grace: grace}
	ctxDone := ctx.Done()
	var graceC <-chan time.Time
	var graceTimer *time.Timer
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-ctxDone:
			ctxDone = nil
			out.cause = ctx.Err()
			// The host cancels its resolver, gives it its grace and reports.
			_ = syscall.Kill(pid, syscall.SIGTERM)
			graceTimer = time.NewTimer(grace)
			graceC = graceTimer.C
		case <-graceC:
			graceC = nil
			out.forced = true
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		case <-overflowCh:
			overflowCh = nil
			out.overflow = true
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if graceTimer != nil {
		graceTimer.Stop()
	}
	// The host has ended but is not reaped yet, so its process group id cannot be
	// reused: end whatever is left of the group (resolver child processes).
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	waitErr := cmd.Wait()

	deadline := time.Now().Add(drainWait)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	read := <-stdoutCh
	// The host may have ended before the overflow was seen above.
	out.stdout, out.overflow = read.data, out.overflow || read.overflow
	out.stderr = <-stderrCh
	outR.Close()
	errR.Close()

	if cmd.ProcessState == nil {
		return nil, &Error{Op: sub, Kind: "exit", Message: fmt.Sprintf("cannot wait for %s: %v", r.Binary, waitErr), ExitCode: -1}
	}
	out.exitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		out.signal = signalName(ws.Signal())
		out.exitCode = -1
	} else if waitErr != nil && out.exitCode < 0 {
		return nil, &Error{Op: sub, Kind: "exit", Message: fmt.Sprintf("cannot wait for %s: %v", r.Binary, waitErr), ExitCode: -1}
	}
	return out, nil
}

// readBounded reads r to its end, or to limit bytes: past that it closes overflow,
// stops reading (the caller kills the writer) and reports true.
func readBounded(r io.Reader, limit int, overflow chan<- struct{}) ([]byte, bool) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		if len(buf)+n > limit {
			close(overflow)
			return buf, true
		}
		buf = append(buf, chunk[:n]...)
		if err != nil {
			return buf, false
		}
	}
}

// waitExited blocks until process pid has ended, without reaping it (waitid with
// WNOWAIT), so that its process group id stays reserved until cmd.Wait.
func waitExited(pid int) {
	const pPID = 1      // P_PID
	var info [16]uint64 // siginfo_t: 128 bytes
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	case syscall.SIGBUS:
		return "SIGBUS"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return fmt.Sprintf("signal %d (%s)", int(s), s)
}
