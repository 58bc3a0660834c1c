package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLockFile: the lock file in the repository is valid, pins a kernel of the pattern, and is
// the one built into the package.
func TestLockFile(t *testing.T) {
	l, err := ReadLock("image.lock")
	if err != nil {
		t.Fatal(err)
	}
	if d := testLock(t); *d != *l {
		t.Errorf("DefaultLock %+v differs from image.lock %+v", d, l)
	}
	if !bytes.Equal(l.Encode(), defaultLock) {
		t.Error("image.lock is not in Lock.Encode's canonical form (write it with veil-image lock --update)")
	}
}

func TestParseLockErrors(t *testing.T) {
	good := string(testLock(t).Encode())
	tests := []struct{ name, from, to, want string }{
		{"unknown field", `"go":`, `"extra": 1, "go":`, "unknown field"},
		{"go", `"go1.26.8"`, `"1.26"`, `go "1.26"`},
		{"sha", `"sha256": "69`, `"sha256": "XX`, "kernel: sha256"},
		{"filename", `"filename": "pool/main/l/`, `"filename": "../../etc/`, "kernel: filename"},
		{"kernel name", `"name": "linux-image-6.12.95+deb12-cloud-amd64"`, `"name": "linux-image-amd64"`, "does not match"},
		{"mkfs name", `"name": "busybox-static"`, `"name": "e2fsprogs"`, "mkfs: package \"e2fsprogs\""},
		{"source name", `"name": "linux-source-6.12"`, `"name": "linux-source-6.1"`, `kernelSource: package "linux-source-6.1"`},
		{"source version", `"version": "6.12.95-1~bpo12+1",
    "arch": "all"`, `"version": "6.12.94-1~bpo12+1",
    "arch": "all"`, "kernelSource: version 6.12.94-1~bpo12+1, the kernel's is 6.12.95-1~bpo12+1"},
		{"source sha", `"sha256": "a7`, `"sha256": "A7`, "kernelSource: sha256"},
	}
	for _, tt := range tests {
		bad := strings.Replace(good, tt.from, tt.to, 1)
		if bad == good {
			t.Fatalf("%s: %q not in the lock", tt.name, tt.from)
		}
		_, err := ParseLock([]byte(bad), "x.lock")
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "x.lock") {
			t.Errorf("%s: ParseLock = %v, want an error naming x.lock and %q", tt.name, err, tt.want)
		}
	}
}

// fakePackage is a locked package served by a test mirror.
func fakePackage(data []byte) LockedPackage {
	sum := sha256.Sum256(data)
	return LockedPackage{Name: "busybox-static", Version: "1:1.0-1", Arch: "amd64", Suite: "bookworm",
		Filename: "pool/main/b/busybox/busybox-static_1.0-1_amd64.deb", Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

func TestFetchLocked(t *testing.T) {
	data := []byte("a .deb's bytes")
	pkg := fakePackage(data)
	var served []byte
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		if served == nil || r.URL.Path != "/debian/"+pkg.Filename {
			http.NotFound(w, r)
			return
		}
		w.Write(served)
	}))
	defer srv.Close()
	mirror := srv.URL + "/debian"
	p := &progress{w: os.Stderr}
	ctx := context.Background()
	cache := t.TempDir()
	deb := filepath.Join(cache, "debs", filepath.Base(pkg.Filename))

	// Gone from the mirror: the error says where the lock is, what version, snapshot.debian.org
	// and how to move the lock.
	_, err := fetchLocked(ctx, pkg, mirror, cache, "guest-image/image.lock", p)
	for _, want := range []string{"guest-image/image.lock", pkg.Version, "snapshot.debian.org", "veil-image lock --update", pkg.SHA256} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing package: error %v does not contain %q", err, want)
		}
	}

	// A file whose digest differs from the lock is refused, and not kept.
	served = []byte("a .deb's bytez")
	if _, err := fetchLocked(ctx, pkg, mirror, cache, "x.lock", p); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("tampered package: %v, want a refusal", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "debs", "*")); len(left) > 0 {
		t.Errorf("a refused download left %v", left)
	}
	if _, err := os.Stat(deb); err == nil {
		t.Error("the refused package is in the cache")
	}

	// The locked bytes are fetched and stored; then the cache is used without the mirror.
	served = data
	got, err := fetchLocked(ctx, pkg, mirror, cache, "x.lock", p)
	if err != nil || got != deb {
		t.Fatalf("fetchLocked = %q, %v", got, err)
	}
	n := requests
	if _, err := fetchLocked(ctx, pkg, "http://127.0.0.1:1/nowhere", cache, "x.lock", p); err != nil || requests != n {
		t.Errorf("cached package: %v after %d requests, want the cache and no request", err, requests-n)
	}

	// A cached file that does not match (a corrupt cache) is fetched again.
	if err := os.WriteFile(deb, []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchLocked(ctx, pkg, mirror, cache, "x.lock", p); err != nil || requests != n+1 {
		t.Errorf("corrupt cache: %v, %d requests, want one fetch", err, requests-n)
	}
	if b, _ := os.ReadFile(deb); !bytes.Equal(b, data) {
		t.Errorf("cache holds %q after the refetch", b)
	}
}
