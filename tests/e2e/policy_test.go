//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// e2ePolicy runs the pod's containers, allows one exec command ("echo allowed"), withholds
// the output of the container "quiet", refuses SetPolicy and CopyFile paths with "..", and
// has no rule (so denies) for everything else.
const e2ePolicy = `package agent_policy

default CheckRequest := true
default CreateSandboxRequest := true
default DestroySandboxRequest := true
default CreateContainerRequest := true
default StartContainerRequest := true
default WaitProcessRequest := true
default RemoveContainerRequest := true
default SignalProcessRequest := true

ReadStreamRequest if input.request.container_id != "quiet"

ExecProcessRequest := {"allow": false, "reason": sprintf("exec of %v is not allowed", [input.request.process.args])} if {
	input.request.process.args != ["echo", "allowed"]
} else := true

SetPolicyRequest := {"allow": false, "reason": "this policy does not allow replacing it"}

CopyFileRequest := {"allow": false, "reason": sprintf("path %q has a .. component", [input.request.path])} if {
	".." in split(input.request.path, "/")
} else := true
`

func initData(t *testing.T, rego string) []byte {
	t.Helper()
	raw, err := initdata.Marshal("sha256", map[string]string{initdata.KeyPolicy: rego})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// bootInitData boots a VM like boot, with raw delivered as its initdata. The caller closes it.
func bootInitData(t *testing.T, id string, raw []byte) (*sandbox.Sandbox, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return sandbox.Boot(c, sandbox.Options{
		ID: id, ImageDir: imageDir, InitData: raw,
		SharedDirs: []hypervisor.SharedDir{{Tag: "rootfs", HostPath: rootfs}},
	})
}

func vmID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e6)
}

func wantDenied(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: error %v, want PermissionDenied saying %q", what, err, msg)
	}
}

// A policy from initdata is enforced on every request, and the agent keeps serving after
// each refusal.
func TestPolicyFromInitData(t *testing.T) {
	id := vmID("e2e-pol")
	raw := initData(t, e2ePolicy)
	sb, err := bootInitData(t, id, raw)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console of %s:\n%s", id, sandbox.ConsoleTail(sb.VM.ConsoleLog(), 60))
		}
		if err := sb.Close(context.Background()); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
		if _, err := os.Stat(filepath.Join(sandbox.DefaultStateRoot, id+".initdata.img")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("initdata disk image left after Close: %v", err)
		}
	})
	c := ctx(t, 3*time.Minute)
	// The guest read exactly the document the host digested.
	doc, _ := initdata.Parse(raw)
	if !bytes.Equal(sb.InitDataDigest, doc.Digest()) {
		t.Fatalf("InitDataDigest %x, want %x", sb.InitDataDigest, doc.Digest())
	}
	console, _ := os.ReadFile(sb.VM.ConsoleLog())
	if !strings.Contains(string(console), "sha256 digest "+hex.EncodeToString(doc.Digest())) {
		t.Errorf("the guest console does not show the initdata digest %x", doc.Digest())
	}
	if _, err := sb.Agent.CreateSandbox(c, &api.CreateSandboxRequest{SandboxId: id, Hostname: "e2e"}); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Run("AllowedContainer", func(t *testing.T) { testAllowedContainer(t, sb) })
	t.Run("Refusals", func(t *testing.T) { testPolicyRefusals(t, sb) })
	t.Run("WithheldOutput", func(t *testing.T) { testWithheldOutput(t, sb) })
}

func testAllowedContainer(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "hello", []string{"echo", "hello"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "hello"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (stdio.Process{Agent: sb.Agent, ContainerID: "hello"}).CopyStdout(c, &out); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "hello", ""); w.GetStatus() != 0 || out.String() != "hello\n" {
		t.Fatalf("container: status %d output %q, want 0 and \"hello\\n\"", w.GetStatus(), out.String())
	}
}

func testPolicyRefusals(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "svc", []string{"sleep", "1000"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "svc"}); err != nil {
		t.Fatal(err)
	}
	exec := func(execID string, args ...string) error {
		_, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "svc", ExecId: execID,
			Process: &api.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}})
		return err
	}
	if err := exec("ok", "echo", "allowed"); err != nil {
		t.Fatalf("allowed exec: %v", err)
	}
	if w := waitProcess(t, sb, "svc", "ok"); w.GetStatus() != 0 {
		t.Fatalf("allowed exec: status %d", w.GetStatus())
	}
	checks := []struct {
		name, msg string
		call      func() error
	}{
		{"exec of an unlisted command", `ExecProcessRequest denied by policy: exec of ["sh", "-c", "id"] is not allowed`,
			func() error { return exec("bad", "sh", "-c", "id") }},
		{"SetPolicy", "SetPolicyRequest denied by policy: this policy does not allow replacing it", func() error {
			_, err := sb.Agent.SetPolicy(c, &api.SetPolicyRequest{Policy: "package agent_policy\n\ndefault ExecProcessRequest := true\n"})
			return err
		}},
		{"CopyFile with ..", `CopyFileRequest denied by policy: path "/run/veil/shared/../../etc/passwd" has a .. component`, func() error {
			_, err := sb.Agent.CopyFile(c, &api.CopyFileRequest{Path: "/run/veil/shared/../../etc/passwd", Data: []byte("x")})
			return err
		}},
		{"a request without a rule", "ListInterfacesRequest denied by policy: the policy has no rule ListInterfacesRequest", func() error {
			_, err := sb.Agent.ListInterfaces(c, &api.ListInterfacesRequest{})
			return err
		}},
	}
	for _, tc := range checks {
		wantDenied(t, tc.name, tc.call(), tc.msg)
		if r, err := sb.Agent.Check(c, &api.CheckRequest{}); err != nil || r.GetStatus() != api.CheckResponse_SERVING {
			t.Fatalf("after %s the agent no longer serves: %v %v", tc.name, r, err)
		}
	}
	// The refused SetPolicy changed nothing: exec is still judged by the initdata policy.
	wantDenied(t, "exec after the refused SetPolicy", exec("bad2", "id"), "ExecProcessRequest denied by policy")
}

// A container whose output the policy withholds still runs to its end: the agent drains its
// pipe (more than a pipe buffer here) and returns empty reads.
func testWithheldOutput(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "quiet", []string{"sh", "-c", "yes secret | head -c 300000; echo done"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "quiet"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (stdio.Process{Agent: sb.Agent, ContainerID: "quiet"}).CopyStdout(c, &out); err != nil {
		t.Fatalf("read withheld stdout: %v", err)
	}
	if w := waitProcess(t, sb, "quiet", ""); w.GetStatus() != 0 || out.Len() != 0 {
		t.Fatalf("withheld container: status %d, %d bytes of output reached the host; want 0 and none", w.GetStatus(), out.Len())
	}
}

// An initdata whose policy does not compile: the agent serves nothing, and the guest console
// says why, in init's power-off line.
func TestPolicySyntaxErrorStopsBoot(t *testing.T) {
	id := vmID("e2e-polbad")
	bad := "package agent_policy\n\ndefault CheckRequest := true\nExecProcessRequest if {\n"
	sb, err := bootInitData(t, id, initData(t, bad))
	if err == nil {
		_ = sb.Close(context.Background())
		t.Fatal("a VM whose initdata policy has a syntax error booted and served")
	}
	msg := err.Error()
	if !strings.Contains(msg, "veil-init: powering off: agent exited: exit status 1: initdata: policy.rego:") ||
		!strings.Contains(msg, "rego_parse_error") {
		t.Fatalf("boot error does not carry the reason in init's power-off line:\n%v", err)
	}
	t.Logf("boot refused as expected; power-off line: %s", powerOffLine(msg))
	if _, err := os.Stat(filepath.Join(sandbox.DefaultStateRoot, id+".initdata.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("initdata disk image left after a failed boot: %v", err)
	}
}

func powerOffLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "powering off") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
