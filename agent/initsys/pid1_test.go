package initsys

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roleEnv tells the test binary, re-executed inside new namespaces, which part it plays.
const roleEnv = "VEIL_INITSYS_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "init":
		testInit()
	case "agent":
		testAgent()
	case "orphan":
		testOrphan()
	}
	os.Exit(m.Run())
}

// TestRunAsPID1 runs Run as PID 1 of new PID, mount and UTS namespaces: it mounts, fails to
// load a module that is not there, sets the hostname, starts the "agent", reaps the orphan
// the agent leaves, and powers off when the agent exits. In a PID namespace, powering off
// kills the namespace's init with SIGINT, which is what the test sees.
func TestRunAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for PID and mount namespaces (run the tests as root)")
	}
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=init")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start init in namespaces: %v", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("init did not power off within 30s; output:\n%s", out.String())
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("init ended with %v, want killed by SIGINT (power off in a PID namespace)", cmd.ProcessState)
	}
	for _, want := range []string{
		"module not loaded",                                    // the missing module is a warning
		"agent started",                                        // the child was started
		"hostname=veil-test pid1=initsys.test",                 // what the agent saw
		"devpts=true run-tmpfs=true",                           // the mounts were there
		"ORPHAN terminated",                                    // the orphan got SIGTERM at power-off
		"veil-init: powering off: agent exited: exit status 3", // the one-line reason
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out.String())
	}
}

// testInit is PID 1 in the namespaces.
func testInit() {
	// Keep every mount change inside the new mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "make / private: %v\n", err)
		os.Exit(1)
	}
	// The list must stay readable after Run mounts a tmpfs on /tmp: keep it open and name it
	// through /proc/self/fd.
	f, err := os.CreateTemp("", "modules.list")
	if err == nil {
		_, err = f.WriteString("/nonexistent/veil-test.ko\n")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "write modules list: %v\n", err)
		os.Exit(1)
	}
	_ = os.Remove(f.Name())
	list := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	cfg := DefaultConfig()
	// Not the host's cgroup2 root: its subtree_control would change for real.
	cfg.Mounts = slices.DeleteFunc(cfg.Mounts, func(m Mount) bool { return m.FSType == "cgroup2" })
	cfg.ModulesList = list
	cfg.Hostname = "veil-test"
	cfg.AgentPath = "/proc/self/exe" // this test binary plays the agent
	cfg.AgentArgs = []string{"initsys.test", "-test.run=^$"}
	cfg.AgentEnv = append(cfg.AgentEnv, roleEnv+"=agent")
	cfg.StopTimeout = 3 * time.Second
	Run(context.Background(), cfg)
}

// testAgent reports what it sees, leaves an orphan behind and exits with status 3.
func testAgent() {
	host, _ := os.Hostname()
	comm, _ := os.ReadFile("/proc/1/comm")
	_, ptsErr := os.Stat("/dev/pts/ptmx")
	var st unix.Statfs_t
	_ = unix.Statfs("/run", &st)
	fmt.Fprintf(os.Stderr, "AGENT pid=%d hostname=%s pid1=%s devpts=%v run-tmpfs=%v\n",
		os.Getpid(), host, strings.TrimSpace(string(comm)), ptsErr == nil, st.Type == unix.TMPFS_MAGIC)
	orphan := exec.Command("/proc/self/exe", "-test.run=^$")
	orphan.Env = []string{roleEnv + "=orphan"}
	orphan.Stderr = os.Stderr
	r, w, _ := os.Pipe()
	orphan.Stdout = w
	if err := orphan.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start orphan: %v\n", err)
		os.Exit(1)
	}
	_ = w.Close()
	_, _ = r.Read(make([]byte, 1)) // the orphan is ready for SIGTERM
	os.Exit(3)
}

// testOrphan waits for SIGTERM, says so, and exits.
func testOrphan() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM)
	fmt.Println("ready")
	select {
	case <-sigs:
		fmt.Fprintln(os.Stderr, "ORPHAN terminated")
		os.Exit(0)
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "ORPHAN never terminated")
		os.Exit(1)
	}
}
