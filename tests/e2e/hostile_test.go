//go:build e2e

package e2e

// Tests of a hostile host (see hostile_harness_test.go): the honest pod runs, and the
// policy-level attacks (state, exec identity, the sandbox container, withheld output) are
// refused. The path attacks are in hostile_paths_test.go and hostile_extra_test.go.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// startPause creates and starts the honest sandbox (pause) container, the guest image's pause
// bundle, which pod containers then join (ipc, uts).
func (e *hostileEnv) startPause(t *testing.T) {
	t.Helper()
	c := hostileCtx(t, 2*time.Minute)
	e.cleanShare(t, hostileSandboxID)
	if _, err := e.sb.Agent.CreateContainer(c, e.pause(t).msg()); err != nil {
		t.Fatalf("the honest sandbox container (%s storage, %s) was refused: %v", api.DriverPause, api.PauseCommand, err)
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: hostileSandboxID}); err != nil {
		t.Fatalf("StartContainer of the sandbox container: %v", err)
	}
	e.sandboxJoined = true
}

// TestHostileHonestPod: the requests of an honest shim under guest pull run the pod under
// veil-genpolicy's policy, and nothing is left on the host afterwards.
func TestHostileHonestPod(t *testing.T) {
	e := newHostileEnv(t, polGenerated)
	c := hostileCtx(t, 5*time.Minute)
	e.startPause(t)

	id := "app-1"
	e.cleanShare(t, id)
	r := e.honest(t, id, hostileApp)
	if _, err := e.sb.Agent.CreateContainer(c, r.msg()); err != nil {
		t.Fatalf("honest CreateContainer of app: %v", err)
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer app: %v", err)
	}
	if out := e.readUntil(id, "", time.Minute, "app-ok"); !strings.Contains(out, "app-ok") {
		t.Fatalf("app printed %q, want app-ok", out)
	}
	if _, err := os.Lstat(e.hostPath(api.SharedRootfs(id))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the host's share has a root file system for the guest-pulled app: %v", err)
	}
	out, st, err := e.exec(id, "probe-1", e.probe(hostileApp))
	if err != nil || st != 0 || out != hostileHostname+"\n" {
		t.Fatalf("app's declared probe: %v, status %d, output %q; want 0 and %q", err, st, out, hostileHostname+"\n")
	}
	t.Logf("app ran from the pulled image; its probe printed %q", out)

	// debug too (the attacks reuse its request): it runs as root, and its probe shows it.
	dbg := "debug-1"
	e.cleanShare(t, dbg)
	if _, err := e.sb.Agent.CreateContainer(c, e.honest(t, dbg, hostileDebug).msg()); err != nil {
		t.Fatalf("honest CreateContainer of debug: %v", err)
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: dbg}); err != nil {
		t.Fatalf("StartContainer debug: %v", err)
	}
	if out, st, err := e.exec(dbg, "probe-1", e.probe(hostileDebug)); err != nil || st != 0 || !strings.HasPrefix(out, "uid=0(root)") {
		t.Fatalf("debug's declared probe: %v, status %d, output %q; want 0 and uid=0(root)...", err, st, out)
	}

	for _, cid := range []string{id, dbg} {
		if _, err := e.sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: cid}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", cid, err)
		}
	}
	if _, err := e.sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: hostileSandboxID}); err != nil {
		t.Fatalf("RemoveContainer of the sandbox container: %v", err)
	}
	if _, err := e.sb.Agent.DestroySandbox(c, &api.DestroySandboxRequest{SandboxId: hostileSandboxID}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	share, tap, vm := e.share, e.tap, e.vmID
	if err := e.close(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if _, err := net.InterfaceByName(tap); err == nil {
		t.Errorf("the tap %s is still there", tap)
	}
	if ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(share)); len(ms) > 0 {
		t.Errorf("still mounted below the share: %v", ms)
	}
	if _, err := os.Lstat(share); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the share %s is still there: %v", share, err)
	}
	for _, p := range []string{vm, vm + ".initdata.img", vm + ".sim-psp.img"} {
		if _, err := os.Lstat(filepath.Join(sandbox.DefaultStateRoot, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("VM state %s left: %v", p, err)
		}
	}
}

// TestHostilePolicy: attacks on what the policy judges, under veil-genpolicy's policy.
func TestHostilePolicy(t *testing.T) {
	e := newHostileEnv(t, polGenerated)
	t.Run("RefusedCreateMovesState", func(t *testing.T) { testRefusedCreateState(t, e) })
	t.Run("ExecIdentity", func(t *testing.T) { testExecIdentity(t, e) })
	t.Run("SandboxHostRoot", func(t *testing.T) { testSandboxHostRoot(t, e) })
	t.Run("UndeclaredPort", func(t *testing.T) {
		// The pod declares no port: port forwarding may not reach the guest's loopback.
		for _, port := range []uint32{22, 8080, 1024} {
			_, err := e.sb.Agent.OpenPort(hostileCtx(t, time.Minute), &api.OpenPortRequest{Port: port})
			if refused(t, fmt.Sprintf("OpenPort %d", port), err) && status.Code(err) != codes.PermissionDenied {
				t.Errorf("OpenPort %d: want the policy's refusal", port)
			}
		}
	})
}

// A CreateContainer the agent refuses (the id exists) must not move the policy's state: app
// keeps being judged as app, so debug's probe (root, id; cat /proc/1/environ) is refused in it.
func testRefusedCreateState(t *testing.T, e *hostileEnv) {
	c1 := e.victim(t)
	before := e.snapshot(t)
	// debug's request for the same id, its bind sources the ones app's already uses (same
	// types, numbered from 1), so that the policy would take it for debug.
	_, err := e.sb.Agent.CreateContainer(hostileCtx(t, time.Minute), e.honestAt(t, c1, hostileDebug, 1).msg())
	if err == nil {
		t.Fatalf("a second CreateContainer of %s was accepted", c1)
	}
	t.Logf("CreateContainer of debug as %s refused (%s): %s", c1, status.Code(err), status.Convert(err).Message())
	p := e.probe(hostileDebug)
	out, st, err := e.exec(c1, "debug-probe", p)
	if refused(t, "debug's probe in app's container "+c1, err) {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("want the policy to refuse it")
		}
	} else {
		t.Errorf("debug's probe ran in app's container as uid 0: status %d, output %q", st, out)
	}
	noMarker(t, "debug's probe", out)
	e.probeOK(t, c1)
	e.checkShare(t, before)
}

// An exec of app's declared probe with another identity than app's is refused; the honest
// one runs.
func testExecIdentity(t *testing.T, e *hostileEnv) {
	id := e.victim(t)
	cases := []struct {
		name string
		mod  func(p *api.Process)
	}{
		{"gid 0", func(p *api.Process) { p.Gid = 0 }},
		{"additional gids 0 and 10", func(p *api.Process) { p.AdditionalGids = []uint32{0, 10} }},
		{"no_new_privileges false", func(p *api.Process) { p.NoNewPrivileges = false }},
		{"uid 0", func(p *api.Process) { p.Uid = 0 }},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			p := e.probe(hostileApp)
			tc.mod(p)
			out, st, err := e.exec(id, e.newID("ident"), p)
			if !refused(t, "app's probe with "+tc.name, err) {
				t.Logf("it ran: status %d, output %q", st, out)
			}
		})
	}
	e.probeOK(t, id)
}

// The sandbox (pause) container under guest pull runs only the guest image's pause bundle:
// a root the host shares, with its own /pause and /bin/sh planted, is refused.
func testSandboxHostRoot(t *testing.T, e *hostileEnv) {
	sb := hostileSandboxID
	planted := api.SharedRootfs(sb)
	cases := []struct {
		name string
		mod  func(r *hostileReq)
	}{
		{"the sandbox spec of today's shim, rootfs shared", func(r *hostileReq) {
			// What the shim sends today for a pause image of busybox (cmd sh): root shared
			// from the host.
			p := r.spec.Process
			p.Args, p.Env = []string{"sh"}, []string{busyboximage.Path}
			p.User = specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}
			p.Capabilities = &specs.LinuxCapabilities{Bounding: hostileCaps, Effective: hostileCaps, Permitted: hostileCaps}
			p.NoNewPrivileges = false
			r.spec.Root.Path, r.storages = planted, nil
			r.spec.Annotations[api.ImageDigestAnnotation] = e.digest
		}},
		{"pause spec, root.path in the share", func(r *hostileReq) { r.spec.Root.Path, r.storages = planted, nil }},
		{"pause spec, the share bound at the bundle's place", func(r *hostileReq) {
			r.storages = []*api.Storage{{Driver: api.DriverBind, Source: planted, MountPoint: r.spec.Root.Path}}
		}},
		{"pause bundle with the share bound over it", func(r *hostileReq) {
			r.storages = append(r.storages, &api.Storage{Driver: api.DriverBind, Source: planted, MountPoint: r.spec.Root.Path})
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			e.cleanShare(t, sb)
			r := e.pause(t)
			plantRoot(t, e.hostPath(planted))
			tc.mod(r)
			before := e.snapshot(t)
			_, out := e.tryCreate(t, tc.name, r, hostileMarker)
			noMarker(t, tc.name, out)
			e.checkShare(t, before, e.hostPath(planted)) // runc makes mount points in a shared root

		})
	}
	t.Run("honest_pause_bundle", func(t *testing.T) {
		e.startPause(t)
		defer e.removeGuest(t, sb)
		time.Sleep(2 * time.Second)
		ps, err := e.sb.Agent.ListProcesses(hostileCtx(t, time.Minute), &api.ListProcessesRequest{ContainerId: sb})
		if err != nil || len(ps.GetProcesses()) != 1 || !slices.Equal(ps.GetProcesses()[0].GetArgs(), []string{api.PauseCommand}) {
			t.Errorf("the pause container does not run %s alone: %v %v", api.PauseCommand, ps, err)
		}
	})
}

// TestHostileWithheld: under withhold_output the host reads no output and no command lines,
// and may not set the guest's clock.
func TestHostileWithheld(t *testing.T) {
	e := newHostileEnv(t, polWithhold)
	c := hostileCtx(t, 3*time.Minute)
	id := e.newID("app")
	e.cleanShare(t, id)
	if _, err := e.sb.Agent.CreateContainer(c, e.honest(t, id, hostileApp).msg()); err != nil {
		t.Fatalf("honest CreateContainer of app: %v", err)
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if out := e.readUntil(id, "", 10*time.Second, "app-ok"); out != "" {
		t.Errorf("LEAK: withheld output reached the host: %q", out)
	}
	out, st, err := e.exec(id, "probe", e.probe(hostileApp))
	if err != nil || st != 0 || out != "" {
		t.Errorf("app's probe under withhold_output: %v, status %d, output %q; want 0 and nothing", err, st, out)
	}
	ps, err := e.sb.Agent.ListProcesses(c, &api.ListProcessesRequest{ContainerId: id})
	if err != nil || len(ps.GetProcesses()) == 0 {
		t.Fatalf("ListProcesses: %v, %v; want the container's pids", ps, err)
	}
	for _, p := range ps.GetProcesses() {
		if p.GetPid() == 0 {
			t.Errorf("ListProcesses gave a process without a pid: %v", p)
		}
		if len(p.GetArgs()) > 0 {
			t.Errorf("LEAK: ListProcesses gave pid %d's command line %q under withhold_output", p.GetPid(), p.GetArgs())
		}
	}
	_, err = e.sb.Agent.SetGuestTime(c, &api.SetGuestTimeRequest{UnixNano: time.Now().Add(-24 * time.Hour).UnixNano()})
	if refused(t, "SetGuestTime", err) && status.Code(err) != codes.PermissionDenied {
		t.Errorf("SetGuestTime: want the baseline policy to refuse it")
	}
}
