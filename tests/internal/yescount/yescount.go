// Package yescount checks the output of `yes` ("y\n" repeated) as it streams by, for the
// load tests of issue 12 (tests/e2e, tests/shim): it counts the bytes and records the first
// one out of the pattern, so that a lost, doubled or changed byte shows without keeping the
// output.
package yescount

import "fmt"

// Counter is an io.Writer that counts and checks `yes` output.
type Counter struct {
	// N is the number of bytes written so far.
	N int64
	// Bad describes the first byte out of the pattern; nil while there is none.
	Bad error
}

// Write checks p as the continuation of the output so far; it never fails.
func (c *Counter) Write(p []byte) (int, error) {
	for i, b := range p {
		want := byte('y')
		if (c.N+int64(i))%2 == 1 {
			want = '\n'
		}
		if b != want && c.Bad == nil {
			c.Bad = fmt.Errorf("byte %d of the output is %q, want %q", c.N+int64(i), b, want)
		}
	}
	c.N += int64(len(p))
	return len(p), nil
}

// Check reports an error unless exactly want bytes of the pattern were written.
func (c *Counter) Check(want int64) error {
	if c.Bad != nil {
		return fmt.Errorf("after %d bytes: %w", c.N, c.Bad)
	}
	if c.N != want {
		return fmt.Errorf("%d bytes of output, want %d", c.N, want)
	}
	return nil
}
