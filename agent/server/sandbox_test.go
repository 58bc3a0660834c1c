package server

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

func TestCheckAndVersion(t *testing.T) {
	s := newRootedServer(t)
	c, err := s.Check(context.Background(), &api.CheckRequest{})
	if err != nil || c.GetStatus() != api.CheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", c, err)
	}
	v, err := s.Version(context.Background(), &api.VersionRequest{})
	if err != nil || v.GetApiVersion() != 1 || v.GetAgentVersion() != AgentVersion {
		t.Fatalf("Version = %v, %v", v, err)
	}
}

func TestCreateSandbox(t *testing.T) {
	s := newRootedServer(t)
	ctx := context.Background()
	for _, bad := range []*api.CreateSandboxRequest{
		{SandboxId: ""},
		{SandboxId: "../x"},
		{SandboxId: "pod1", Hostname: "bad host"},
		{SandboxId: "pod1", Hostname: strings.Repeat("h", 65)},
		{SandboxId: "pod1", Dns: []string{"nameserver 10.0.0.1\nnameserver 6.6.6.6"}},
		{SandboxId: "pod1", Dns: []string{""}},
		{SandboxId: "pod1", Storages: []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: "/etc"}}},
		{SandboxId: "pod1", Storages: []*api.Storage{{Driver: "nfs", MountPoint: "/run/veil/x"}}},
		{SandboxId: "pod1", Storages: []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: s.paths.Path(api.SharedDir)}}},
		{SandboxId: "pod1", Storages: []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: s.paths.Path(api.ImagesDir)}}},
		{SandboxId: "pod1", Storages: []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: s.paths.Path(api.SandboxDir)}}},
	} {
		if _, err := s.CreateSandbox(ctx, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CreateSandbox(%v) = %v, want invalid argument", bad, err)
		}
	}
	req := &api.CreateSandboxRequest{SandboxId: "pod1", Dns: []string{"nameserver 10.0.0.1", "search svc.local"}}
	if _, err := s.CreateSandbox(ctx, req); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	b, err := os.ReadFile(s.paths.Path(api.ResolvConf))
	if err != nil || string(b) != "nameserver 10.0.0.1\nsearch svc.local\n" {
		t.Fatalf("resolv.conf = %q, %v", b, err)
	}
	if _, err := s.CreateSandbox(ctx, req); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second CreateSandbox = %v, want already exists", err)
	}
}

// The hostname is set in a new UTS namespace of a locked thread, so the host keeps its own.
func TestCreateSandboxHostname(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a UTS namespace (run the tests as root)")
	}
	s := newRootedServer(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			errc <- err
			return
		}
		_, err := s.CreateSandbox(context.Background(), &api.CreateSandboxRequest{SandboxId: "pod1", Hostname: "pod-one"})
		if err == nil {
			var uts unix.Utsname
			_ = unix.Uname(&uts)
			if got := unix.ByteSliceToString(uts.Nodename[:]); got != "pod-one" {
				err = errors.New("hostname is " + got)
			}
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("CreateSandbox with a hostname: %v", err)
	}
}

func TestDestroySandbox(t *testing.T) {
	s := newRootedServer(t)
	ctx := context.Background()
	if _, err := s.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: "pod1"}); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	if _, err := s.DestroySandbox(ctx, &api.DestroySandboxRequest{SandboxId: "pod2"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("DestroySandbox of another sandbox = %v, want not found", err)
	}
	select {
	case <-s.Destroyed():
		t.Fatal("Destroyed closed after a refused DestroySandbox")
	default:
	}
	if _, err := s.DestroySandbox(ctx, &api.DestroySandboxRequest{SandboxId: "pod1"}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	select {
	case <-s.Destroyed():
	default:
		t.Fatal("Destroyed not closed after DestroySandbox")
	}
	if _, err := s.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("second DestroySandbox: %v", err)
	}
}

func TestSetGuestTimeAndPolicy(t *testing.T) {
	s := newRootedServer(t)
	ctx := context.Background()
	for _, ns := range []int64{0, -1} {
		if _, err := s.SetGuestTime(ctx, &api.SetGuestTimeRequest{UnixNano: ns}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SetGuestTime(%d) = %v, want invalid argument", ns, err)
		}
	}
	// Without an engine (never the case in the agent, which sets one before serving).
	_, err := s.SetPolicy(ctx, &api.SetPolicyRequest{Policy: policies.AllowAll})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "no policy engine") {
		t.Fatalf("SetPolicy without an engine = %v, want failed precondition", err)
	}
	e, err := policy.New(policies.AllowAll)
	if err != nil {
		t.Fatal(err)
	}
	s.SetPolicyEngine(e)
	denyCheck := "package agent_policy\n\ndefault CheckRequest := false\n"
	if _, err := s.SetPolicy(ctx, &api.SetPolicyRequest{Policy: denyCheck}); err != nil {
		t.Fatalf("SetPolicy of a good policy: %v", err)
	}
	if d, _ := e.Decide(ctx, "Check", &api.CheckRequest{}); d.Allow {
		t.Fatal("the new policy is not in force: Check still allowed")
	}
	_, err = s.SetPolicy(ctx, &api.SetPolicyRequest{Policy: "package agent_policy\n\nCheckRequest if { input.x == }\n"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "policy.rego:3") {
		t.Fatalf("SetPolicy of a syntax error = %v, want invalid argument naming policy.rego:3", err)
	}
	if d, _ := e.Decide(ctx, "Check", &api.CheckRequest{}); d.Allow {
		t.Fatal("a policy that does not compile replaced the old one")
	}
}

func TestGetGuestDetails(t *testing.T) {
	s := newRootedServer(t)
	d, err := s.GetGuestDetails(context.Background(), &api.GetGuestDetailsRequest{})
	if err != nil {
		t.Fatalf("GetGuestDetails: %v", err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if d.GetKernelRelease() != unix.ByteSliceToString(uts.Release[:]) || d.GetMemTotalBytes() == 0 ||
		d.GetOnlineCpus() == 0 || d.GetTee() == "" || d.GetAgentVersion() != AgentVersion || d.GetBootTimeUnixNano() == 0 {
		t.Fatalf("GetGuestDetails = %v", d)
	}
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]uint32{"0": 1, "0-3": 4, "0-3,6": 5, "0,2,4-5": 4, "": 0} {
		if got, err := countCPUList(in); err != nil || got != want {
			t.Errorf("countCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "3-1", "0-x"} {
		if _, err := countCPUList(bad); err == nil {
			t.Errorf("countCPUList(%q) succeeded", bad)
		}
	}
}
