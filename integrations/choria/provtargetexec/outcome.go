package provtargetexec

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// outcome is what one run of the host gave.
type outcome struct {
	stdout   []byte
	exitCode int    // -1 when killed by a signal
	signal   string // the signal's name when killed by one
	stderr   stderrSummary
	// overflow: stdout passed the bound and the host was killed for it.
	overflow bool
	limit    int
	// cause is the context's error when the call was cancelled.
	cause error
	// forced: the host outlived its grace after SIGTERM and was killed.
	forced bool
	grace  time.Duration
}

// fail makes the error for this outcome; what the bridge itself did (killing the
// host for too much output, or after its grace) takes precedence over kind/msg.
func (o *outcome) fail(op, kind, msg string) *Error {
	switch {
	case o.overflow:
		kind = "output"
		msg = fmt.Sprintf("the host wrote more than %s to stdout; it was killed (the limit is provtargetexec.Resolver.MaxOutput)", byteSize(o.limit))
	case o.forced:
		kind = "cancelled"
		msg = fmt.Sprintf("the call was cancelled (%v) and the host did not end within %v of SIGTERM; its process group was killed", o.cause, o.grace)
	case o.cause != nil && (kind == "killed" || kind == "exit"):
		kind = "cancelled"
		msg = fmt.Sprintf("the call was cancelled (%v): %s", o.cause, msg)
	}
	return &Error{Op: op, Kind: kind, Message: msg, ExitCode: o.exitCode, Signal: o.signal, cause: o.cause}
}

// killedMessage describes a host killed by a signal before it answered.
func (o *outcome) killedMessage() string {
	msg := fmt.Sprintf("the host was killed by %s before it finished answering", o.signal)
	if len(o.stdout) == 0 {
		msg += " (nothing on stdout)"
	} else {
		msg += fmt.Sprintf(" (stdout cut after %s)", byteSize(len(o.stdout)))
	}
	return msg + o.stderr.lastWords()
}

// exitMessage describes an exit status without the documented answer.
func (o *outcome) exitMessage() string {
	msg := fmt.Sprintf("the host exited with status %d", o.exitCode)
	if len(o.stdout) > 0 {
		msg += fmt.Sprintf(" and its stdout (%s) is not the documented JSON failure", byteSize(len(o.stdout)))
	} else {
		msg += " without an answer on stdout"
	}
	return msg + o.stderr.lastWords()
}

// usageMessage is the host's own line for a usage or configuration error.
func (o *outcome) usageMessage() string {
	if o.stderr.first != "" {
		return o.stderr.first
	}
	return "the host exited with status 2 (a usage or configuration error) and said nothing on stderr"
}

func byteSize(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// stderrSummary keeps the first and last stderr lines that were not log lines.
type stderrSummary struct {
	first, last string
}

func (s stderrSummary) lastWords() string {
	if s.last == "" {
		return ""
	}
	return "; its last message: " + s.last
}

var (
	ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")
	// 2026-12-07T12:21:58.967839Z ERROR message plugin="Test Kit"
	logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-][0-9:]+)?\s+(ERROR|WARN|INFO|DEBUG|TRACE)\s+(.*)$`)
)

// parseLogLine splits one stderr line into a level and a message; lines that are
// not the host's log lines are errors, whole.
func parseLogLine(line string) (Level, string, bool) {
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		return LevelError, line, false
	}
	return Level(strings.ToLower(m[1])), m[2], true
}

// relayStderr reads r line by line (each cut at MaxLogLine bytes), hands each to
// log and returns the first and last lines that were not log lines.
func relayStderr(r io.Reader, log Logger) stderrSummary {
	var sum stderrSummary
	br := bufio.NewReaderSize(r, MaxLogLine)
	for {
		raw, err := br.ReadSlice('\n')
		line := string(raw)
		if err == bufio.ErrBufferFull {
			line += " [cut]"
			// Skip the rest of the overlong line.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		}
		line = strings.TrimRight(line, "\r\n")
		line = strings.ToValidUTF8(ansiEscape.ReplaceAllString(line, ""), "\uFFFD")
		if strings.TrimSpace(line) != "" {
			level, msg, isLog := parseLogLine(line)
			if !isLog {
				if sum.first == "" {
					sum.first = line
				}
				sum.last = line
			}
			if log != nil {
				log(level, msg)
			}
		}
		if err != nil {
			return sum
		}
	}
}
