package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func TestDir(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "outside"), []byte("no"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"}
	if _, err := d.Get(ctx, p); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing resource: %v", err)
	}
	if err := d.Put(ctx, p, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, p, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctx, p)
	if err != nil || string(got) != "v2" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(base, "store", "default", "key", "1"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("resource file mode %v, %v", fi.Mode(), err)
	}

	tests := []struct {
		name    string
		p       protocol.ResourcePath
		wantErr string
	}{
		{"dot dot", protocol.ResourcePath{Repository: "..", Type: "..", Tag: "outside"}, "invalid resource path"},
		{"slash in tag", protocol.ResourcePath{Repository: "a", Type: "b", Tag: "../../../outside"}, "invalid resource path"},
		{"absolute", protocol.ResourcePath{Repository: "/etc", Type: "b", Tag: "c"}, "invalid resource path"},
		{"empty", protocol.ResourcePath{}, "invalid resource path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Get(ctx, tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Get error %v, want %q", err, tt.wantErr)
			}
			err = d.Put(ctx, tt.p, []byte("x"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Put error %v, want %q", err, tt.wantErr)
			}
		})
	}
	// A symlink planted inside the store cannot lead out of it.
	if err := os.Symlink(base, filepath.Join(base, "store", "default", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, protocol.ResourcePath{Repository: "default", Type: "link", Tag: "outside"}); err == nil {
		t.Fatal("read through a symlink out of the store")
	}
}
