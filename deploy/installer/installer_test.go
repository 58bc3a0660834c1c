package installer_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/veil-runtime/veil/deploy/installer"
	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
)

const (
	ctd2        = "containerd github.com/containerd/containerd/v2 v2.4.2 0123abc"
	ctd16       = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
	mainConfig  = "/etc/containerd/config.toml"
	dropIn      = "/etc/containerd/conf.d/veil.toml"
	plainNode   = "plain"
	configV3    = "version = 3\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = 'io.containerd.runc.v2'\n"
	configV2    = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n"
	configGlob  = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"
	configOther = "version = 3\nimports = [\"/etc/containerd/config.d/*.toml\"] # site\n"
)

// fakeRestarter counts restarts.
type fakeRestarter struct{ n int }

func (f *fakeRestarter) Restart(context.Context) error { f.n++; return nil }
func (f *fakeRestarter) String() string                { return "fake" }

// fakeLabeler records the node's labels.
type fakeLabeler struct {
	mu     sync.Mutex
	labels map[string]string
	calls  int
}

func (f *fakeLabeler) Set(_ context.Context, l map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.labels == nil {
		f.labels = map[string]string{}
	}
	for k, v := range l {
		f.labels[k] = v
	}
	return nil
}

func (f *fakeLabeler) Remove(_ context.Context, keys []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, k := range keys {
		delete(f.labels, k)
	}
	return nil
}

// env is a fake node with a payload.
type env struct {
	h       host.Host
	payload string
	restart *fakeRestarter
	labels  *fakeLabeler
	log     *bytes.Buffer
}

// buildPayload makes a payload with the shipped configuration.toml (and SNP firmware when
// snp is set).
func buildPayload(t *testing.T, snp bool) string {
	t.Helper()
	in := t.TempDir()
	for name, content := range map[string]string{"shim": "#!shim\n", "vmlinuz": "kernel", "initrd.img": "initrd",
		"manifest.json": "{}", "ovmf.fd": "firmware"} {
		os.WriteFile(filepath.Join(in, name), []byte(content), 0o755)
	}
	o := installer.PayloadOptions{Out: filepath.Join(t.TempDir(), "payload"), Shim: filepath.Join(in, "shim"),
		Image: in, Config: "../../shim/config/configuration.toml"}
	if snp {
		o.FirmwareSNP = filepath.Join(in, "ovmf.fd")
	}
	if _, err := installer.BuildPayload(o); err != nil {
		t.Fatal(err)
	}
	return o.Out
}

func newEnv(t *testing.T, o fakehost.Options, config string) *env {
	t.Helper()
	h, _ := fakehost.New(t, o)
	if config != "" {
		fakehost.WriteFile(t, h, mainConfig, config)
	}
	sock := h.Path("/run/containerd/containerd.sock")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &env{h: h, payload: buildPayload(t, o.SEV), restart: &fakeRestarter{}, labels: &fakeLabeler{}, log: &bytes.Buffer{}}
}

func (e *env) installer(t *testing.T, mod func(*installer.Options)) *installer.Installer {
	t.Helper()
	o := installer.Options{HostRoot: e.h.Root, Host: &e.h, Payload: e.payload, NodeName: plainNode,
		Restarter: e.restart, Labeler: e.labels, Log: e.log}
	if mod != nil {
		mod(&o)
	}
	in, err := installer.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// files lists every file under the host root's /opt.
func (e *env) files(t *testing.T) []string {
	var out []string
	filepath.Walk(e.h.Path("/opt"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, strings.TrimPrefix(p, e.h.Root))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

var plainHost = fakehost.Options{KVM: true, QEMU: "7.2.22", Virtiofsd: true, Containerd: ctd2}

func TestInstallTwiceThenUninstall(t *testing.T) {
	for _, tc := range []struct {
		name, config, containerd, dropIn string
		editsMain                        bool
	}{
		{"v3", configV3, ctd2, dropIn, true},
		{"v2 on 1.6", configV2, ctd16, dropIn, true},
		{"no config", "", ctd2, dropIn, true},
		{"glob covers the drop-in", configGlob, ctd2, dropIn, false},
		{"a drop-in directory of its own", configOther, ctd2, "/etc/containerd/config.d/veil.toml", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := plainHost
			o.Containerd = tc.containerd
			e := newEnv(t, o, tc.config)
			in := e.installer(t, nil)
			p, err := in.Install(context.Background())
			if err != nil {
				t.Fatalf("install: %v\n%s", err, e.log)
			}
			if len(p.Handlers) != 1 || p.Handlers[0].Name != "veil" {
				t.Errorf("handlers %v, want veil only (no sim without --enable-sim)", p.Handlers)
			}
			first := e.files(t)
			main := fakehost.ReadFile(t, e.h, mainConfig)
			if _, err := in.Install(context.Background()); err != nil {
				t.Fatalf("second install: %v", err)
			}
			if got := e.files(t); strings.Join(got, " ") != strings.Join(first, " ") {
				t.Errorf("second install changed the files: %v -> %v", first, got)
			}
			if got := fakehost.ReadFile(t, e.h, mainConfig); got != main || strings.Count(got, dropIn) > 1 {
				t.Errorf("second install changed config.toml:\n%s", got)
			}
			if tc.editsMain != (main != tc.config) {
				t.Errorf("config.toml edited: %v, want %v:\n%s", main != tc.config, tc.editsMain, main)
			}
			if e.restart.n != 1 {
				t.Errorf("%d restarts after two installs, want 1", e.restart.n)
			}
			drop := fakehost.ReadFile(t, e.h, tc.dropIn)
			if !strings.Contains(drop, "containerd.runtimes.veil]") || strings.Contains(drop, "veil-sim") {
				t.Errorf("drop-in %s:\n%s", tc.dropIn, drop)
			}
			for _, f := range []string{"/opt/veil/bin/containerd-shim-veil-v2", "/opt/veil/share/veil/image/vmlinuz",
				"/opt/veil/share/defaults/veil/configuration-veil.toml", "/opt/veil/.veil-deploy/state.json"} {
				if fakehost.ReadFile(t, e.h, f) == "" {
					t.Errorf("%s not installed (files: %v)", f, first)
				}
			}
			if err := in.SetLabels(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if err := in.Uninstall(context.Background()); err != nil {
				t.Fatalf("uninstall: %v\n%s", err, e.log)
			}
			if got := fakehost.ReadFile(t, e.h, mainConfig); got != tc.config {
				t.Errorf("config.toml after uninstall:\n%q\nwant, byte for byte:\n%q", got, tc.config)
			}
			if got := e.files(t); len(got) != 0 {
				t.Errorf("left under /opt: %v", got)
			}
			for _, p := range []string{"/opt/veil", tc.dropIn, mainConfig + ".veil-backup"} {
				if _, err := os.Stat(e.h.Path(p)); !os.IsNotExist(err) {
					t.Errorf("%s left after uninstall", p)
				}
			}
			if e.restart.n != 2 || len(e.labels.labels) != 0 {
				t.Errorf("after uninstall: %d restarts, labels %v", e.restart.n, e.labels.labels)
			}
		})
	}
}

// A payload file whose digest does not match: refused, and nothing installed or changed.
func TestInstallRefusesBadDigest(t *testing.T) {
	e := newEnv(t, plainHost, configV3)
	if err := os.WriteFile(filepath.Join(e.payload, "share/veil/image/initrd.img"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.installer(t, nil).Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "share/veil/image/initrd.img") {
		t.Fatalf("err = %v, want a refusal naming the file", err)
	}
	if got := e.files(t); len(got) != 0 {
		t.Errorf("installed %v", got)
	}
	if fakehost.ReadFile(t, e.h, mainConfig) != configV3 || fakehost.ReadFile(t, e.h, dropIn) != "" || e.restart.n != 0 {
		t.Error("containerd's configuration was touched")
	}
}

func TestUninstallRefusedWithRunningShim(t *testing.T) {
	e := newEnv(t, plainHost, configV3)
	if _, err := e.installer(t, nil).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	fakehost.WriteFile(t, e.h, "/proc/4321/cmdline", "/opt/veil/bin/containerd-shim-veil-v2\x00-id\x00pod\x00")
	err := e.installer(t, nil).Uninstall(context.Background())
	if !errors.Is(err, installer.ErrPodsRunning) || !strings.Contains(err.Error(), "4321") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v, want ErrPodsRunning naming the pid and --force", err)
	}
	if fakehost.ReadFile(t, e.h, "/opt/veil/bin/containerd-shim-veil-v2") == "" || fakehost.ReadFile(t, e.h, dropIn) == "" {
		t.Error("a refused uninstall removed files")
	}
	if err := e.installer(t, func(o *installer.Options) { o.Force = true }).Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.files(t); len(got) != 0 || fakehost.ReadFile(t, e.h, mainConfig) != configV3 {
		t.Errorf("--force left %v", got)
	}
}

func TestHandlersAndLabels(t *testing.T) {
	snpHost := fakehost.Options{KVM: true, SEV: true, AMD: "Y", QEMU: "10.0.2", Objects: []string{"sev-snp-guest"},
		Virtiofsd: true, Containerd: ctd2}
	for _, tc := range []struct {
		name     string
		o        fakehost.Options
		sim      bool
		handlers string
		labels   map[string]string
	}{
		{"plain", plainHost, false, "veil", map[string]string{"veil.dev/runtime": "true", "veil.dev/kvm": "true",
			"veil.dev/tee.none": "true", "veil.dev/tee.sim": "false", "veil.dev/tee.snp": "false", "veil.dev/tee.tdx": "false"}},
		{"sim enabled", plainHost, true, "veil veil-sim", map[string]string{"veil.dev/tee.sim": "true"}},
		{"snp", snpHost, false, "veil veil-snp", map[string]string{"veil.dev/tee.snp": "true", "veil.dev/tee.tdx": "false"}},
		{"no qemu", fakehost.Options{Containerd: ctd2}, true, "", map[string]string{"veil.dev/runtime": "false",
			"veil.dev/kvm": "false", "veil.dev/tee.none": "false", "veil.dev/tee.sim": "false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.o, configV3)
			in := e.installer(t, func(o *installer.Options) { o.EnableSim = tc.sim })
			p, err := in.Install(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range p.Handlers {
				names = append(names, h.Name)
			}
			if strings.Join(names, " ") != tc.handlers {
				t.Errorf("handlers %v, want %s", names, tc.handlers)
			}
			for k, v := range tc.labels {
				if p.Labels[k] != v {
					t.Errorf("label %s=%q, want %q", k, p.Labels[k], v)
				}
			}
			drop := fakehost.ReadFile(t, e.h, dropIn)
			for _, n := range names {
				if !strings.Contains(drop, "runtimes."+n+"]") {
					t.Errorf("drop-in lacks %s:\n%s", n, drop)
				}
			}
			if tc.handlers == "" && (drop != "" || len(e.files(t)) != 0) {
				t.Error("a node that can run nothing got files")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t, plainHost, configV3)
	var out bytes.Buffer
	if _, err := e.installer(t, nil).Check(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kvm         yes", "snp         no", "tdx         no", "qemu        yes",
		"containerd  yes", "config      yes  /etc/containerd/config.toml version 3; would add", "drop-in     yes  /etc/containerd/conf.d/veil.toml: not installed",
		"veil        yes  tee none", "veil-sim    no   not enabled", "installed   no", "shims       yes  no Veil shim running"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if e.restart.n != 0 || e.files(t) != nil || fakehost.ReadFile(t, e.h, mainConfig) != configV3 {
		t.Error("check changed the node")
	}
}

// Without --containerd-config, the running containerd's --config is the file edited.
func TestConfigOfRunningContainerd(t *testing.T) {
	o := plainHost
	o.ContainerdArgv = []string{"containerd", "--config", "/srv/k8s/containerd.toml"}
	e := newEnv(t, o, "")
	fakehost.WriteFile(t, e.h, "/srv/k8s/containerd.toml", configV3)
	in := e.installer(t, nil)
	if _, err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fakehost.ReadFile(t, e.h, "/srv/k8s/containerd.toml"); !strings.Contains(got, "/srv/k8s/conf.d/veil.toml") {
		t.Errorf("the running containerd's config was not edited:\n%s", got)
	}
	if fakehost.ReadFile(t, e.h, mainConfig) != "" || fakehost.ReadFile(t, e.h, dropIn) != "" {
		t.Error("/etc/containerd was written")
	}
	if err := e.installer(t, nil).Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fakehost.ReadFile(t, e.h, "/srv/k8s/containerd.toml") != configV3 {
		t.Error("not restored")
	}
}

type forbiddenLabeler struct{ fakeLabeler }

func (*forbiddenLabeler) Remove(context.Context, []string) error {
	return errors.New("node labels: PATCH node plain: 403 Forbidden")
}

// Labels that cannot be removed (the RBAC went first) do not keep the files installed.
func TestUninstallWithoutRBAC(t *testing.T) {
	e := newEnv(t, plainHost, configV3)
	if _, err := e.installer(t, nil).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := e.installer(t, func(o *installer.Options) { o.Labeler = &forbiddenLabeler{} }).Uninstall(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("err = %v, want the label failure reported", err)
	}
	if got := e.files(t); len(got) != 0 || fakehost.ReadFile(t, e.h, mainConfig) != configV3 {
		t.Errorf("left %v", got)
	}
}
