//go:build e2e

package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
)

// networkPrereqs fails the test unless the guest image loads virtio_net, or boots the veil
// kernel, which has it built in.
func networkPrereqs(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(imageDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Modules    []string
		KernelKind string
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.KernelKind == "veil" {
		return
	}
	for _, mod := range m.Modules {
		if strings.HasSuffix(mod, "/virtio_net.ko") {
			return
		}
	}
	t.Fatal("the guest image does not load virtio_net (guestimage.DefaultModules has it: rebuild with make image)")
}

// TestPodNetwork: a pod on CNI's bridge reaches an HTTP server on the host through the
// bridge's gateway address, and nothing of its network is left after rmp.
func TestPodNetwork(t *testing.T) {
	networkPrereqs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, err := hostServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	podID, podCfg := runPod(t, "net")
	vm := pod.VMID(criNamespace, podID)
	cid := startContainer(t, podID, podCfg, "client", "exec sleep 3600")
	ip := crictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.network.ip}}", podID)
	addr := crictl(t, "exec", "--sync", cid, "ip", "-4", "addr", "show", "eth0")
	if ip == "" || !strings.Contains(addr, ip+"/") {
		t.Fatalf("pod IP %q not on the guest's eth0:\n%s", ip, addr)
	}
	url := fmt.Sprintf("http://%s:%d/", gatewayIP, port)
	var out string
	if !waitFor(20*time.Second, func() bool {
		out, _, _ = env.crictl(time.Minute, "exec", "--sync", cid, "timeout", "10", "wget", "-qO-", url)
		return strings.Contains(out, "hello from the host")
	}) {
		routes, _, _ := env.crictl(time.Minute, "exec", "--sync", cid, "ip", "route")
		t.Fatalf("wget %s from the pod: %q\nguest routes:\n%s", url, out, routes)
	}
	t.Logf("pod %s (%s) reached %s", podID[:12], ip, url)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}

// TestPortForward: `crictl port-forward` (what kubectl port-forward does through the kubelet)
// reaches a server that listens only on the guest's loopback: containerd dials the pod
// namespace's loopback, and the shim carries the connection into the VM through the agent.
func TestPortForward(t *testing.T) {
	networkPrereqs(t)
	podID, podCfg := runPod(t, "pf")
	vm := pod.VMID(criNamespace, podID)
	cid := startContainer(t, podID, podCfg, "web",
		"mkdir -p /www && echo hello-from-the-guest > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www")
	// crictl port-forward gives up at the first failed connection: wait for the server.
	if !waitFor(time.Minute, func() bool {
		out, _, _ := env.crictl(time.Minute, "exec", "--sync", cid, "wget", "-qO-", "http://127.0.0.1:8080/")
		return strings.Contains(out, "hello-from-the-guest")
	}) {
		t.Fatal("the guest's server does not answer on its loopback")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fwd := env.crictlCmd(ctx, time.Minute, "port-forward", podID, fmt.Sprintf("%d:8080", local))
	var fwdOut strings.Builder
	fwd.Stdout, fwd.Stderr = &fwdOut, &fwdOut
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = fwd.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/", local)
	var body string
	if !waitFor(time.Minute, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, "hello-from-the-guest")
	}) {
		t.Fatalf("GET %s through crictl port-forward: %q\ncrictl port-forward: %s", url, body, fwdOut.String())
	}
	t.Logf("crictl port-forward %d:8080 reached the guest's loopback: %q", local, strings.TrimSpace(body))
	cancel()
	_ = fwd.Wait()
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}
