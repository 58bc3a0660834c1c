package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/internal/spawn"
)

// resolveAccel turns AccelAuto into kvm or tcg. Confidential guests always need KVM. For a
// plain guest, /dev/kvm existing is not enough (some hosts offer a paravirtual KVM that hangs
// or aborts on a stock kernel), so the configured kernel is probe-booted under KVM once and
// the answer cached under probeDir, keyed by kernel digest, QEMU version and host kernel.
// Without a kernel to probe with, auto means tcg.
func resolveAccel(ctx context.Context, cfg hypervisor.Config, qemu string, v version, o options) (hypervisor.Accel, error) {
	switch {
	case cfg.Accel != hypervisor.AccelAuto:
		return cfg.Accel, nil
	case cfg.TEE.Kind == hypervisor.TEESNP || cfg.TEE.Kind == hypervisor.TEETDX:
		return hypervisor.AccelKVM, nil
	case cfg.Kernel == "":
		return hypervisor.AccelTCG, nil
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return hypervisor.AccelTCG, nil
	}
	key, err := probeKey(cfg.Kernel, v)
	if err != nil {
		return "", err
	}
	cache := filepath.Join(o.probeDir, key)
	if b, err := os.ReadFile(cache); err == nil {
		if a := hypervisor.Accel(strings.TrimSpace(string(b))); a == hypervisor.AccelKVM || a == hypervisor.AccelTCG {
			return a, nil
		}
	}
	accel := hypervisor.AccelTCG
	if err := probeKVM(ctx, qemu, cfg.Kernel, o.probeTimeout); err == nil {
		accel = hypervisor.AccelKVM
	} else {
		log.G(ctx).WithError(err).Info("qemu: KVM cannot boot the guest kernel here; using TCG")
	}
	if ctx.Err() != nil { // an interrupted probe proves nothing: do not cache it
		return "", fmt.Errorf("qemu: KVM probe: %w", ctx.Err())
	}
	if err := writeCache(cache, accel); err != nil {
		log.G(ctx).WithError(err).Warn("qemu: cannot cache the KVM probe's answer")
	}
	return accel, nil
}

// probeKey digests the kernel, the QEMU version and the host kernel release.
func probeKey(kernel string, v version) (string, error) {
	f, err := os.Open(kernel)
	if err != nil {
		return "", fmt.Errorf("qemu: KVM probe: open kernel: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("qemu: KVM probe: read kernel %s: %w", kernel, err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(h, "\x00%s\x00%s", v.Text, unix.ByteSliceToString(uts.Release[:]))
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// probeKVM boots kernel under KVM with no root file system: a working KVM gets it to panic
// ("VFS: Unable to mount root fs"), and panic=-1 with -no-reboot makes QEMU exit with
// status 0 within a second or two. A broken KVM aborts QEMU or hangs until the timeout.
func probeKVM(ctx context.Context, qemu, kernel string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "veil-kvm-probe-")
	if err != nil {
		return fmt.Errorf("qemu: KVM probe: %w", err)
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "kvm", "-cpu", "host",
		"-m", "256M", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-serial", "file:"+console, "-kernel", kernel,
		"-append", "console=ttyS0 panic=-1 init=/veil-kvm-probe-has-no-init")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	if err := spawn.Start(cmd); err != nil {
		return fmt.Errorf("qemu: KVM probe: start %s: %w", qemu, err)
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("qemu: KVM probe: no exit within %s", timeout)
	}
	if err != nil {
		return fmt.Errorf("qemu: KVM probe: %w: %s", err, lastLines(stderr.String(), 3))
	}
	out, _ := os.ReadFile(console)
	if !bytes.Contains(out, []byte("Kernel panic")) {
		return errors.New("qemu: KVM probe: QEMU exited but the kernel never reached its panic")
	}
	return nil
}

func writeCache(path string, accel hypervisor.Accel) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp" + fmt.Sprint(os.Getpid())
	if err := os.WriteFile(tmp, []byte(string(accel)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lastLines is the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
