package server

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResidentBytes(t *testing.T) {
	if got := residentBytes("/proc/self/status"); got < 1<<20 {
		t.Fatalf("own RSS = %d bytes, want at least 1 MiB", got)
	}
	f := filepath.Join(t.TempDir(), "status")
	os.WriteFile(f, []byte("Name:\tx\nVmRSS:\t    2048 kB\n"), 0o644)
	if got := residentBytes(f); got != 2048<<10 {
		t.Fatalf("RSS = %d, want %d", got, 2048<<10)
	}
	if got := residentBytes(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Fatalf("RSS of a missing file = %d, want 0", got)
	}
}
