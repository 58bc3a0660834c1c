package containerdcfg

import (
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
)

var spec = Spec{
	ShimPath: "/opt/veil/bin/containerd-shim-veil-v2",
	Runtimes: []Runtime{
		{Name: "veil", ConfigPath: "/opt/veil/share/defaults/veil/configuration-veil.toml"},
		{Name: "veil-sim", ConfigPath: "/opt/veil/share/defaults/veil/configuration-veil-sim.toml"},
	},
}

// newHost is a host root with config.toml holding content ("" for no file).
func newHost(t *testing.T, content string) host.Host {
	h, _ := fakehost.New(t, fakehost.Options{})
	if content != "" {
		fakehost.WriteFile(t, h, DefaultConfig, content)
	}
	return h
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name, content   string
		major           int
		version         int
		copyCRI         bool
		dropIn          string
		covered, exact  bool
		wantErr, socket string
	}{
		{name: "v3", content: fixtureV3, major: 2, version: 3, dropIn: DefaultDropIn},
		{name: "v3, containerd unknown", content: fixtureV3, version: 3, dropIn: DefaultDropIn},
		{name: "v2 on 1.6", content: fixtureV2, major: 1, version: 2, copyCRI: true, dropIn: DefaultDropIn},
		{name: "v2 on 2.x merges", content: fixtureV2, major: 2, version: 2, dropIn: DefaultDropIn},
		{name: "none on 2.x", major: 2, version: 3, dropIn: DefaultDropIn},
		{name: "none on 1.7", major: 1, version: 2, copyCRI: true, dropIn: DefaultDropIn},
		{name: "none, containerd unknown", wantErr: "cannot tell which config version"},
		{name: "glob", content: fixtureGlob, major: 2, version: 3, dropIn: DefaultDropIn, covered: true},
		{name: "drop-in dir", content: fixtureDropInDir, major: 1, version: 2, copyCRI: true,
			dropIn: "/etc/containerd/config.d/veil.toml", covered: true},
		{name: "exact import", content: "version = 3\nimports = ['conf.d/veil.toml']\n", major: 2, version: 3,
			dropIn: DefaultDropIn, covered: true, exact: true},
		{name: "multiline", content: fixtureMultiline, major: 1, version: 2, copyCRI: true, dropIn: DefaultDropIn,
			socket: "/run/k8s/containerd.sock"},
		{name: "v1", content: fixtureV1, major: 1, wantErr: "no version key"},
		{name: "v3 on 1.x", content: fixtureV3, major: 1, wantErr: "reads versions 1 and 2 only"},
		{name: "v9", content: "version = 9\n", major: 2, wantErr: "newer than this installer knows"},
		{name: "bad toml", content: "version = = 2\n", major: 2, wantErr: "is not valid TOML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Read(newHost(t, tc.content), "", tc.major)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), DefaultConfig) {
					t.Fatalf("err = %v, want one naming %s and saying %q", err, DefaultConfig, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Version != tc.version || c.CopyCRI != tc.copyCRI || c.DropIn != tc.dropIn || c.Covered != tc.covered || c.Exact != tc.exact {
				t.Errorf("version %d copy %v drop-in %s covered %v exact %v; want %d %v %s %v %v",
					c.Version, c.CopyCRI, c.DropIn, c.Covered, c.Exact, tc.version, tc.copyCRI, tc.dropIn, tc.covered, tc.exact)
			}
			want := tc.socket
			if want == "" {
				want = DefaultSocket
			}
			if c.Socket() != want {
				t.Errorf("socket %s, want %s", c.Socket(), want)
			}
			if c.Describe() == "" {
				t.Error("empty description")
			}
		})
	}
}

func TestRenderV3(t *testing.T) {
	c, err := Read(newHost(t, fixtureV3), "", 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := header + `
version = 3

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
  runtime_type = 'io.containerd.veil.v2'
  runtime_path = '/opt/veil/bin/containerd-shim-veil-v2'
  privileged_without_host_devices = true
  pod_annotations = ['io.katacontainers.config.hypervisor.cc_init_data', 'io.veil.config.*']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
    ConfigPath = '/opt/veil/share/defaults/veil/configuration-veil.toml'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-sim]
  runtime_type = 'io.containerd.veil.v2'
  runtime_path = '/opt/veil/bin/containerd-shim-veil-v2'
  privileged_without_host_devices = true
  pod_annotations = ['io.katacontainers.config.hypervisor.cc_init_data', 'io.veil.config.*']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-sim.options]
    ConfigPath = '/opt/veil/share/defaults/veil/configuration-veil-sim.toml'
`
	if string(got) != want {
		t.Errorf("drop-in:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(string(got), "snapshotter") {
		t.Error("the drop-in sets a snapshotter; it must keep containerd's default")
	}
}

// containerd 1.x: the drop-in repeats config.toml's CRI section, which decodes the same.
func TestRenderV2CopiesCRISection(t *testing.T) {
	c, err := Read(newHost(t, fixtureV2), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	var main, drop map[string]any
	toml.Decode(fixtureV2, &main)
	if _, err := toml.Decode(string(got), &drop); err != nil {
		t.Fatal(err)
	}
	cri, _ := table(drop, "plugins", criPluginV2)
	for _, k := range []string{"sandbox_image", "registry"} {
		if cri[k] == nil {
			t.Errorf("the copy lost %s:\n%s", k, got)
		}
	}
	rts, _ := table(cri, "containerd", "runtimes")
	for _, name := range []string{"runc", "veil", "veil-sim"} {
		if rts[name] == nil {
			t.Errorf("runtime %s missing from the drop-in:\n%s", name, got)
		}
	}
	if drop["version"] != int64(2) || drop["oom_score"] != nil {
		t.Errorf("the drop-in has version %v and top-level keys beyond it: %v", drop["version"], drop)
	}
	if !strings.Contains(string(got), "repeats the CRI plugin section of "+DefaultConfig) {
		t.Errorf("the drop-in does not say it holds a copy:\n%s", got)
	}
	// A runtime config.toml already declares under a Veil name is replaced, with a note.
	c2, _ := Read(newHost(t, strings.Replace(fixtureV2, "runtimes.runc", "runtimes.veil", 2)), "", 1)
	if _, err := c2.Render(spec); err != nil || len(c2.Notes) != 1 {
		t.Errorf("render with a runtime named veil in config.toml: err %v, notes %v", err, c2.Notes)
	}
}

// containerd 1.x with another import configuring the CRI plugin: refused, naming both files.
func TestOtherImportConfiguresCRI(t *testing.T) {
	h := newHost(t, "version = 2\nimports = [\"/etc/containerd/site/*.toml\"]\n")
	fakehost.WriteFile(t, h, "/etc/containerd/site/mirrors.toml",
		"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n")
	_, err := Read(h, "", 1)
	if err == nil || !strings.Contains(err.Error(), "/etc/containerd/site/mirrors.toml") {
		t.Fatalf("err = %v, want a refusal naming the import", err)
	}
	// containerd 2.x merges key by key: fine.
	if _, err := Read(h, "", 2); err != nil {
		t.Fatal(err)
	}
}

func TestRenderRefusesBadNames(t *testing.T) {
	c, _ := Read(newHost(t, fixtureV3), "", 2)
	for _, s := range []Spec{
		{ShimPath: "/x", Runtimes: []Runtime{{Name: "Veil x", ConfigPath: "/c"}}},
		{ShimPath: "/x'y", Runtimes: []Runtime{{Name: "veil", ConfigPath: "/c"}}},
		{ShimPath: "/x"},
	} {
		if _, err := c.Render(s); err == nil {
			t.Errorf("Render(%+v) accepted", s)
		}
	}
}

func readMain(t *testing.T, h host.Host) string {
	t.Helper()
	b, err := os.ReadFile(h.Path(DefaultConfig))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}
