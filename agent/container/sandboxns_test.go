package container

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

// joining returns a spec running args whose namespaces of the given types join the sandbox
// container's by api.SandboxNamespaceDir.
func joining(t *testing.T, types []specs.LinuxNamespaceType, args ...string) *specs.Spec {
	s := testSpec(newRootfs(t), args...)
	for i, ns := range s.Linux.Namespaces {
		for _, typ := range types {
			if ns.Type == typ {
				s.Linux.Namespaces[i].Path = api.SandboxNamespaceDir + "/" + string(typ)
			}
		}
	}
	return s
}

// TestSandboxNamespaces: a container joins the sandbox container's ipc and uts namespaces by
// their symbolic paths; the mount namespace cannot be joined that way, and nothing can be
// joined before a sandbox is named or once its container has stopped.
func TestSandboxNamespaces(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	ctx := testCtx(t)
	shared := []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace}

	err := m.Create(ctx, testID(t), specJSON(t, joining(t, shared, "true")), false, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "no sandbox was created") {
		t.Fatalf("join before SetSandbox: %v", err)
	}

	sb := run(t, m, testSpec(newRootfs(t), "sleep", "1000"), false)
	m.SetSandbox(sb)
	pid, err := m.sandboxPid("other")
	if err != nil {
		t.Fatal(err)
	}
	want := func(ns string) string {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			t.Fatal(err)
		}
		return link
	}
	id := run(t, m, joining(t, shared, "sh", "-c", "for n in ipc uts pid; do readlink /proc/self/ns/$n; done"), false)
	if e := waitEvent(t, m, id, "", api.Event_EXIT); e.GetExitStatus() != 0 {
		t.Fatalf("joining container exited %d", e.GetExitStatus())
	}
	// The output may come in several reads; it ends at eof.
	var out []byte
	for eof := false; !eof; {
		data, e, err := m.ReadStdout(ctx, id, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		out, eof = append(out, data...), e
	}
	lines := strings.Fields(string(out))
	if len(lines) != 3 || lines[0] != want("ipc") || lines[1] != want("uts") || lines[2] == want("pid") {
		t.Fatalf("namespaces %q; want ipc %s and uts %s of the sandbox, a pid namespace of its own",
			lines, want("ipc"), want("uts"))
	}

	err = m.Create(ctx, testID(t), specJSON(t, joining(t, []specs.LinuxNamespaceType{specs.MountNamespace}, "true")), false, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "cannot join") {
		t.Fatalf("joining the sandbox's mount namespace: %v", err)
	}

	if err := m.Remove(ctx, sb, time.Second); err != nil {
		t.Fatal(err)
	}
	err = m.Create(ctx, testID(t), specJSON(t, joining(t, shared, "true")), false, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("join after the sandbox container went: %v", err)
	}
}
