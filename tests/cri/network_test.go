//go:build e2e

package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
)

// networkPrereqs fails the test unless the guest image loads virtio_net.
func networkPrereqs(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(imageDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Modules []string }
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
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
