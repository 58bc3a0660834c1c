package launch

import (
	"context"
	"strings"
	"testing"
)

func TestParseSettings(t *testing.T) {
	s, err := ParseSettings("[image]\ninsecure_registries = [\"10.88.77.1:5000\", \"registry.local\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Image.InsecureRegistries; len(got) != 2 || got[0] != "10.88.77.1:5000" || got[1] != "registry.local" {
		t.Fatalf("insecure registries %q", got)
	}
	for _, tc := range []struct{ text, want string }{
		{"[image]\ninsecure_registry = [\"a\"]\n", `unknown key "image.insecure_registry"`},
		{"[image]\ninsecure_registries = \"a\"\n", "veil.toml"},
		{"[image]\ninsecure_registries = [\"http://a\"]\n", "is not host or host:port"},
		{"[image\n", "veil.toml"},
	} {
		if _, err := ParseSettings(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

// TestBootDiskSettings: the settings come from the measured document's veil.toml, and a bad
// one stops the boot like a bad policy.
func TestBootDiskSettings(t *testing.T) {
	ctx := context.Background()
	doc := goodDoc + "\"veil.toml\" = '''\n[image]\ninsecure_registries = [\"10.0.0.1:5000\"]\n'''\n"
	l, err := BootDisk(ctx, DefaultConfig(TEENone), writeDisk(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Settings.Image.InsecureRegistries; len(got) != 1 || got[0] != "10.0.0.1:5000" {
		t.Fatalf("insecure registries %q", got)
	}
	if l, err = BootDisk(ctx, DefaultConfig(TEENone), writeDisk(t, goodDoc)); err != nil || l.Settings.Image.InsecureRegistries != nil {
		t.Fatalf("without veil.toml: %+v, %v", l, err)
	}
	bad := goodDoc + "\"veil.toml\" = '''\n[imag]\n'''\n"
	if _, err := BootDisk(ctx, DefaultConfig(TEENone), writeDisk(t, bad)); err == nil || !strings.Contains(err.Error(), "veil.toml") {
		t.Fatalf("a bad veil.toml: %v", err)
	}
}
