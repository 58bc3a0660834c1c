package k8scluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// What a node installer (deploy/installer, the veil-installer DaemonSet) needs of the test
// node: containerd's configuration file and socket, a way to restart containerd, a root mount
// that a hostPath volume with HostToContainer propagation accepts, host paths that teardown
// removes, registries over plain HTTP, and encrypted images that containerd can unpack.

// ContainerdConfigPath is the host path of the cluster's containerd configuration file.
func (c *Cluster) ContainerdConfigPath() string { return c.containerd.ConfigPath() }

// ContainerdSocket is the host path of the cluster's containerd socket.
func (c *Cluster) ContainerdSocket() string { return c.containerd.Socket }

// ContainerdPIDFile is the host file that holds the pid of the running containerd (rewritten
// by each restart once the new one serves).
func (c *Cluster) ContainerdPIDFile() string { return c.Path("containerd.pid") }

// ContainerdRestarts is how many times containerd was restarted (ContainerdRestartCommand).
func (c *Cluster) ContainerdRestarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

// ContainerdRestartCommand has the harness supervise containerd from now on (when it exits,
// it is started again with the same configuration and arguments) and returns a shell command
// that restarts it: the command sends containerd SIGTERM and returns once the harness has
// started the new one and it serves (ContainerdPIDFile changed), or fails after 2 minutes.
// It is what a node installer is given as its restart command (veil-deploy's
// `--restart command:...`, which runs it with the host's /bin/sh, chrooted into the host
// root, in the host's pid namespace).
func (c *Cluster) ContainerdRestartCommand() (string, error) {
	c.mu.Lock()
	c.supervise = true
	c.mu.Unlock()
	script := fmt.Sprintf(`#!/bin/sh
# Restarts the test cluster's containerd: tests/internal/k8scluster supervises it and starts
# it again when it exits, then writes the new pid to the pid file.
pidfile=%q
old=$(cat "$pidfile") || exit 1
kill -TERM "$old" || exit 1
n=0
while [ "$(cat "$pidfile" 2>/dev/null)" = "$old" ]; do
	n=$((n + 1))
	if [ "$n" -gt 1200 ]; then
		echo "containerd (pid $old) was not started again within 120 s" >&2
		exit 1
	fi
	sleep 0.1
done
echo "containerd restarted: pid $old, now $(cat "$pidfile")"
`, c.ContainerdPIDFile())
	path := c.Path("restart-containerd.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", err
	}
	return "/bin/sh " + path, nil
}

// superviseContainerd waits for the containerd process p to exit and, while the cluster
// supervises containerd and is not stopping, starts it again and records its pid once it
// serves.
func (c *Cluster) superviseContainerd(p *proc) {
	<-p.done
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	c.mu.Lock()
	restart := c.supervise && !c.stopping
	c.mu.Unlock()
	if !restart {
		return
	}
	if err := c.runContainerd(true); err != nil {
		fmt.Fprintf(os.Stderr, "k8scluster: containerd exited (%v) and did not start again: %v\n", p.cmd.ProcessState, err)
		return
	}
	if !containerdenv.WaitFor(time.Minute, 100*time.Millisecond, func() bool {
		return exec.Command(c.bins["ctr"], "--address", c.containerd.Socket, "version").Run() == nil
	}) {
		fmt.Fprintf(os.Stderr, "k8scluster: containerd restarted but does not serve (log %s)\n", c.LogPath("containerd"))
		return
	}
	c.mu.Lock()
	c.restarts++
	var pid int
	for _, q := range c.procs {
		if q.name == "containerd" {
			pid = q.cmd.Process.Pid
		}
	}
	c.mu.Unlock()
	c.mark("containerd restarted")
	if err := writeAtomic(c.ContainerdPIDFile(), []byte(fmt.Sprintf("%d\n", pid))); err != nil {
		fmt.Fprintf(os.Stderr, "k8scluster: %v\n", err)
	}
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// EncryptedLayerPath is the file whose content containerd unpacks for an encrypted layer
// (ocicrypt's media type ...tar+gzip+encrypted). The host never has the key (the guest
// decrypts, with a key from the KBS): containerd's CRI still unpacks every image before it
// creates a container, so the cluster's containerd replaces its ocicrypt decoder with a stand-in
// that discards the ciphertext and writes this file. A test that pulls an encrypted image
// writes the layer's plain tar here first (its digest must be the layer's diff_id), as tests/cri
// does; the guest pulls and decrypts the real layer.
func (c *Cluster) EncryptedLayerPath() string { return c.Path("encrypted-layer.tar") }

// encryptedLayerProcessor is the containerd configuration of that stand-in decoder.
func encryptedLayerProcessor(plain string) string {
	return fmt.Sprintf(`[stream_processors]
  [stream_processors.'io.containerd.ocicrypt.decoder.v1.tar.gzip']
    accepts = ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted']
    returns = 'application/vnd.oci.image.layer.v1.tar'
    path = '/bin/sh'
    args = ['-c', 'cat >/dev/null && exec cat "$0"', %q]
`, plain)
}

// PlainHTTPRegistry lets containerd pull from the registry at hostport (such as
// 10.89.0.1:5000, on the node's bridge, where pods reach it too) over plain HTTP: a
// hosts.toml in its registry configuration directory, read at each pull.
func (c *Cluster) PlainHTTPRegistry(hostport string) error {
	dir := filepath.Join(c.containerd.Path("certs.d"), hostport)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	server := "http://" + hostport
	hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, server)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}

// TrackHostPath records that the tests are about to make the host path p (an installer's
// /opt/veil, say): when it does not exist yet, teardown removes it, also after a crash.
func (c *Cluster) TrackHostPath(p string) error {
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range c.host.Created {
		if q == p {
			return nil
		}
	}
	c.host.Created = append(c.host.Created, p)
	return c.host.save()
}

// ShareRootMount makes the host's / a shared mount, as systemd does on a real node, unless it
// is already shared or a slave; teardown makes it private again. containerd's CRI refuses a
// hostPath volume of / with HostToContainer propagation (the node installer's) on a private
// root: `path "/" is mounted on "/" but it is not a shared or slave mount`. Mounts made
// under / while it is shared are shared too (the kubelet's own root directory already is).
func (c *Cluster) ShareRootMount() error {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter("/"))
	if err != nil || len(infos) == 0 {
		return fmt.Errorf("the mount of /: %v", err)
	}
	opt := infos[len(infos)-1].Optional
	if strings.Contains(opt, "shared:") || strings.Contains(opt, "master:") {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.host.RootShared = true
	if err := c.host.save(); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / a shared mount: %w", err)
	}
	return nil
}

// unshareRoot makes / private again when the cluster made it shared.
func (h *hostState) unshareRoot() {
	if h.RootShared {
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "k8scluster: make / private again: %v\n", err)
		}
	}
}

// KubectlCommand is kubectl with the admin's kubeconfig and args, not started: for what runs
// beside the test (kubectl port-forward) rather than to completion (Kubectl).
func (c *Cluster) KubectlCommand(args ...string) *exec.Cmd {
	return exec.Command(c.bins["kubectl"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}
