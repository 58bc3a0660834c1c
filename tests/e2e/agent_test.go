//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/api/jsoncall"
	"github.com/veil-runtime/veil/shim/ctl"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// TestAgent shares one VM between the subtests that do not need a VM of their own.
func TestAgent(t *testing.T) {
	sb := boot(t)
	t.Run("GuestDetails", func(t *testing.T) { testGuestDetails(t, sb) })
	t.Run("ExecSignalWait", func(t *testing.T) { testExecSignalWait(t, sb) })
	t.Run("BadRequests", func(t *testing.T) { testBadRequests(t, sb) })
	t.Run("RawCall", func(t *testing.T) { testRawCall(t, sb) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, sb) })
	t.Run("Terminal", func(t *testing.T) { testTerminal(t, sb) })
	t.Run("Seccomp", func(t *testing.T) { testSeccomp(t, sb) })
}

func testGuestDetails(t *testing.T, sb *sandbox.Sandbox) {
	d, err := sb.Agent.GetGuestDetails(ctx(t, 10*time.Second), &api.GetGuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetKernelRelease() == "" || d.GetMemTotalBytes() == 0 || d.GetOnlineCpus() == 0 {
		t.Fatalf("guest details incomplete: %v", d)
	}
	if d.GetTee() != api.TEENone {
		t.Fatalf("tee = %q in a plain VM, want none", d.GetTee())
	}
}

func testExecSignalWait(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "sleeper", []string{"sleep", "1000"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	// An exec'd process with output, waited for.
	p := &api.Process{Args: []string{"sh", "-c", "echo exec-out; exit 3"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "sleeper", ExecId: "e1", Process: p}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (stdio.Process{Agent: sb.Agent, ContainerID: "sleeper", ExecID: "e1"}).CopyStdout(c, &out); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "sleeper", "e1"); w.GetStatus() != 3 || out.String() != "exec-out\n" {
		t.Fatalf("exec: status %d output %q, want 3 and \"exec-out\\n\"", w.GetStatus(), out.String())
	}
	// A second exec, signalled: status 128+15.
	p = &api.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "sleeper", ExecId: "e2", Process: p}); err != nil {
		t.Fatal(err)
	}
	ps, err := sb.Agent.ListProcesses(c, &api.ListProcessesRequest{ContainerId: "sleeper"})
	if err != nil || len(ps.GetProcesses()) < 2 {
		t.Fatalf("ListProcesses: %v, %v (want init and e2)", ps, err)
	}
	if _, err := sb.Agent.SignalProcess(c, &api.SignalProcessRequest{ContainerId: "sleeper", ExecId: "e2", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "sleeper", "e2"); w.GetStatus() != 128+15 || w.GetSignal() != 15 {
		t.Fatalf("signalled exec: status %d signal %d, want 143 and 15", w.GetStatus(), w.GetSignal())
	}
	// The container's init, killed.
	if _, err := sb.Agent.SignalProcess(c, &api.SignalProcessRequest{ContainerId: "sleeper", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "sleeper", ""); w.GetStatus() != 137 {
		t.Fatalf("killed init: status %d, want 137", w.GetStatus())
	}
	if _, err := sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: "sleeper"}); err != nil {
		t.Fatal(err)
	}
}

func waitProcess(t *testing.T, sb *sandbox.Sandbox, id, execID string) *api.WaitProcessResponse {
	t.Helper()
	w, err := sb.Agent.WaitProcess(ctx(t, time.Minute), &api.WaitProcessRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		t.Fatalf("WaitProcess %s/%s: %v", id, execID, err)
	}
	return w
}

// testBadRequests sends each kind of bad request, checks its error names the problem, and that
// the agent still answers afterwards.
func testBadRequests(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "dup", []string{"true"}, containerOpts{})
	newContainer(t, sb, "sleeper2", []string{"sleep", "1000"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "sleeper2"}); err != nil {
		t.Fatal(err)
	}
	goodSpec, err := ctl.Spec(ctl.SpecOptions{Args: []string{"true"}, RootPath: api.StorageDir + "/dup/rootfs"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		call    func() error
		wantErr error
		wantMsg string
	}{
		{"unknown id", func() error {
			_, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "nope"})
			return err
		}, errdefs.ErrNotFound, "nope"},
		{"duplicate id", func() error {
			_, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "dup", OciSpec: []byte("{}")})
			return err
		}, errdefs.ErrAlreadyExists, "dup"},
		// The policy decodes the spec before the handler does; one it cannot decode is refused
		// there, as an invalid argument, even under allow-all.
		{"bad spec", func() error {
			_, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "badspec", OciSpec: []byte("not json")})
			return err
		}, errdefs.ErrInvalidArgument, "oci_spec: not an OCI runtime spec"},
		{"invalid id", func() error {
			_, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "../x", OciSpec: []byte("{}")})
			return err
		}, errdefs.ErrInvalidArgument, "id"},
		{"copy-file traversal", func() error {
			_, err := sb.Agent.CopyFile(c, &api.CopyFileRequest{Path: "/run/veil/../../etc/passwd", Data: []byte("x")})
			return err
		}, errdefs.ErrInvalidArgument, ".."},
		{"copy-file outside", func() error {
			_, err := sb.Agent.CopyFile(c, &api.CopyFileRequest{Path: "/etc/shadow", Data: []byte("x")})
			return err
		}, errdefs.ErrInvalidArgument, "/run/veil"},
		{"missing binary", func() error {
			spec, err := ctl.Spec(ctl.SpecOptions{Args: []string{"/bin/no-such-binary"}, RootPath: api.StorageDir + "/nobin/rootfs"})
			if err != nil {
				return nil
			}
			_, err = sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "nobin", OciSpec: spec,
				Storages: []*api.Storage{{Driver: "virtiofs", Source: "rootfs", MountPoint: api.StorageDir + "/nobin/rootfs"}}})
			return err
		}, errdefs.ErrInvalidArgument, "no-such-binary"},
		{"exec of a missing binary", func() error {
			_, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "sleeper2", ExecId: "x",
				Process: &api.Process{Args: []string{"nope-cmd"}, Cwd: "/", Env: []string{"PATH=/bin"}}})
			return err
		}, nil, "nope-cmd"},
		{"unknown storage driver", func() error {
			_, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "nfs", OciSpec: goodSpec,
				Storages: []*api.Storage{{Driver: "nfs", Source: "x", MountPoint: "/run/veil/x"}}})
			return err
		}, errdefs.ErrInvalidArgument, "nfs"},
		{"storage outside /run/veil", func() error {
			_, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "outside", OciSpec: goodSpec,
				Storages: []*api.Storage{{Driver: "tmpfs", MountPoint: "/etc"}}})
			return err
		}, errdefs.ErrInvalidArgument, "/run/veil"},
		{"unknown exec id", func() error {
			_, err := sb.Agent.WaitProcess(c, &api.WaitProcessRequest{ContainerId: "dup", ExecId: "ghost"})
			return err
		}, errdefs.ErrNotFound, "ghost"},
	}
	for _, tc := range cases {
		err := tc.call()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if tc.wantErr != nil && !errorIs(err, tc.wantErr) {
			t.Errorf("%s: error %v is not %v", tc.name, err, tc.wantErr)
		}
		if !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.wantMsg)
		}
		if r, err := sb.Agent.Check(c, &api.CheckRequest{}); err != nil || r.GetStatus() != api.CheckResponse_SERVING {
			t.Fatalf("after %s the agent no longer serves: %v %v", tc.name, r, err)
		}
	}
}

// errorIs reports whether err, as it came over ttrpc, carries the errdefs kind target.
func errorIs(err, target error) bool {
	return errors.Is(errgrpc.ToNative(err), target)
}

func testRawCall(t *testing.T, sb *sandbox.Sandbox) {
	client, err := sb.Dial(ctx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	out, err := jsoncall.Call(ctx(t, 10*time.Second), client, "Version", "")
	if err != nil || !strings.Contains(string(out), "apiVersion") {
		t.Fatalf("raw Version call: %s, %v", out, err)
	}
	if _, err := jsoncall.Call(ctx(t, 10*time.Second), client, "NoSuchMethod", ""); err == nil {
		t.Fatal("raw call of an unknown method succeeded")
	}
}
