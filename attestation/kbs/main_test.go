package kbs_test

import (
	"io"
	"os"
	"testing"

	"github.com/containerd/log"
)

func TestMain(m *testing.M) {
	if os.Getenv("VEIL_TEST_LOGS") == "" {
		log.L.Logger.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}
