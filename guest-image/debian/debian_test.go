package debian

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"6.12.95-1~bpo12+1", "6.12.9-1~bpo12+1", 1},
		{"6.12.90-2~bpo12+1", "6.12.90-1~bpo12+1", 1},
		{"6.12.90-1~bpo12+1", "6.12.90-1", -1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0-0", 0},
		{"1:1.0", "2.0", 1},
		{"1.0a", "1.0+", -1},
		{"1.0", "1.0.1", -1},
		{"1.01", "1.1", 0},
		{"2.0-1", "2.0-1", 0},
		{"10", "9", 1},
		{"1.0-1a", "1.0-1", 1},
	}
	for _, tt := range tests {
		got := CompareVersions(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
		if back := CompareVersions(tt.b, tt.a); sign(back) != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", tt.b, tt.a, back, -tt.want)
		}
	}
}

// TestCompareVersionsLikeDpkg checks a few pairs against dpkg itself.
func TestCompareVersionsLikeDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not installed: run on Debian (apt-get install dpkg)")
	}
	vs := []string{"6.12.95-1~bpo12+1", "6.12.9-1", "6.12.90-2~bpo12+1", "1:0.1", "1.0~~a", "1.0~", "1.0", "1.0a", "1.0-a+b"}
	for _, a := range vs {
		for _, b := range vs {
			err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run()
			if dpkgLess := err == nil; dpkgLess != (CompareVersions(a, b) < 0) {
				t.Errorf("%q < %q: dpkg says %v, CompareVersions %d", a, b, dpkgLess, CompareVersions(a, b))
			}
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestHostMirror(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822", map[string]string{"sources.list.d/debian.sources": `Types: deb
# comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`}, "http://mirror.example/debian"},
		{"one line", map[string]string{"sources.list": `# deb http://commented.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib
`}, "http://one.example/debian"},
		{"disabled", map[string]string{"sources.list.d/a.sources": "Types: deb\nURIs: http://off.example/\nSuites: bookworm\nEnabled: no\n"}, DefaultMirror},
		{"none", nil, DefaultMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				writeFile(t, filepath.Join(dir, name), body)
			}
			if got := HostMirror(dir); got != tt.want {
				t.Errorf("HostMirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRecords(t *testing.T) {
	out := `Package: linux-image-6.12.9+deb12-cloud-amd64
Version: 6.12.9-1~bpo12+1
Architecture: amd64
Description: Linux
 continued: line
Filename: pool/main/l/x_6.12.9_amd64.deb
Size: 123
SHA256: abcd

Package: other
Version: 1
Architecture: all
`
	pkgs := parseRecords([]byte(out))
	if len(pkgs) != 2 {
		t.Fatalf("got %d records", len(pkgs))
	}
	p := pkgs[0]
	if p.String() != "linux-image-6.12.9+deb12-cloud-amd64=6.12.9-1~bpo12+1" || p.Size != 123 || p.SHA256 != "abcd" ||
		p.Arch != "amd64" || p.Filename != "pool/main/l/x_6.12.9_amd64.deb" {
		t.Errorf("record = %+v", p)
	}
}

func TestSourcesLine(t *testing.T) {
	f := &Fetcher{Dir: "/x", Mirror: "http://m.example/debian", Suite: "bookworm-backports"}
	want := "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian bookworm-backports main"
	if got := f.SourcesLine(); got != want {
		t.Errorf("SourcesLine = %q, want %q", got, want)
	}
	args := strings.Join(f.aptOptions(), " ")
	for _, w := range []string{"Dir::State::Lists=/x/lists", "Dir::Etc::SourceList=/x/sources.list", "Dir::State::Status=/x/status"} {
		if !strings.Contains(args, w) {
			t.Errorf("apt options %q lack %q", args, w)
		}
	}
}

// TestIntegrationFetch updates a private apt state from the host's mirror and
// looks the newest 6.12 cloud kernel up (network to the Debian mirror).
func TestIntegrationFetch(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatal("apt-get not installed: run on Debian")
	}
	f := &Fetcher{Dir: t.TempDir(), Suite: "bookworm-backports"}
	ctx := context.Background()
	if err := f.Update(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := f.Latest(ctx, `^linux-image-6\.12\.[0-9]+\+[a-z0-9.]+-cloud-amd64$`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Version, "6.12.") || len(p.SHA256) != 64 {
		t.Errorf("latest = %+v", p)
	}
	again, err := f.Find(ctx, p.Name, p.Version)
	if err != nil || *again != *p {
		t.Errorf("Find(%s) = %+v, %v", p, again, err)
	}
	if _, err := f.Find(ctx, p.Name, "0.0-0"); err == nil {
		t.Error("found a version that does not exist")
	}
}

func writeFile(t *testing.T, file, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
