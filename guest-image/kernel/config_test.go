package kernel

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	opts, err := ParseConfig([]byte("# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"-veil\"\nCONFIG_D=64\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := []Option{{"CONFIG_A", "y", 3}, {"CONFIG_B", "n", 4}, {"CONFIG_C", `"-veil"`, 5}, {"CONFIG_D", "64", 6}}
	if len(opts) != len(want) {
		t.Fatalf("got %v, want %v", opts, want)
	}
	for i := range want {
		if opts[i] != want[i] {
			t.Errorf("option %d: got %+v, want %+v", i, opts[i], want[i])
		}
	}
	for _, bad := range []struct{ data, want string }{
		{"CONFIG_A=y\nCONFIG_A=n\n", "f:2: CONFIG_A is already set on line 1"},
		{"VIRTIO=y\n", `f:1: "VIRTIO=y" is neither`},
	} {
		if _, err := ParseConfig([]byte(bad.data), "f"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseConfig(%q): got %v, want an error with %q", bad.data, err, bad.want)
		}
	}
}

func TestApply(t *testing.T) {
	base := "# header\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=1\n"
	frag, err := ParseConfig([]byte("CONFIG_B=y\n# CONFIG_A is not set\nCONFIG_NEW=y\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	got := string(Apply([]byte(base), frag))
	want := "# header\nCONFIG_C=1\nCONFIG_B=y\n# CONFIG_A is not set\nCONFIG_NEW=y\n"
	if got != want {
		t.Errorf("Apply:\n%s\nwant:\n%s", got, want)
	}
}

func TestCheck(t *testing.T) {
	frag, err := ParseConfig([]byte("CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_GONE is not set\nCONFIG_C=y\nCONFIG_D=y\n"), "veil.config")
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(frag, []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=y\n"), "veil.config"); err != nil {
		t.Errorf("a .config with all of the fragment: %v", err)
	}
	// C was dropped to n (a dependency is missing), D left out (its menu is hidden), B came
	// out y: each is named with its fragment line.
	err = Check(frag, []byte("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n"), "veil.config")
	if err == nil {
		t.Fatal("Check passed a .config without CONFIG_C and CONFIG_D")
	}
	for _, want := range []string{"veil.config:2: CONFIG_B=n came out as y", "veil.config:4: CONFIG_C=y came out as n",
		"veil.config:5: CONFIG_D=y came out as absent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "CONFIG_A") || strings.Contains(err.Error(), "CONFIG_GONE") {
		t.Errorf("error %q names an option that came out as asked", err)
	}
}

// TestFragment checks Veil's own fragment: it parses, builds no modules, and has what the
// guest cannot boot or run containers without.
func TestFragment(t *testing.T) {
	opts, err := ParseConfig(Fragment, FragmentFile)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, o := range opts {
		have[o.Name] = o.Value
		if o.Value == "m" {
			t.Errorf("%s:%d: %s=m: the veil kernel has no modules", FragmentFile, o.Line, o.Name)
		}
	}
	if have["CONFIG_MODULES"] != "n" {
		t.Errorf("CONFIG_MODULES is %q, want n (not set)", have["CONFIG_MODULES"])
	}
	for _, name := range []string{"CONFIG_SERIAL_8250_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_RD_GZIP", "CONFIG_DEVTMPFS",
		"CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_VSOCKETS", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET",
		"CONFIG_VIRTIO_FS", "CONFIG_OVERLAY_FS", "CONFIG_EXT4_FS", "CONFIG_DM_CRYPT", "CONFIG_DM_INTEGRITY",
		"CONFIG_CRYPTO_AUTHENC", "CONFIG_CRYPTO_XTS", "CONFIG_CGROUPS", "CONFIG_SECCOMP_FILTER", "CONFIG_SEV_GUEST",
		"CONFIG_TDX_GUEST_DRIVER", "CONFIG_TSM_REPORTS", "CONFIG_CONFIGFS_FS"} {
		if have[name] != "y" {
			t.Errorf("the fragment does not set %s=y", name)
		}
	}
}

func TestInputsKey(t *testing.T) {
	in := Inputs{FormatVersion: FormatVersion, SourceSHA256: strings.Repeat("a", 64), FragmentSHA256: strings.Repeat("b", 64),
		Compiler: "gcc (Debian 12.2.0-14+deb12u1) 12.2.0", Linker: "GNU ld (GNU Binutils for Debian) 2.40", Env: buildEnv}
	key := in.Key()
	if len(key) != 64 || in.Key() != key {
		t.Fatalf("Key %q: want a stable hex SHA-256", key)
	}
	for name, change := range map[string]func(*Inputs){
		"source":   func(i *Inputs) { i.SourceSHA256 = strings.Repeat("c", 64) },
		"fragment": func(i *Inputs) { i.FragmentSHA256 = strings.Repeat("c", 64) },
		"compiler": func(i *Inputs) { i.Compiler = "gcc 13" },
		"linker":   func(i *Inputs) { i.Linker = "ld 2.41" },
		"format":   func(i *Inputs) { i.FormatVersion++ },
		"env":      func(i *Inputs) { i.Env = []string{"KBUILD_BUILD_USER=other"} },
	} {
		c := in
		change(&c)
		if c.Key() == key {
			t.Errorf("changing the %s leaves the key as it was", name)
		}
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"": Debian, "debian": Debian, "veil": Veil} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseKind("ubuntu"); err == nil || !strings.Contains(err.Error(), `kernel "ubuntu"`) {
		t.Errorf("ParseKind(ubuntu): %v", err)
	}
}
