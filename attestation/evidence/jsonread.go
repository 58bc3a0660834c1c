package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// reader is a small JSON reader for the evidence shapes: objects with known keys whose values
// are integers, byte arrays, strings, null or nested known objects. encoding/json reads these
// at about 20 MB/s (a report is some 5 kB of numbers); this reads them ten times faster. Keys
// match case-sensitively, as serde does. Values of unknown keys are checked with json.Valid.
type reader struct {
	b []byte
	i int
}

const maxDepth = 64

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", r.i, fmt.Sprintf(format, args...))
}

func (r *reader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *reader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *reader) expect(c byte) error {
	if r.peek() != c {
		return r.errorf("want %q", c)
	}
	r.i++
	return nil
}

// end checks that only white space is left.
func (r *reader) end() error {
	if r.peek() != 0 || r.i != len(r.b) {
		return r.errorf("trailing data")
	}
	return nil
}

// null consumes a null literal if one is next.
func (r *reader) null() bool {
	if r.peek() == 'n' && bytes.HasPrefix(r.b[r.i:], []byte("null")) {
		r.i += 4
		return true
	}
	return false
}

// object reads an object, calling field for each key; field must read the value.
func (r *reader) object(field func(key string) error) error {
	if err := r.expect('{'); err != nil {
		return err
	}
	if r.peek() == '}' {
		r.i++
		return nil
	}
	for {
		key, err := r.str()
		if err != nil {
			return err
		}
		if err := r.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return nil
		default:
			return r.errorf("want ',' or '}'")
		}
	}
}

// str reads a string; escapes are decoded by encoding/json (rare in evidence).
func (r *reader) str() (string, error) {
	if err := r.expect('"'); err != nil {
		return "", err
	}
	start, escaped := r.i, false
	for ; r.i < len(r.b); r.i++ {
		switch c := r.b[r.i]; {
		case c == '\\':
			escaped = true
			r.i++
		case c < 0x20:
			return "", r.errorf("control character in string")
		case c == '"':
			r.i++
			if !escaped {
				return string(r.b[start : r.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(r.b[start-1:r.i], &s); err != nil {
				return "", r.errorf("bad string: %v", err)
			}
			return s, nil
		}
	}
	return "", r.errorf("unterminated string")
}

// uint reads a non-negative integer that fits in bits, without fraction or exponent.
func (r *reader) uint(bits int) (uint64, error) {
	r.ws()
	max := uint64(1)<<bits - 1
	if bits == 64 {
		max = ^uint64(0)
	}
	start := r.i
	var v uint64
	for ; r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9'; r.i++ {
		d := uint64(r.b[r.i] - '0')
		if v > (max-d)/10 {
			return 0, r.errorf("integer out of range for %d bits", bits)
		}
		v = v*10 + d
	}
	if n := r.i - start; n == 0 || n > 1 && r.b[start] == '0' {
		return 0, r.errorf("want an unsigned integer")
	}
	return v, nil
}

// byteArray reads a JSON array of integers 0..255.
func (r *reader) byteArray() ([]byte, error) {
	if err := r.expect('['); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 64)
	if r.peek() == ']' {
		r.i++
		return out, nil
	}
	for {
		v, err := r.uint(8)
		if err != nil {
			return nil, fmt.Errorf("byte %d: %w", len(out), err)
		}
		out = append(out, byte(v))
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return out, nil
		default:
			return nil, r.errorf("want ',' or ']' after byte %d", len(out))
		}
	}
}

// skip reads any JSON value and checks it with json.Valid.
func (r *reader) skip() error {
	r.ws()
	start, depth := r.i, 0
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			if _, err := r.str(); err != nil {
				return err
			}
			if depth == 0 {
				return r.valid(start)
			}
			continue
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return r.errorf("nested too deep")
			}
		case c == ']' || c == '}':
			if depth == 0 {
				return r.valid(start)
			}
			if depth--; depth == 0 {
				r.i++
				return r.valid(start)
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return r.valid(start)
		}
		r.i++
	}
	return r.valid(start)
}

func (r *reader) valid(start int) error {
	if start == r.i || !json.Valid(r.b[start:r.i]) {
		return errors.New("invalid JSON value")
	}
	return nil
}
