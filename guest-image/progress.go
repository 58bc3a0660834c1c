package guestimage

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints one line per build step: the step's name, then what it
// does or did.
type progress struct {
	w io.Writer
}

// step prints "name  message".
func (p *progress) step(name, format string, args ...any) {
	fmt.Fprintf(p.w, "%-9s %s\n", name, fmt.Sprintf(format, args...))
}

// timer starts timing a step; the returned function prints the step with
// its duration.
func (p *progress) timer(name string) func(format string, args ...any) {
	start := time.Now()
	return func(format string, args ...any) {
		p.step(name, "%s (%.1fs)", fmt.Sprintf(format, args...), time.Since(start).Seconds())
	}
}

// indented returns a writer that copies a tool's output to the progress
// writer, each line indented under the current step.
func (p *progress) indented() io.Writer { return &indentWriter{w: p.w, prefix: "          | "} }

// indentWriter prefixes every line written through it.
type indentWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
}

func (iw *indentWriter) Write(b []byte) (int, error) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	iw.partial = append(iw.partial, b...)
	for {
		i := bytes.IndexByte(iw.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := fmt.Fprintf(iw.w, "%s%s\n", iw.prefix, bytes.TrimRight(iw.partial[:i], "\r")); err != nil {
			return len(b), err
		}
		iw.partial = iw.partial[i+1:]
	}
}
