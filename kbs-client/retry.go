package kbsclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Retry bounds the retries of transient failures. The caller's context bounds them too.
type Retry struct {
	// Attempts is the number of tries in all (default 5; 1 disables retries).
	Attempts int
	// Initial is the first wait (default 200ms); each wait doubles, with jitter.
	Initial time.Duration
	// Max caps one wait (default 5s).
	Max time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Initial <= 0 {
		r.Initial = 200 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 5 * time.Second
	}
	return r
}

// do runs f until it succeeds, fails for good, or the attempts or ctx run out. what names
// the KBS (its URL) and the operation: the error of giving up starts with it.
func (r Retry) do(ctx context.Context, what string, f func(context.Context) error) error {
	wait := r.Initial
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil || !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (attempt %d)", what, err, attempt)
		}
		if attempt >= r.Attempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", what, attempt, err)
		}
		// Jitter in [wait/2, wait).
		d := wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, r.Max)
	}
}
