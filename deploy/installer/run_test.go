package installer_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veil-runtime/veil/deploy/installer"
)

func TestRun(t *testing.T) {
	for _, uninstall := range []bool{false, true} {
		e := newEnv(t, plainHost, configV3)
		in := e.installer(t, nil)
		ready := filepath.Join(t.TempDir(), "run", "ready")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx, installer.RunOptions{ReadyFile: ready, UninstallOnExit: uninstall}) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ready file; log:\n%s", e.log)
			}
			time.Sleep(20 * time.Millisecond)
		}
		e.labels.mu.Lock()
		labelled := e.labels.labels["veil.dev/tee.none"] == "true"
		e.labels.mu.Unlock()
		if !labelled || readHostFile(t, e, "/opt/veil/bin/containerd-shim-veil-v2") == "" {
			t.Errorf("ready before the node was installed and labelled")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ready); !os.IsNotExist(err) {
			t.Error("the ready file outlived run")
		}
		installed := len(e.files(t)) > 0
		if installed == uninstall {
			t.Errorf("uninstall on exit %v: files left %v", uninstall, e.files(t))
		}
	}
}

func readHostFile(t *testing.T, e *env, p string) string {
	b, _ := os.ReadFile(e.h.Path(p))
	return string(b)
}
