//go:build e2e

package e2e

// What the hostile tests do with a booted hostileEnv: honest victims, hostile requests, and
// the checks that nothing the host planted ran and nothing of the guest's reached the host.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
)

// refused reports whether err is a refusal; it fails the test unless the refusal is
// PermissionDenied (the policy) or InvalidArgument (the agent), and logs the agent's words.
func refused(t *testing.T, what string, err error) bool {
	t.Helper()
	if err == nil {
		t.Errorf("%s: ACCEPTED; want it refused (PermissionDenied or InvalidArgument)", what)
		return false
	}
	st := status.Convert(err)
	if c := st.Code(); c != codes.PermissionDenied && c != codes.InvalidArgument {
		t.Errorf("%s: refused with %s, want PermissionDenied or InvalidArgument: %s", what, c, st.Message())
		return true
	}
	t.Logf("%s: refused (%s): %s", what, st.Code(), st.Message())
	return true
}

// readUntil reads the stdout of a process until it shows one of stops, ends, or d passes.
func (e *hostileEnv) readUntil(cid, execID string, d time.Duration, stops ...string) string {
	c, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []byte
	for {
		r, err := e.sb.Agent.ReadStdout(c, &api.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 64 << 10})
		if err != nil {
			return string(out)
		}
		out = append(out, r.GetData()...)
		for _, s := range stops {
			if strings.Contains(string(out), s) {
				return string(out)
			}
		}
		if r.GetEof() {
			return string(out)
		}
	}
}

// exec runs p in container cid and returns its stdout and exit status (err: the agent
// refused it, or it never ended).
func (e *hostileEnv) exec(cid, execID string, p *api.Process) (string, int32, error) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: cid, ExecId: execID, Process: p}); err != nil {
		return "", 0, err
	}
	out := e.readUntil(cid, execID, time.Minute)
	w, err := e.sb.Agent.WaitProcess(c, &api.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if err != nil {
		return out, 0, fmt.Errorf("WaitProcess %s/%s: %w", cid, execID, err)
	}
	return out, w.GetStatus(), nil
}

// removeGuest removes container id in the guest (killed at once).
func (e *hostileEnv) removeGuest(t *testing.T, id string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer %s: %v", id, err)
	}
}

// cleanShare removes the named entries of the share when the test ends.
func (e *hostileEnv) cleanShare(t *testing.T, names ...string) {
	t.Cleanup(func() {
		for _, n := range names {
			if err := os.RemoveAll(filepath.Join(e.share, n)); err != nil {
				t.Errorf("remove %s from the share: %v", n, err)
			}
		}
	})
}

// victim creates and starts an honest app, the target of an attack, and returns its id; it
// is removed when the test ends.
func (e *hostileEnv) victim(t *testing.T) string {
	t.Helper()
	id := e.newID("victim")
	e.cleanShare(t, id)
	c := hostileCtx(t, 3*time.Minute)
	if _, err := e.sb.Agent.CreateContainer(c, e.honest(t, id, hostileApp).msg()); err != nil {
		t.Fatalf("honest CreateContainer of the victim %s: %v", id, err)
	}
	t.Cleanup(func() { e.removeGuest(t, id) })
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
	if out := e.readUntil(id, "", time.Minute, "app-ok"); !strings.Contains(out, "app-ok") {
		t.Fatalf("the victim %s printed %q, want app-ok", id, out)
	}
	return id
}

// probeOK runs app's declared probe in container id as an honest shim does and fails unless
// it prints the pod's host name: a program the host planted did not replace cat.
func (e *hostileEnv) probeOK(t *testing.T, id string) {
	t.Helper()
	out, st, err := e.exec(id, e.newID("probe"), e.probe(hostileApp))
	noMarker(t, "app's probe after the attack", out)
	if err != nil || st != 0 || out != hostileHostname+"\n" {
		t.Errorf("app's probe in %s: %v, status %d, output %q; want 0 and %q", id, err, st, out, hostileHostname+"\n")
	}
}

// tryCreate sends a CreateContainer the host made hostile. When the agent refuses it, it
// checks the refusal. When the agent accepts it (the attack worked), it starts the container,
// returns its output (until one of stops, or 30 s) as evidence, and removes it.
func (e *hostileEnv) tryCreate(t *testing.T, what string, r *hostileReq, stops ...string) (bool, string) {
	t.Helper()
	c := hostileCtx(t, 3*time.Minute)
	_, err := e.sb.Agent.CreateContainer(c, r.msg())
	if refused(t, what, err) {
		return false, ""
	}
	defer e.removeGuest(t, r.id)
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: r.id}); err != nil {
		t.Logf("%s: StartContainer: %v", what, err)
		return true, ""
	}
	out := e.readUntil(r.id, "", 30*time.Second, stops...)
	t.Logf("%s: the container the host made printed %q", what, out)
	return true, out
}

// attackCreate sends r, an otherwise honest CreateContainer the host made hostile, and checks
// that it is refused and that nothing leaked or ran. Under allow-all the host also chooses
// the command: args (listArgs when nil) show what the container would see; leaks are
// strings in its output that prove the attack.
func (e *hostileEnv) attackCreate(t *testing.T, what string, r *hostileReq, args []string, leaks ...string) {
	t.Helper()
	if e.policy == polAllowAll {
		if args == nil {
			args = listArgs
		}
		p := r.spec.Process
		p.Args, p.NoNewPrivileges = args, false
		p.User = specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}
	}
	before := e.snapshot(t)
	accepted, out := e.tryCreate(t, what, r, append([]string{"listed", "app-ok", hostileMarker}, leaks...)...)
	if accepted {
		if l := listing(out); l != "" {
			t.Errorf("LEAK: the container's /data is not the host's empty directory, it shows: %s", l)
		}
		for _, s := range leaks {
			if strings.Contains(out, s) {
				t.Errorf("LEAK: the container printed %q", s)
			}
		}
	}
	noMarker(t, what, out)
	e.checkShare(t, before)
}

// copyFile sends CopyFile of a program the host plants (hostileScript, mode 0755).
func (e *hostileEnv) copyFile(t *testing.T, path string) error {
	t.Helper()
	_, err := e.sb.Agent.CopyFile(hostileCtx(t, time.Minute), &api.CopyFileRequest{
		Path: path, Data: []byte(hostileScript), Mode: 0o755, MakeParents: true})
	return err
}

// shareState is what the host sees in the share: each path and its type.
type shareState map[string]fs.FileMode

func (e *hostileEnv) snapshot(t *testing.T) shareState {
	t.Helper()
	s := shareState{}
	err := filepath.WalkDir(e.share, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		s[p] = d.Type()
		return nil
	})
	if err != nil {
		t.Fatalf("walk the share: %v", err)
	}
	return s
}

// checkShare fails when the share holds a file that was not there before (and that is not
// at or below one of expected: what the test itself placed or wrote through the agent): the
// guest put something where the host reads. New directories (mount points the agent made)
// are only logged.
func (e *hostileEnv) checkShare(t *testing.T, before shareState, expected ...string) {
	t.Helper()
	for p, mode := range e.snapshot(t) {
		if _, ok := before[p]; ok || below(p, expected) {
			continue
		}
		if mode.IsDir() {
			t.Logf("the guest made the directory %s in the host's share", p)
			continue
		}
		data, _ := os.ReadFile(p)
		t.Errorf("LEAK: the host's share gained %s (%v, %d bytes) from the guest", p, mode, len(data))
	}
}

// below reports whether p is one of dirs or below one of them.
func below(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// noMarker fails when out shows that a program the host planted ran, or the guest secret.
func noMarker(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, hostileMarker) {
		t.Errorf("HOST CODE RAN: %s printed %q: %q", what, hostileMarker, out)
	}
	if strings.Contains(out, hostileSecret) {
		t.Errorf("LEAK: %s showed the guest secret: %q", what, out)
	}
}
