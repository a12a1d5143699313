// Package logrus stands in for github.com/sirupsen/logrus: the Logger, Entry and
// Level API the adapter uses. Lines are written to Logger.Out as "level message".
package logrus

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Level is a logging level.
type Level uint32

// The levels, most severe first.
const (
	PanicLevel Level = iota
	FatalLevel
	ErrorLevel
	WarnLevel
	InfoLevel
	DebugLevel
	TraceLevel
)

// String names the level.
func (l Level) String() string {
	return [...]string{"panic", "fatal", "error", "warning", "info", "debug", "trace"}[l]
}

// Logger writes entries at or above its level to Out.
type Logger struct {
	// Out receives the lines.
	Out io.Writer
	// Level is the most verbose level written.
	Level Level
	mu    sync.Mutex
}

// New returns a Logger writing to stderr at InfoLevel.
func New() *Logger { return &Logger{Out: os.Stderr, Level: InfoLevel} }

// GetLevel returns the logger's level.
func (l *Logger) GetLevel() Level { return l.Level }

// Entry is a logger with fields.
type Entry struct {
	// Logger is where lines go.
	Logger *Logger
}

// NewEntry returns an Entry on l.
func NewEntry(l *Logger) *Entry { return &Entry{Logger: l} }

func (e *Entry) logf(level Level, format string, args ...interface{}) {
	if level > e.Logger.Level {
		return
	}
	e.Logger.mu.Lock()
	defer e.Logger.mu.Unlock()
	fmt.Fprintf(e.Logger.Out, "%s %s\n", level, fmt.Sprintf(format, args...))
}

// Errorf logs at ErrorLevel.
func (e *Entry) Errorf(format string, args ...interface{}) { e.logf(ErrorLevel, format, args...) }

// Warnf logs at WarnLevel.
func (e *Entry) Warnf(format string, args ...interface{}) { e.logf(WarnLevel, format, args...) }

// Infof logs at InfoLevel.
func (e *Entry) Infof(format string, args ...interface{}) { e.logf(InfoLevel, format, args...) }

// Debugf logs at DebugLevel.
func (e *Entry) Debugf(format string, args ...interface{}) { e.logf(DebugLevel, format, args...) }

// Tracef logs at TraceLevel.
func (e *Entry) Tracef(format string, args ...interface{}) { e.logf(TraceLevel, format, args...) }
