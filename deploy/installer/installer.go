// Package installer is veil-deploy, the program the Veil installer DaemonSet runs on every
// node with the host's root mounted at /host: it checks what the node can run (KVM, SEV-SNP,
// TDX, QEMU, containerd), installs the shim, the guest image and one configuration per
// runtime handler under /opt/veil from the digest-checked payload in its image, declares the
// handlers to containerd through a drop-in, restarts containerd, labels its node, and undoes
// all of it on uninstall. docs/kubernetes.md is the user's side.
package installer

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
	"github.com/veil-runtime/veil/deploy/installer/payload"
)

// Labeler sets and removes the node's labels (nodelabel.Client; tests fake it).
type Labeler interface {
	Set(ctx context.Context, labels map[string]string) error
	Remove(ctx context.Context, keys []string) error
}

// Options configure an Installer; the zero value of each field is its default.
type Options struct {
	HostRoot         string // where the host's / is mounted (default /host)
	Payload          string // the payload directory (default /opt/veil-payload)
	NodeName         string // this node (labels); "" skips labels
	ContainerdConfig string // host path ("": the running containerd's --config, else /etc/containerd/config.toml)
	ContainerdSocket string // host path; "" takes the config's grpc address
	Restart          string // see host.ParseRestart (default auto)
	EnableSim        bool   // install veil-sim (never in production)
	Force            bool   // uninstall even with Veil pods running
	Log              io.Writer
	// Snapshotter runs veil-snapshotter as a systemd unit of the host and makes it the
	// guest-pull handlers' containerd snapshotter (containerd 2.x; snapshotter.go).
	Snapshotter bool
	// RestartWait bounds the wait for containerd's socket after a restart (default 60 s).
	RestartWait time.Duration
	// Tests replace these.
	Host      *host.Host
	Labeler   Labeler
	Restarter host.Restarter
	Units     UnitManager
}

// Installer installs Veil on one node.
type Installer struct {
	o Options
	h host.Host
}

// New checks the options and returns an Installer.
func New(o Options) (*Installer, error) {
	if o.HostRoot == "" {
		o.HostRoot = "/host"
	}
	if o.Payload == "" {
		o.Payload = "/opt/veil-payload"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.RestartWait == 0 {
		o.RestartWait = 60 * time.Second
	}
	h := host.New(o.HostRoot)
	if o.Host != nil {
		h = *o.Host
	}
	if fi, err := os.Stat(h.Root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("host root %s: not a directory (mount the host's / there, or pass --host-root)", h.Root)
	}
	if o.Restarter == nil {
		r, err := host.ParseRestart(o.Restart, h)
		if err != nil {
			return nil, err
		}
		o.Restarter = r
	}
	if o.Units == nil {
		o.Units = host.Units{Host: h}
	}
	return &Installer{o: o, h: h}, nil
}

func (in *Installer) logf(format string, args ...any) {
	fmt.Fprintf(in.o.Log, "veil-deploy: "+format+"\n", args...)
}

// Plan is what the node can run and what an install does about it.
type Plan struct {
	Report   *hostcheck.Report
	Choices  []Choice
	Handlers []Handler
	Labels   map[string]string
}

func (in *Installer) plan(ctx context.Context, m *payload.Manifest) *Plan {
	r := hostcheck.Probe(ctx, in.h)
	in.configPath(r)
	p := &Plan{Report: r, Choices: Choose(r, m, in.o.EnableSim)}
	p.Handlers = Chosen(p.Choices)
	p.Labels = NodeLabels(r, p.Handlers)
	return p
}

// configPath settles which containerd config file is meant: the option, else the one the
// running containerd was started with, else the default.
func (in *Installer) configPath(r *hostcheck.Report) {
	if in.o.ContainerdConfig != "" {
		return
	}
	in.o.ContainerdConfig = containerdcfg.DefaultConfig
	if r.ContainerdConfig != "" {
		in.o.ContainerdConfig = r.ContainerdConfig
	}
}

// Check writes the host capability report to w, one line per check, and returns the plan.
func (in *Installer) Check(ctx context.Context, w io.Writer) (*Plan, error) {
	m, merr := payload.Read(in.o.Payload)
	if merr != nil {
		m = nil
	}
	p := in.plan(ctx, m)
	lines := append([]hostcheck.Line(nil), p.Report.Lines...)
	line := func(name string, ok bool, format string, args ...any) {
		state := map[bool]string{true: "yes", false: "no"}[ok]
		lines = append(lines, hostcheck.Line{Name: name, State: state, Detail: fmt.Sprintf(format, args...)})
	}
	cc, err := containerdcfg.Read(in.h, in.o.ContainerdConfig, p.Report.ContainerdVersion.Major)
	if err != nil {
		line("config", false, "%v", err)
	} else {
		line("config", true, "%s", cc.Describe())
		line("drop-in", true, "%s", in.dropInStatus(cc, p.Handlers))
	}
	line("restart", true, "containerd is restarted by: %s", in.o.Restarter)
	if merr != nil {
		line("payload", false, "%v (handlers judged without it)", merr)
	} else {
		line("payload", true, "%s: %d files listed in %s", in.o.Payload, len(m.Files), payload.ManifestName)
	}
	for _, c := range p.Choices {
		detail := fmt.Sprintf("tee %s, node label %s=true", c.TEE, c.Label)
		if !c.OK {
			detail = c.Why
		}
		line(c.Name, c.OK, "%s", detail)
	}
	if st, err := LoadState(in.h); err != nil {
		line("installed", false, "%v", err)
	} else if st == nil {
		line("installed", false, "nothing installed by veil-deploy under %s", InstallDir)
	} else {
		pending := ""
		if st.RestartPending {
			pending = "; a restart of containerd is still owed (the next install or uninstall retries it)"
		}
		line("installed", true, "%d files under %s; handlers %s%s", len(st.Files), InstallDir, strings.Join(st.Handlers, ", "), pending)
	}
	switch pids, err := in.h.VeilShims(); {
	case err != nil:
		line("shims", false, "%v", err)
	case len(pids) == 0:
		line("shims", true, "no Veil shim running")
	default:
		line("shims", false, "%d Veil shim(s) running (pids %v): each one a Veil pod; uninstall refuses while they run", len(pids), pids)
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return p, nil
}

// dropInStatus compares the drop-in on the host with the one an install would write.
func (in *Installer) dropInStatus(cc *containerdcfg.Config, hs []Handler) string {
	cur, err := os.ReadFile(in.h.Path(cc.DropIn))
	if err != nil {
		return cc.DropIn + ": not installed"
	}
	if len(hs) == 0 {
		return cc.DropIn + ": present, but no handler can run here"
	}
	want, err := cc.Render(containerdSpec(hs))
	switch {
	case err != nil:
		return fmt.Sprintf("%s: present; cannot render it: %v", cc.DropIn, err)
	case string(want) == string(cur):
		return cc.DropIn + ": up to date"
	}
	return cc.DropIn + ": differs from what an install would write (stale copy of config.toml's CRI section, " +
		"or other handlers): run veil-deploy install again"
}

// Install installs what this node can run and declares it to containerd; it changes
// nothing when a later step would fail on what it can check first (the payload's digests,
// containerd's configuration). Running it again changes only what differs.
func (in *Installer) Install(ctx context.Context) (*Plan, error) {
	m, err := payload.Read(in.o.Payload)
	if err != nil {
		return nil, err
	}
	p := in.plan(ctx, m)
	for _, l := range p.Report.Lines {
		in.logf("check %s", l)
	}
	for _, c := range p.Choices {
		if !c.OK {
			in.logf("handler %s not installed: %s", c.Name, c.Why)
		}
	}
	if len(p.Handlers) == 0 {
		in.logf("no Veil handler can run on this node: nothing installed")
		return p, nil
	}
	cc, err := containerdcfg.Read(in.h, in.o.ContainerdConfig, p.Report.ContainerdVersion.Major)
	if err != nil {
		return nil, err
	}
	spec := containerdSpec(p.Handlers)
	if in.o.Snapshotter {
		if err := in.checkSnapshotter(m, p.Report); err != nil {
			return nil, err
		}
		withSnapshotter(&spec, p.Handlers)
	}
	if _, err := cc.Render(spec); err != nil {
		return nil, err
	}
	prev, err := LoadState(in.h)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		prev = &State{}
	}
	res, err := payload.Install(in.o.Payload, m, in.h.Path(InstallDir), prev.Files)
	if err != nil {
		return nil, err
	}
	in.logf("files under %s: %d written, %d unchanged, %d removed", InstallDir, len(res.Written), len(res.Unchanged), len(res.Removed))
	st := &State{Files: m.Paths(), Containerd: prev.Containerd, Snapshotter: prev.Snapshotter}
	if in.o.Snapshotter {
		// Recorded first: an uninstall after a failure below still stops the unit.
		st.Snapshotter = true
		if err := st.save(in.h); err != nil {
			return nil, err
		}
		if err := in.startSnapshotter(ctx); err != nil {
			return nil, err
		}
	}
	for _, h := range p.Handlers {
		st.Handlers = append(st.Handlers, h.Name)
	}
	if err := st.save(in.h); err != nil {
		return nil, err
	}
	cst, changed, err := cc.Apply(spec, prev.Containerd)
	for _, n := range cc.Notes {
		in.logf("note: %s", n)
	}
	if cst.DropIn != "" {
		st.Containerd = &cst
	}
	// A restart that an earlier run could not finish is owed still.
	st.RestartPending = prev.RestartPending || changed
	if serr := st.save(in.h); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	switch {
	case changed:
		in.logf("containerd: %s declares %s (config version %d)", cc.DropIn, strings.Join(st.Handlers, ", "), cc.Version)
	case st.RestartPending:
		in.logf("containerd: an earlier restart did not finish: restarting it now")
	default:
		in.logf("containerd already declares %s: no restart", strings.Join(st.Handlers, ", "))
		return p, nil
	}
	if err := in.restart(ctx, cc.Socket()); err != nil {
		return nil, err
	}
	st.RestartPending = false
	if st.Snapshotter && !in.o.Snapshotter {
		// An earlier install ran veil-snapshotter; containerd no longer names it.
		if err := in.removeSnapshotter(ctx); err != nil {
			return nil, err
		}
		st.Snapshotter = false
	}
	return p, st.save(in.h)
}

// restart restarts containerd and waits for its socket.
func (in *Installer) restart(ctx context.Context, socket string) error {
	if n, ok := in.o.Restarter.(host.None); ok {
		in.logf("containerd must be restarted to load the change: %s", n.Why)
		return nil
	}
	if in.o.ContainerdSocket != "" {
		socket = in.o.ContainerdSocket
	}
	_, serr := os.Stat(in.h.Path(socket))
	wait := serr == nil
	in.logf("restarting containerd: %s", in.o.Restarter)
	if err := in.o.Restarter.Restart(ctx); err != nil {
		return err
	}
	if _, ok := in.o.Restarter.(host.Signal); ok {
		time.Sleep(time.Second) // a signalled containerd takes a moment to go away
	}
	if !wait {
		in.logf("containerd's socket %s was not there before the restart: not waiting for it", socket)
		return nil
	}
	if err := in.h.WaitSocket(ctx, socket, in.o.RestartWait); err != nil {
		return fmt.Errorf("after restarting containerd: %w", err)
	}
	in.logf("containerd answers on %s", socket)
	return nil
}
