package containerdcfg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/deploy/installer/host"
)

// containerdBinary finds a containerd to check the drop-in with: $env, else the one
// `make containerd` / `make containerd16` leave in bin/tools.
func containerdBinary(t *testing.T, env, rel string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "bin", "tools", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no %s (set %s, or run make containerd containerd16)", p, env)
	}
	return p
}

// TestContainerdReadsDropIn has real containerd binaries merge the drop-in (`containerd
// config dump`): Veil's runtimes appear and config.toml's own CRI settings survive.
func TestContainerdReadsDropIn(t *testing.T) {
	for _, tc := range []struct {
		name, env, rel, section string
		major                   int
		keep                    []string // keys of the CRI section that must survive
	}{
		{"containerd 2.x, version 3", "VEIL_TEST_CONTAINERD", "containerd",
			`[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = true
`, 2, []string{"enable_selinux"}},
		{"containerd 1.6, version 2", "VEIL_TEST_CONTAINERD16", "containerd-1.6/containerd",
			`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
`, 1, []string{"sandbox_image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := containerdBinary(t, tc.env, tc.rel)
			dir := t.TempDir()
			version := 3
			if tc.major == 1 {
				version = 2
			}
			main := filepath.Join(dir, "config.toml")
			content := strings.Join([]string{
				"version = " + string(rune('0'+version)),
				`imports = ["` + dir + `/conf.d/*.toml"]`,
				`root = "` + dir + `/root"`,
				`state = "` + dir + `/state"`, "", tc.section}, "\n")
			if err := os.WriteFile(main, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Read(host.New("/"), main, tc.major)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Covered || c.DropIn != dir+"/conf.d/veil.toml" {
				t.Fatalf("drop-in %s covered %v", c.DropIn, c.Covered)
			}
			if _, _, err := c.Apply(spec, nil); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-c", main, "config", "dump").Output()
			if err != nil {
				t.Fatalf("%s config dump: %v", bin, err)
			}
			var doc map[string]any
			if _, err := toml.Decode(string(out), &doc); err != nil {
				t.Fatalf("config dump does not decode: %v\n%s", err, out)
			}
			name := criPluginV3
			if tc.major == 1 {
				name = criPluginV2
			}
			cri, _ := table(doc, "plugins", name)
			rts, _ := table(cri, "containerd", "runtimes")
			for _, r := range spec.Runtimes {
				rt, _ := rts[r.Name].(map[string]any)
				opts, _ := rt["options"].(map[string]any)
				if rt["runtime_type"] != RuntimeType || rt["runtime_path"] != spec.ShimPath || opts["ConfigPath"] != r.ConfigPath {
					t.Errorf("containerd's runtime %s: %v", r.Name, rt)
				}
				if ann, _ := rt["pod_annotations"].([]any); len(ann) != len(PodAnnotations) {
					t.Errorf("containerd's runtime %s: pod_annotations %v", r.Name, rt["pod_annotations"])
				}
			}
			runc, _ := table(rts, "runc", "options")
			if runc["SystemdCgroup"] != true {
				t.Errorf("config.toml's runc runtime lost: %v", rts["runc"])
			}
			for _, k := range tc.keep {
				if v := cri[k]; v == nil || v == false || v == "" {
					t.Errorf("config.toml's %s lost: %v", k, v)
				}
			}
		})
	}
}
