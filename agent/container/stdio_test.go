package container

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// countingReader serves n bytes of a repeating pattern and counts how many it served.
type countingReader struct {
	n, served int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.served >= r.n {
		return 0, io.EOF
	}
	k := min(len(p), r.n-r.served)
	for i := range p[:k] {
		p[i] = byte(r.served + i)
	}
	r.served += k
	return k, nil
}

func TestStreamStopsReadingWhenFull(t *testing.T) {
	s := newStream(1000)
	src := &countingReader{n: 5000}
	done := make(chan struct{})
	go func() { s.fill(src); close(done) }()

	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("fill consumed the whole source although nobody read")
	default:
	}
	ctx := context.Background()
	var got bytes.Buffer
	for {
		data, eof, err := s.read(ctx, 300)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 300 {
			t.Fatalf("read returned %d bytes, more than the 300 asked", len(data))
		}
		got.Write(data)
		if eof {
			break
		}
	}
	want := make([]byte, 5000)
	_, _ = (&countingReader{n: 5000}).Read(want)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes that differ from the 5000 written", got.Len())
	}
	if data, eof, err := s.read(ctx, 10); len(data) != 0 || !eof || err != nil {
		t.Errorf("read after EOF = %q, %v, %v; want nothing and eof", data, eof, err)
	}
}

func TestStreamReadWaitsAndHonoursContext(t *testing.T) {
	s := newStream(100)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, _, err := s.read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read of an empty stream = %v, want DeadlineExceeded", err)
	}
	pr, pw := io.Pipe()
	go s.fill(pr)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = pw.Write([]byte("late"))
		_ = pw.Close()
	}()
	data, _, err := s.read(context.Background(), 10)
	if err != nil || string(data) != "late" {
		t.Errorf("read = %q, %v; want late", data, err)
	}
}

func TestStreamCloseSourceKeepsData(t *testing.T) {
	s := newStream(4)
	pr, pw := io.Pipe()
	defer pr.Close()
	go s.fill(pr)
	go func() { _, _ = pw.Write([]byte("abcdefgh")) }()
	time.Sleep(20 * time.Millisecond)
	s.closeSource() // the fill goroutine, blocked on the full buffer, ends
	data, eof, err := s.read(context.Background(), 0)
	if err != nil || string(data) != "abcd" || !eof {
		t.Errorf("read = %q, %v, %v; want the buffered abcd and eof", data, eof, err)
	}
}
