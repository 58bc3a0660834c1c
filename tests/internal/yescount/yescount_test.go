package yescount

import (
	"strings"
	"testing"
)

func TestCounter(t *testing.T) {
	var c Counter
	c.Write([]byte("y\ny"))
	c.Write([]byte("\ny\n"))
	if err := c.Check(6); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(8); err == nil || !strings.Contains(err.Error(), "6 bytes of output, want 8") {
		t.Fatalf("short output: %v", err)
	}
	c.Write([]byte("yy\n")) // a doubled byte at offset 7
	if err := c.Check(9); err == nil || !strings.Contains(err.Error(), "byte 7") {
		t.Fatalf("doubled byte: %v", err)
	}
}
