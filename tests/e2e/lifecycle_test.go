//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/ctl"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// testLifecycle: stats, pause, resume, update and remove of a running container.
func testLifecycle(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "life", []string{"sh", "-c", "while true; do sleep 1; done"}, containerOpts{memLimit: 64 << 20})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	st, err := sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetMemoryUsageBytes() == 0 || st.GetMemoryLimitBytes() != 64<<20 || st.GetPidsCurrent() == 0 {
		t.Fatalf("stats: %v (want memory usage, the 64 MiB limit and pids)", st)
	}
	if _, err := sb.Agent.PauseContainer(c, &api.PauseContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Agent.ResumeContainer(c, &api.ResumeContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	_, err = sb.Agent.UpdateContainer(c, &api.UpdateContainerRequest{ContainerId: "life",
		Resources: &api.Resources{MemoryLimitBytes: 96 << 20, MemorySwapBytes: 96 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if st, err = sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"}); err != nil || st.GetMemoryLimitBytes() != 96<<20 {
		t.Fatalf("after update: limit %d, %v; want %d", st.GetMemoryLimitBytes(), err, 96<<20)
	}
	if _, err := sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: "life", TimeoutMs: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"}); err == nil {
		t.Fatal("stats of a removed container succeeded")
	}
}

// testTerminal: a container with a terminal sees a tty, and its output arrives on stdout.
func testTerminal(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, time.Minute)
	newContainer(t, sb, "tty", []string{"sh", "-c", "tty; stty size"}, containerOpts{terminal: true})
	p := stdio.Process{Agent: sb.Agent, ContainerID: "tty"}
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- p.CopyStdout(c, &out) }()
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "tty"}); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "tty", ""); w.GetStatus() != 0 {
		t.Fatalf("terminal container exited %d", w.GetStatus())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Fatalf("terminal container output %q does not show a pts", out.String())
	}
}

// testSeccomp: a seccomp profile in the spec is enforced inside the guest (the agent is built
// with libseccomp): mkdir is refused with EPERM while everything else runs.
func testSeccomp(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, time.Minute)
	const id = "seccomp"
	mnt := api.StorageDir + "/" + id + "/rootfs"
	raw, err := ctl.Spec(ctl.SpecOptions{Args: []string{"sh", "-c", "mkdir /tmp/denied; echo status=$?"}, RootPath: mnt})
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno,
			ErrnoRet: func() *uint { e := uint(1); return &e }()}},
	}
	raw, _ = json.Marshal(&spec)
	_, err = sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: id, OciSpec: raw,
		Storages: []*api.Storage{{Driver: "virtiofs", Source: "rootfs", MountPoint: mnt}}})
	if err != nil {
		t.Fatalf("CreateContainer with a seccomp profile: %v", err)
	}
	var out, errOut bytes.Buffer
	p := stdio.Process{Agent: sb.Agent, ContainerID: id}
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if err := p.CopyStdout(c, &out); err != nil {
		t.Fatal(err)
	}
	_ = p.CopyStderr(c, &errOut)
	waitProcess(t, sb, id, "")
	if !strings.Contains(out.String(), "status=1") || !strings.Contains(errOut.String(), "not permitted") {
		t.Fatalf("mkdir under a profile that denies it: stdout %q stderr %q", out.String(), errOut.String())
	}
}
