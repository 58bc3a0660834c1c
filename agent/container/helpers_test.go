package container

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/container/containertest"
	"github.com/veil-runtime/veil/agent/storage"
)

func TestMain(m *testing.M) {
	InitIfRequested()
	os.Exit(m.Run())
}

func requireRoot(t *testing.T)                           { containertest.RequireRoot(t) }
func newRootfs(t *testing.T) string                      { return containertest.Rootfs(t) }
func testSpec(rootfs string, args ...string) *specs.Spec { return containertest.Spec(rootfs, args...) }
func specJSON(t *testing.T, s *specs.Spec) []byte        { return containertest.JSON(t, s) }

// newTestManager returns a Manager whose containers are all removed when t ends.
func newTestManager(t *testing.T) *Manager {
	t.Helper()
	m, err := NewManager(t.TempDir(), storage.New(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.RemoveAll(context.Background(), 0); err != nil {
			t.Errorf("RemoveAll: %v", err)
		}
	})
	return m
}

// testID returns a container id unique to the test.
func testID(t *testing.T) string {
	return strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + "-" + time.Now().Format("150405.000000")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readAll reads a stream of a process until EOF.
func readAll(t *testing.T, m *Manager, id, execID string, stderr bool) []byte {
	t.Helper()
	ctx := testCtx(t)
	var out bytes.Buffer
	for {
		read := m.ReadStdout
		if stderr {
			read = m.ReadStderr
		}
		data, eof, err := read(ctx, id, execID, 0)
		if err != nil {
			t.Fatalf("read output of %s/%q: %v (so far %q)", id, execID, err, out.String())
		}
		out.Write(data)
		if eof {
			return out.Bytes()
		}
	}
}

// run creates and starts a container and returns its id.
func run(t *testing.T, m *Manager, s *specs.Spec, stdin bool) string {
	t.Helper()
	id := testID(t)
	ctx := testCtx(t)
	if err := m.Create(ctx, id, specJSON(t, s), stdin, nil); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id
}
