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
