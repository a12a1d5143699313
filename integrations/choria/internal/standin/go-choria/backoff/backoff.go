// Package backoff stands in for go-choria's backoff package: the FiveSec policy
// and its retry loop (tables and jitter as in /work/shared/DESIGN.md section 4).
package backoff

import (
	"context"
	"math/rand"
	"time"
)

// Policy is a table of sleeps in milliseconds, the last one repeating.
type Policy struct {
	// Millis are the sleeps.
	Millis []int
}

// FiveSec ranges from 500 ms to 5 s.
var FiveSec = Policy{Millis: []int{500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000}}

// Duration is the n'th sleep, with jitter m/2 + uniform[0, m).
func (b Policy) Duration(n int) time.Duration {
	if n >= len(b.Millis) {
		n = len(b.Millis) - 1
	}
	m := b.Millis[n]
	if m == 0 {
		return 0
	}
	return time.Duration(m/2+rand.Intn(m)) * time.Millisecond
}

// For calls cb with tries counting from 1 until it returns nil or ctx ends,
// sleeping Duration(try) between calls; it returns ctx's error when ctx ends.
func (b Policy) For(ctx context.Context, cb func(try int) error) error {
	for try := 1; ; try++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cb(try) == nil {
			return nil
		}
		t := time.NewTimer(b.Duration(try))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
