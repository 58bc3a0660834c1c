package containerdenv

import (
	"fmt"
	"os"
	"testing"
)

// Env is a suite's environment: its containerd and whatever else it started.
type Env interface {
	LogFile() string // containerd's log
	Stop()           // stops everything and removes the temporary root
}

// Main is the TestMain of a suite with a containerd: it reads VEIL_IMAGE and VEIL_BIN (make
// e2e sets them), starts the suite's environment with start (and stops what start returns when
// it fails), runs the tests, prints the last logLines lines of containerd's log when they fail,
// stops the environment and exits with the tests' code. suite prefixes its messages.
func Main(m *testing.M, suite string, logLines int, start func(imageDir, binDir string) (Env, error)) {
	imageDir, binDir := os.Getenv("VEIL_IMAGE"), os.Getenv("VEIL_BIN")
	if imageDir == "" || binDir == "" {
		fmt.Fprintf(os.Stderr, "%s: VEIL_IMAGE and VEIL_BIN are not set: run `make e2e`\n", suite)
		os.Exit(1)
	}
	env, err := start(imageDir, binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, suite+":", err)
		if env != nil {
			env.Stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "containerd log (last lines):\n%s\n", Tail(env.LogFile(), logLines))
	}
	env.Stop()
	os.Exit(code)
}
