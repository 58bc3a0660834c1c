package snapshotter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	snpkg "github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSuite runs containerd's snapshotter test suite (the one its own snapshotters pass) on
// the snapshotter without remote snapshots: it must be a complete snapshotter.
func TestSuite(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("the snapshotter test suite mounts: run as root")
	}
	testsuite.SnapshotterSuite(t, "Veil", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := New(root)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}

// serve runs a snapshotter on a unix socket in a temporary directory and returns containerd's
// proxy client of it (what containerd's [proxy_plugins] makes) and the snapshotter.
func serve(t *testing.T) (snapshots.Snapshotter, *Snapshotter) {
	t.Helper()
	dir := t.TempDir()
	s, err := New(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(filepath.Join(dir, "run", "snap.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, s) }()
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if _, err := os.Stat(l.Addr().String()); !os.IsNotExist(err) {
			t.Errorf("the socket is left behind: %v", err)
		}
		_ = s.Close()
	})
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "veil"), s
}

// layerLabels are the labels containerd's unpacker (and CRI's snapshot annotations) put on a
// layer's extraction Prepare.
func layerLabels(chainID, layer string) snapshots.Opt {
	return snapshots.WithLabels(map[string]string{
		snapshots.LabelSnapshotRef:          chainID,
		snapshots.LabelSnapshotDiffID:       "sha256:diff-" + layer,
		snpkg.TargetRefLabel:                "registry.example/app:v1",
		snpkg.TargetLayerDigestLabel:        "sha256:" + layer,
		snpkg.TargetManifestDigestLabel:     "sha256:manifest",
		"containerd.io/snapshot.ref-parent": "", // ignored
	})
}

// TestRemoteOverGRPC: through the gRPC API, an extraction Prepare with the target label gets
// AlreadyExists and leaves a committed remote snapshot (labels kept, no usage) and no active
// one; a second layer stacks on it; the container's active snapshot is an empty, writable
// bind mount; Walk's filter finds the target as containerd's metadata layer asks for it; a
// Prepare on a missing parent is NotFound; Remove of a parent with children is refused, then
// works from the top down; Cleanup removes stray directories.
func TestRemoteOverGRPC(t *testing.T) {
	ctx := context.Background()
	sn, s := serve(t)

	_, err := sn.Prepare(ctx, "extract-1", "", layerLabels("sha256:chain1", "l1"))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("extraction Prepare of layer 1: %v, want AlreadyExists", err)
	}
	info, err := sn.Stat(ctx, "sha256:chain1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != snapshots.KindCommitted || info.Parent != "" || !IsRemote(info) ||
		info.Labels[snpkg.TargetLayerDigestLabel] != "sha256:l1" || info.Labels[snapshots.LabelSnapshotRef] != "sha256:chain1" {
		t.Fatalf("remote snapshot: %+v", info)
	}
	if _, err := sn.Stat(ctx, "extract-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the extraction key is kept: %v", err)
	}
	if u, err := sn.Usage(ctx, "sha256:chain1"); err != nil || u.Size != 0 {
		t.Fatalf("usage %+v, %v", u, err)
	}
	// Again (another image with the same layer): AlreadyExists, nothing new.
	if _, err := sn.Prepare(ctx, "extract-1b", "", layerLabels("sha256:chain1", "l1")); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second extraction Prepare: %v", err)
	}
	if _, err := sn.Prepare(ctx, "extract-2", "sha256:chain1", layerLabels("sha256:chain2", "l2")); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("extraction Prepare of layer 2: %v", err)
	}
	// What containerd's metadata layer looks for after AlreadyExists.
	var found []string
	err = sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		found = append(found, i.Name)
		return nil
	}, `labels."containerd.io/snapshot.ref"==sha256:chain2,parent=="sha256:chain1"`)
	if err != nil || len(found) != 1 || found[0] != "sha256:chain2" {
		t.Fatalf("walk with containerd's filter: %v, %v", found, err)
	}
	// A layer on a parent that does not exist.
	if _, err := sn.Prepare(ctx, "extract-x", "sha256:nope", layerLabels("sha256:chainx", "lx")); !errdefs.IsNotFound(err) {
		t.Fatalf("extraction on a missing parent: %v, want NotFound", err)
	}

	mounts, err := sn.Prepare(ctx, "container-rootfs", "sha256:chain2")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		t.Fatalf("mounts %+v", mounts)
	}
	target := t.TempDir()
	if err := mount.All(mounts, target); err != nil {
		t.Fatal(err)
	}
	entries, rerr := os.ReadDir(target)
	werr := os.WriteFile(filepath.Join(target, "written"), []byte("x"), 0o644)
	if err := mount.UnmountAll(target, 0); err != nil {
		t.Fatal(err)
	}
	if rerr != nil || len(entries) != 0 || werr != nil {
		t.Fatalf("the container's root: entries %v (%v), write %v", entries, rerr, werr)
	}
	if u, err := sn.Usage(ctx, "container-rootfs"); err != nil || u.Inodes < 2 {
		t.Fatalf("active usage %+v, %v", u, err)
	}

	if err := sn.Remove(ctx, "sha256:chain1"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove a parent: %v, want FailedPrecondition", err)
	}
	for _, k := range []string{"container-rootfs", "sha256:chain2", "sha256:chain1"} {
		if err := sn.Remove(ctx, k); err != nil {
			t.Fatalf("remove %s: %v", k, err)
		}
	}
	if err := sn.Remove(ctx, "sha256:chain1"); !errdefs.IsNotFound(err) {
		t.Fatalf("remove twice: %v, want NotFound", err)
	}
	stray := filepath.Join(s.Root(), "snapshots", "new-123")
	if err := os.MkdirAll(filepath.Join(stray, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sn.(snapshots.Cleaner).Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), "snapshots")); len(left) != 0 {
		t.Fatalf("left after removing everything and Cleanup: %v", left)
	}
}

// TestRemoteConflict: a target name held by a snapshot that is not that layer (another
// parent, or an active snapshot) is refused with FailedPrecondition, not taken for it.
func TestRemoteConflict(t *testing.T) {
	ctx := context.Background()
	sn, _ := serve(t)
	if _, err := sn.Prepare(ctx, "sha256:busy", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "extract", "", layerLabels("sha256:busy", "l1")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("target held by an active snapshot: %v, want FailedPrecondition", err)
	}
	if _, err := sn.Prepare(ctx, "extract", "", layerLabels("sha256:c1", "l1")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "extract", "", layerLabels("sha256:c2", "l2")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err := sn.Prepare(ctx, "extract", "sha256:c1", layerLabels("sha256:c2", "l2"))
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("target with another parent: %v, want FailedPrecondition", err)
	}
	t.Logf("refused: %v", err)
}

// TestThroughContainerdMetadata puts the proxy under containerd's own metadata layer (what
// containerd wraps every snapshotter in, namespaces and garbage collection included): the
// unpacker's Prepare of a layer comes back AlreadyExists and the layer is then a committed
// snapshot of the namespace; a container's snapshot on it works; and containerd's garbage
// collection removes everything once nothing references it.
func TestThroughContainerdMetadata(t *testing.T) {
	sn, s := serve(t)
	dir := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db := metadata.NewDB(bdb, cs, map[string]snapshots.Snapshotter{"veil": sn})
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	if err := db.Init(ctx); err != nil {
		t.Fatal(err)
	}
	msn := db.Snapshotter("veil")

	_, err = msn.Prepare(ctx, "extract-1", "", layerLabels("sha256:chain1", "l1"))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("through containerd's metadata: %v, want AlreadyExists", err)
	}
	if _, err := msn.Prepare(ctx, "extract-2", "sha256:chain1", layerLabels("sha256:chain2", "l2")); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	info, err := msn.Stat(ctx, "sha256:chain2")
	if err != nil || info.Kind != snapshots.KindCommitted || info.Parent != "sha256:chain1" {
		t.Fatalf("containerd's view of the layer: %+v, %v", info, err)
	}
	if _, err := msn.Prepare(ctx, "ctr-1", "sha256:chain2"); err != nil {
		t.Fatal(err)
	}
	if err := msn.Remove(ctx, "ctr-1"); err != nil {
		t.Fatal(err)
	}
	// Nothing references the layers (no image, no lease): GC removes them from the backend.
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	var left []string
	_ = s.Walk(ctx, func(_ context.Context, i snapshots.Info) error { left = append(left, i.Name); return nil })
	if len(left) != 0 {
		t.Fatalf("after containerd's GC the snapshotter still has %v", left)
	}
}

// TestListenRefuses: a path that is not a socket, or a socket another server holds, is
// refused; a stale socket is replaced.
func TestListenRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil {
		t.Fatal("listened over a regular file")
	}
	if _, err := Listen("relative.sock"); err == nil {
		t.Fatal("listened on a relative path")
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); err == nil {
		t.Fatal("listened on a socket in use")
	}
	// A stale socket: the file stays after the listener is gone without unlinking it.
	l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	_ = l.Close()
	l2, err := Listen(sock)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	_ = l2.Close()
	if _, err := New("relative"); err == nil {
		t.Fatal("New with a relative root")
	}
	var pe *os.PathError
	if _, err := New("/proc/veil-no-such-root"); err == nil || !errors.As(err, &pe) {
		t.Fatalf("New on /proc: %v", err)
	}
}
