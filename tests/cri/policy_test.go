//go:build e2e

package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
)

// policyPodYAML is the pod the policy is made for, as a user would write it.
const policyPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: pinned
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s
    command: ["sh", "-c", "echo policy-ok; exec sleep 3600"]
    env:
    - name: GREETING
      value: hello
    readinessProbe:
      exec:
        command: ["cat", "/etc/hostname"]
`

// genpolicyPod makes the policy of policyPodYAML with veil-genpolicy's library against the
// test's registry, as a user would before deploying the pod.
func genpolicyPod(t *testing.T) *genpolicy.Workload {
	t.Helper()
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	res, err := genpolicy.Generate(context.Background(), []byte(fmt.Sprintf(policyPodYAML, env.busybox)), genpolicy.Options{
		Resolver: &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings: settings,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &res.Workloads[0]
}

// policyContainerConfig writes the container config the kubelet would send for the pod's
// container "app" (the command, the variable, the termination log mount), with changes.
func policyContainerConfig(t testing.TB, name string, attempt int, image string, envs []map[string]string, command []string) string {
	t.Helper()
	termLog := filepath.Join(t.TempDir(), name+"-termination-log")
	if err := os.WriteFile(termLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"metadata": map[string]any{"name": name, "attempt": attempt},
		"image":    map[string]any{"image": image},
		"command":  command,
		"envs":     envs,
		"log_path": name + ".log",
		"mounts":   []map[string]any{{"container_path": "/dev/termination-log", "host_path": termLog}},
		"linux": map[string]any{"security_context": map[string]any{
			// The kubelet's defaults: its own process namespace (1 = CONTAINER) and the
			// masked and read-only paths of the default proc mount.
			"namespace_options": map[string]any{"pid": 1},
			"masked_paths":      genpolicy.DefaultSettings().MaskedPaths,
			"readonly_paths":    genpolicy.DefaultSettings().ReadonlyPaths,
		}},
	}
	return writeJSON(t, name+"-ctr.json", cfg)
}

// TestGenpolicyPod runs a pod under a policy veil-genpolicy made from its YAML, bound through
// the initdata annotation: the declared container runs and its probe's exec is allowed; an
// exec the pod did not declare, a changed variable, a container the pod did not declare and
// an image other than the pinned one are refused, each with the policy's reason, and the pod
// keeps running.
func TestGenpolicyPod(t *testing.T) {
	w := genpolicyPod(t)
	podCfg := podConfig(t, "pinned", map[string]string{initdata.Annotation: w.Annotation})
	podID := crictl(t, "runp", "--runtime", handler, podCfg)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	appCmd := []string{"sh", "-c", "echo policy-ok; exec sleep 3600"}
	greeting := []map[string]string{{"key": "GREETING", "value": "hello"}}

	cid := crictl(t, "create", podID, policyContainerConfig(t, "app", 0, env.busybox, greeting, appCmd), podCfg)
	crictl(t, "start", cid)
	waitLog(t, cid, "policy-ok")
	if out := crictl(t, "exec", "--sync", cid, "cat", "/etc/hostname"); out == "" {
		t.Fatal("the probe's exec printed nothing")
	}

	// refused runs crictl and wants it to fail with each of wants in its error (crictl
	// quotes the agent's message, so the parts are matched without quotes).
	refused := func(what string, wants []string, args ...string) {
		t.Helper()
		out, errOut, err := env.crictl(time.Minute, args...)
		if err == nil {
			t.Fatalf("%s: allowed (stdout %q)", what, out)
		}
		for _, want := range wants {
			if !strings.Contains(errOut, want) {
				t.Fatalf("%s: want %q in the error, got %q", what, want, errOut)
			}
		}
		t.Logf("%s: refused", what)
	}
	refused("exec of an undeclared command", []string{"PermissionDenied",
		"ExecProcessRequest denied by policy: exec of [", "id", "] is not allowed in container app"},
		"exec", "--sync", cid, "sh", "-c", "id")
	// containerd's CRI creates the task, and so the guest's container, at start.
	refusedStart := func(what, cfg string, wants ...string) {
		t.Helper()
		id := crictl(t, "create", podID, cfg, podCfg)
		refused(what, wants, "start", id)
	}
	refusedStart("a changed variable",
		policyContainerConfig(t, "app", 1, env.busybox, []map[string]string{{"key": "GREETING", "value": "evil"}}, appCmd),
		"CreateContainerRequest denied by policy: environment variable GREETING is not allowed with this value")
	refusedStart("an undeclared container", policyContainerConfig(t, "intruder", 0, env.busybox, greeting, appCmd),
		"CreateContainerRequest denied by policy: no container named", "intruder", "in the policy")
	refusedStart("another image", policyContainerConfig(t, "app", 2, env.pause, greeting, appCmd),
		"CreateContainerRequest denied by policy: image digest", "is not the policy's")

	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_RUNNING" {
		t.Fatalf("after the refusals: state %q", st)
	}
	if out := crictl(t, "exec", "--sync", cid, "cat", "/etc/hostname"); out == "" {
		t.Fatal("after the refusals, the probe's exec printed nothing")
	}
}
