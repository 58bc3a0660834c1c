package task

import (
	"testing"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestOptionsConfigPath(t *testing.T) {
	a, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "/etc/veil/x.toml"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := optionsConfigPath(a); err != nil || got != "/etc/veil/x.toml" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := optionsConfigPath(nil); err != nil || got != "" {
		t.Errorf("nil options: got %q, %v", got, err)
	}
}

func TestAgentResources(t *testing.T) {
	limit, quota, pids := int64(64<<20), int64(50000), int64(10)
	period := uint64(100000)
	r := agentResources(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period, Cpus: "0"},
		Pids:   &specs.LinuxPids{Limit: &pids},
	})
	if r.GetMemoryLimitBytes() != limit || r.GetCpuQuota() != quota || r.GetCpuPeriod() != period ||
		r.GetCpusetCpus() != "0" || r.GetPidsLimit() != pids {
		t.Errorf("unexpected %v", r)
	}
}

func TestAgentProcess(t *testing.T) {
	p := agentProcess(&specs.Process{Args: []string{"sh"}, Cwd: "/", User: specs.User{UID: 1, GID: 2},
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}}, true)
	if p.GetUid() != 1 || p.GetGid() != 2 || !p.GetStdin() || len(p.GetCapabilities()) != 1 {
		t.Errorf("unexpected %v", p)
	}
}

func TestDropNetSysctls(t *testing.T) {
	sysctls := func() map[string]string {
		return map[string]string{"net.ipv4.ping_group_range": "0 2147483647", "kernel.shm_rmid_forced": "1"}
	}
	tests := []struct {
		name    string
		ns      []specs.LinuxNamespace
		dropped int
		netns   string
	}{
		{"pod netns by path", []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/cni-1"}}, 1, "/run/netns/cni-1"},
		{"own new netns", []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, 0, ""},
		{"no netns", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Namespaces: tt.ns, Sysctl: sysctls()}}
			if got := netnsPath(spec); got != tt.netns {
				t.Errorf("netnsPath: %q, want %q", got, tt.netns)
			}
			dropped := dropNetSysctls(spec.Linux)
			if len(dropped) != tt.dropped || len(spec.Linux.Sysctl) != 2-tt.dropped {
				t.Errorf("dropped %v, left %v", dropped, spec.Linux.Sysctl)
			}
			if _, ok := spec.Linux.Sysctl["kernel.shm_rmid_forced"]; !ok {
				t.Error("a non-network sysctl was dropped")
			}
			for _, ns := range spec.Linux.Namespaces {
				if ns.Path != "" {
					t.Errorf("the host's namespace path %s reached the guest's spec", ns.Path)
				}
			}
		})
	}
}

func TestShareSandboxNamespaces(t *testing.T) {
	l := &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
		{Type: specs.MountNamespace, Path: "/proc/42/ns/mnt"}, // not shareable: left for the agent to refuse
		{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},    // another process: left as it is
	}}
	shareSandboxNamespaces(l, 42)
	want := []string{"", "/run/veil/sandbox/ns/ipc", "/run/veil/sandbox/ns/uts", "/proc/42/ns/mnt", "/proc/7/ns/ipc"}
	for i, ns := range l.Namespaces {
		if ns.Path != want[i] {
			t.Errorf("namespaces[%d] (%s): path %q, want %q", i, ns.Type, ns.Path, want[i])
		}
	}
}
