package guestimage

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/guest-image/gobuild"
)

// TestReadSource: the manifest's source comes from the build record only for the binaries
// it describes; binaries without a record give none; a record of other binaries is an error.
func TestReadSource(t *testing.T) {
	exe, err := os.Executable() // a Go binary with build information
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	init, agent := filepath.Join(dir, "veil-init"), filepath.Join(dir, "veil-agent")
	for _, f := range []string{init, agent} {
		if err := os.WriteFile(f, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if src, err := readSource(init, data, agent, data); src != nil || err != nil {
		t.Errorf("without a record: %+v, %v, want nothing", src, err)
	}
	writeRecord := func(r gobuild.Record) {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(dir, gobuild.RecordFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256Hex(data)
	writeRecord(gobuild.Record{Commit: "c0ffee", Go: "go1.26.8", CC: "gcc 12", SHA256: map[string]string{"veil-init": sum, "veil-agent": sum}})
	src, err := readSource(init, data, agent, data)
	if err != nil || src == nil || src.Commit != "c0ffee" || src.Modified || src.CC != "gcc 12" || src.GoVersion == "" ||
		len(src.Init) == 0 || len(src.Agent) == 0 {
		t.Fatalf("readSource = %+v, %v", src, err)
	}
	writeRecord(gobuild.Record{Commit: "c0ffee", SHA256: map[string]string{"veil-init": sum, "veil-agent": strings.Repeat("0", 64)}})
	if _, err := readSource(init, data, agent, data); err == nil || !strings.Contains(err.Error(), agent) || !strings.Contains(err.Error(), "make agent") {
		t.Errorf("with another agent recorded: %v, want an error naming it", err)
	}
	if _, err := readSource(init, data, "/elsewhere/veil-agent", data); err == nil || !strings.Contains(err.Error(), "not next to") {
		t.Errorf("agent elsewhere: %v", err)
	}
}
