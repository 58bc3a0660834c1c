package installer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/deploy/installer"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// fakeUnits records the systemd calls.
type fakeUnits struct{ calls []string }

func (f *fakeUnits) EnableStart(_ context.Context, unit string) error {
	f.calls = append(f.calls, "start "+unit)
	return nil
}

func (f *fakeUnits) StopDisable(_ context.Context, unit string) error {
	f.calls = append(f.calls, "stop "+unit)
	return nil
}

// withSnapshotterPayload rebuilds e's payload with a veil-snapshotter binary.
func withSnapshotterPayload(t *testing.T, e *env) {
	t.Helper()
	in := t.TempDir()
	for name, content := range map[string]string{"shim": "#!shim\n", "snap": "#!snap\n", "vmlinuz": "kernel",
		"initrd.img": "initrd", "manifest.json": "{}"} {
		os.WriteFile(filepath.Join(in, name), []byte(content), 0o755)
	}
	o := installer.PayloadOptions{Out: filepath.Join(t.TempDir(), "payload"), Shim: filepath.Join(in, "shim"),
		Snapshotter: filepath.Join(in, "snap"), Image: in, Config: "../../shim/config/configuration.toml"}
	if _, err := installer.BuildPayload(o); err != nil {
		t.Fatal(err)
	}
	e.payload = o.Out
}

// TestInstallSnapshotter: with --snapshotter on containerd 2.x, the binary is installed, the
// host gets veil-snapshotter's unit (ExecStart the installed binary) and systemd starts it,
// and the drop-in makes it veil-sim's snapshotter (not veil's: it shares the rootfs) with the
// proxy plugin; an install without --snapshotter afterwards stops it and removes it and its
// root; uninstall does the same. A payload without the binary, containerd 1.6, or a host
// without systemd are refused before anything changes.
func TestInstallSnapshotter(t *testing.T) {
	e := newEnv(t, plainHost, configV3)
	withSnapshotterPayload(t, e)
	units := &fakeUnits{}
	opts := func(o *installer.Options) { o.Snapshotter, o.EnableSim, o.Units = true, true, units }
	if _, err := e.installer(t, opts).Install(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, e.log)
	}
	unit, err := os.ReadFile(e.h.Path(installer.SnapshotterUnitPath))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/opt/veil/bin/veil-snapshotter -root") {
		t.Fatalf("unit: %v\n%s", err, unit)
	}
	if _, err := os.Stat(e.h.Path("/opt/veil/" + installer.SnapshotterRel)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(units.calls, ",") != "start "+installer.SnapshotterUnit {
		t.Fatalf("systemd calls %v", units.calls)
	}
	drop, _ := os.ReadFile(e.h.Path(dropIn))
	d := string(drop)
	if !strings.Contains(d, "[proxy_plugins.veil]") || !strings.Contains(d, snapconfig.DefaultAddress) ||
		strings.Count(d, "snapshotter = 'veil'") != 2 || // veil-sim's, and the transfer service's entry
		!strings.Contains(d, "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-sim]\n  runtime_type") {
		t.Fatalf("drop-in:\n%s", d)
	}
	sim := d[strings.Index(d, "runtimes.veil-sim]"):]
	if !strings.Contains(sim[:strings.Index(sim, "options]")], "snapshotter = 'veil'") {
		t.Fatalf("veil-sim has no snapshotter line:\n%s", d)
	}

	// Again without it: containerd first, then the unit and the root go.
	os.MkdirAll(e.h.Path(snapconfig.DefaultRoot+"/snapshots/1"), 0o755)
	if _, err := e.installer(t, func(o *installer.Options) { o.EnableSim, o.Units = true, units }).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.h.Exists(installer.SnapshotterUnitPath) || e.h.Exists(snapconfig.DefaultRoot) || len(units.calls) != 2 {
		t.Fatalf("after an install without --snapshotter: unit %v root %v calls %v", e.h.Exists(installer.SnapshotterUnitPath),
			e.h.Exists(snapconfig.DefaultRoot), units.calls)
	}
	if drop, _ = os.ReadFile(e.h.Path(dropIn)); strings.Contains(string(drop), "snapshotter") {
		t.Fatalf("drop-in still names the snapshotter:\n%s", drop)
	}

	// With it, then uninstall.
	if _, err := e.installer(t, opts).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.installer(t, opts).Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.h.Exists(installer.SnapshotterUnitPath) || units.calls[len(units.calls)-1] != "stop "+installer.SnapshotterUnit {
		t.Fatalf("after uninstall: unit %v calls %v", e.h.Exists(installer.SnapshotterUnitPath), units.calls)
	}

	// Refusals, nothing installed.
	for _, tc := range []struct {
		name, want string
		node       fakehost.Options
		config     string
		binary     bool
	}{
		{"no binary in the payload", "the payload has no bin/veil-snapshotter", plainHost, configV3, false},
		{"containerd 1.6", "needs containerd 2.x", fakehost.Options{KVM: true, QEMU: "7.2.22", Virtiofsd: true, Containerd: ctd16}, configV2, true},
		{"no systemd", `the host's pid 1 is "runit", not systemd`, fakehost.Options{KVM: true, QEMU: "7.2.22", Virtiofsd: true,
			Containerd: ctd2, Init: "runit"}, configV3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.node, tc.config)
			if tc.binary {
				withSnapshotterPayload(t, e)
			}
			u := &fakeUnits{}
			_, err := e.installer(t, func(o *installer.Options) { o.Snapshotter, o.Units = true, u }).Install(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if len(e.files(t)) != 0 || len(u.calls) != 0 || e.h.Exists(installer.SnapshotterUnitPath) {
				t.Fatalf("installed %v, systemd %v", e.files(t), u.calls)
			}
		})
	}
}
