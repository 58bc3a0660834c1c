package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/container"
	"github.com/veil-runtime/veil/agent/container/containertest"
)

func TestMain(m *testing.M) {
	container.InitIfRequested()
	os.Exit(m.Run())
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.containers.RemoveAll(context.Background(), 0); err != nil {
			t.Errorf("RemoveAll: %v", err)
		}
	})
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readStream reads stdout (or stderr) of a process through the server until EOF.
func readStream(t *testing.T, s *Server, id, execID string, stderr bool) string {
	t.Helper()
	var out bytes.Buffer
	for {
		req := &api.ReadStreamRequest{ContainerId: id, ExecId: execID, Len: 4096}
		read := s.ReadStdout
		if stderr {
			read = s.ReadStderr
		}
		resp, err := read(testCtx(t), req)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out.Write(resp.GetData())
		if resp.GetEof() {
			return out.String()
		}
	}
}

func TestServerContainerLifecycle(t *testing.T) {
	containertest.RequireRoot(t)
	s := newTestServer(t)
	ctx := testCtx(t)
	spec := containertest.Spec(containertest.Rootfs(t), "sh", "-c", "read line; echo got $line; echo oops >&2; exit 3")
	id := "srv-lifecycle"
	_, err := s.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: id, OciSpec: containertest.JSON(t, spec), Stdin: true})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := s.StartContainer(ctx, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	w, err := s.WriteStdin(ctx, &api.WriteStreamRequest{ContainerId: id, Data: []byte("hello\n")})
	if err != nil || w.GetLen() != 6 {
		t.Fatalf("WriteStdin = %v, %v", w, err)
	}
	if _, err := s.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: id}); err != nil {
		t.Fatalf("CloseStdin: %v", err)
	}
	if out := readStream(t, s, id, "", false); out != "got hello\n" {
		t.Errorf("stdout = %q", out)
	}
	if out := readStream(t, s, id, "", true); out != "oops\n" {
		t.Errorf("stderr = %q", out)
	}
	st, err := s.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: id})
	if err != nil || st.GetStatus() != 3 || st.GetExitedAtUnixNano() == 0 {
		t.Errorf("WaitProcess = %v, %v; want status 3", st, err)
	}
	e, err := s.GetEvent(ctx, &api.GetEventRequest{})
	if err != nil || e.GetType() != api.Event_EXIT || e.GetContainerId() != id || e.GetExitStatus() != 3 {
		t.Errorf("GetEvent = %v, %v", e, err)
	}
	if _, err := s.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: id, TimeoutMs: 1000}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if _, err := s.StatsContainer(ctx, &api.StatsContainerRequest{ContainerId: id}); !errdefs.IsNotFound(err) {
		t.Errorf("StatsContainer after removal: %v, want NotFound", err)
	}
}

func TestServerExecTerminal(t *testing.T) {
	containertest.RequireRoot(t)
	s := newTestServer(t)
	ctx := testCtx(t)
	id := "srv-exec"
	spec := containertest.Spec(containertest.Rootfs(t), "sleep", "1000")
	if _, err := s.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: id, OciSpec: containertest.JSON(t, spec)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartContainer(ctx, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	proc := &api.Process{Args: []string{"sh", "-c", "sleep 0.2; stty size"}, Env: []string{"PATH=/bin"}, Terminal: true}
	if _, err := s.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: id, ExecId: "t1", Process: proc}); err != nil {
		t.Fatalf("ExecProcess: %v", err)
	}
	if _, err := s.TtyWinResize(ctx, &api.TtyWinResizeRequest{ContainerId: id, ExecId: "t1", Rows: 30, Cols: 90}); err != nil {
		t.Fatalf("TtyWinResize: %v", err)
	}
	if out := readStream(t, s, id, "t1", false); strings.TrimSpace(out) != "30 90" {
		t.Errorf("terminal output = %q, want 30 90", out)
	}
	ps, err := s.ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: id})
	if err != nil || len(ps.GetProcesses()) == 0 {
		t.Errorf("ListProcesses = %v, %v", ps, err)
	}
	if _, err := s.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: id, Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatalf("SignalProcess: %v", err)
	}
	if st, err := s.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: id}); err != nil || st.GetSignal() != 9 {
		t.Errorf("WaitProcess = %v, %v; want signal 9", st, err)
	}
}

func TestServerRejectsBadRequests(t *testing.T) {
	s := newTestServer(t)
	ctx := testCtx(t)
	for name, call := range map[string]func() error{
		"bad container id": func() error {
			_, err := s.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "../x"})
			return err
		},
		"bad exec id": func() error {
			_, err := s.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: "c", ExecId: "a/b"})
			return err
		},
		"exec without exec id": func() error {
			_, err := s.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "c", Process: &api.Process{Args: []string{"true"}}})
			return err
		},
		"signal 0": func() error {
			_, err := s.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c"})
			return err
		},
		"huge window": func() error {
			_, err := s.TtyWinResize(ctx, &api.TtyWinResizeRequest{ContainerId: "c", Rows: 1 << 20, Cols: 80})
			return err
		},
		"no resources": func() error {
			_, err := s.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: "c"})
			return err
		},
		"bad spec": func() error {
			_, err := s.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "c", OciSpec: []byte("nope")})
			return err
		},
	} {
		if err := call(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := s.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "nosuch"}); !errdefs.IsNotFound(err) {
		t.Errorf("StartContainer of an unknown id: %v, want NotFound", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.GetEvent(cctx, &api.GetEventRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("GetEvent with a cancelled context: %v, want Canceled", err)
	}
}
