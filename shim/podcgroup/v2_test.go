package podcgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// v2ChildEnv marks TestCgroupV2's child run of the package's tests.
const v2ChildEnv = "VEIL_PODCGROUP_V2_CHILD"

// v2Tests are the tests that TestCgroupV2 runs again on cgroup v2.
var v2Tests = []string{"TestJoinExplicitPath", "TestJoinOwnCgroup", "TestJoinRefusesBadPath", "TestRemoveRefusesBadRecord"}

// v2Controllers lists the controllers enabled in v2 cgroup p (its cgroup.controllers).
func v2Controllers(t *testing.T, p string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(unifiedMount, p, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		out[c] = true
	}
	return out
}

// TestCgroupV2 runs the Join and Remove tests on cgroup v2 whatever the host's mode: in a
// mount namespace of their own where the kernel's cgroup2 hierarchy is mounted over
// /sys/fs/cgroup. On a v1 host (this project's CI machines) that hierarchy has no
// controllers (they are bound to v1), so the v2 paths run for real (cgroup creation, moving
// the process, cpu.stat, removal, refusals) but memory and pids are not accounted there; a
// v2 host checks those too.
func TestCgroupV2(t *testing.T) {
	if os.Getenv(v2ChildEnv) != "" {
		return
	}
	needCgroups(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("TestCgroupV2 needs unshare (apt-get install util-linux)")
	}
	script := `mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script,
		os.Args[0], "-test.run", "^("+strings.Join(v2Tests, "|")+")$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), v2ChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the cgroup v2 run failed: %v\n%s", err, out)
	}
	for _, name := range v2Tests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass on cgroup v2:\n%s", name, out)
		}
	}
	t.Logf("on cgroup v2:\n%s", out)
}
