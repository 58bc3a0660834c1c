package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/veil-runtime/veil/hypervisor"
)

// virtiofsdFlavour tells the two virtiofsd implementations apart: their options differ.
type virtiofsdFlavour struct {
	rust     bool // the Rust virtiofsd (--shared-dir); else QEMU's C one (-o source=)
	readonly bool // it has --readonly
}

var flavours sync.Map // binary path -> virtiofsdFlavour

// detectVirtiofsd reads the binary's --help once per path.
func detectVirtiofsd(ctx context.Context, path string) (virtiofsdFlavour, error) {
	if f, ok := flavours.Load(path); ok {
		return f.(virtiofsdFlavour), nil
	}
	out, _ := exec.CommandContext(ctx, path, "--help").CombinedOutput() // C virtiofsd exits 1 here
	help := string(out)
	var f virtiofsdFlavour
	switch {
	case strings.Contains(help, "--shared-dir"):
		f = virtiofsdFlavour{rust: true, readonly: strings.Contains(help, "--readonly")}
	case strings.Contains(help, "source=PATH"):
	default:
		return f, fmt.Errorf("qemu: %s does not look like virtiofsd (its --help names neither --shared-dir nor -o source=): %q",
			path, lastLines(help, 2))
	}
	flavours.Store(path, f)
	return f, nil
}

// virtiofsdArgs is the command (program first) that serves share on socket.
//
// A read-only share is enforced on the host, not left to the guest's mount options: the Rust
// virtiofsd has --readonly; QEMU's C one has no such option, so it runs in a private mount
// namespace where the shared directory is bind-mounted read-only over itself (nothing is
// mounted in the host's namespace, so nothing can be left behind).
func virtiofsdArgs(bin string, f virtiofsdFlavour, socket string, share hypervisor.SharedDir) []string {
	var args []string
	if f.rust {
		args = []string{bin, "--socket-path=" + socket, "--shared-dir=" + share.HostPath, "--cache=auto"}
		if share.ReadOnly && f.readonly {
			return append(args, "--readonly")
		}
	} else {
		args = []string{bin, "--socket-path=" + socket, "-o", "source=" + share.HostPath, "-o", "cache=auto"}
	}
	if !share.ReadOnly {
		return args
	}
	const script = `mount --bind -- "$1" "$1" && mount -o remount,bind,ro -- "$1" && shift && exec "$@"`
	wrapper := []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", share.HostPath}
	return append(wrapper, args...)
}

// startVirtiofsd starts the server for share i and waits until its socket exists.
func (v *VM) startVirtiofsd(ctx context.Context, bin string, i int, f virtiofsdFlavour) (*process, error) {
	share := v.cfg.SharedDirs[i]
	if st, err := os.Stat(share.HostPath); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("qemu: shared dir %q: %s is not a directory: %w", share.Tag, share.HostPath, err)
	}
	socket := v.dir.File(fsSocket(i))
	argv := virtiofsdArgs(bin, f, socket, share)
	name := fmt.Sprintf("virtiofsd-%d", i)
	p, err := startProcess(name, exec.Command(argv[0], argv[1:]...), v.dir)
	if err != nil {
		return nil, err
	}
	if err := waitForFile(ctx, socket, p.done); err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("qemu: virtiofsd for %q: %w: %s", share.Tag, err, p.logTail())
	}
	return p, nil
}

// waitForFile polls until path exists, the process ends (done closes) or ctx ends.
func waitForFile(ctx context.Context, path string, done <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited before creating %s", path)
		case <-ctx.Done():
			return fmt.Errorf("no %s yet: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}
