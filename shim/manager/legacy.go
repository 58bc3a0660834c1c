package manager

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"google.golang.org/protobuf/proto"
)

// maxStartInput bounds what `start` reads from stdin, as containerd's shim library does.
const maxStartInput = 10 << 20

// LegacyStart handles the `start` action of containerd before 2.3 (1.6, 1.7, 2.0–2.2), which
// containerd's shim library (v2.4) refuses: those callers pass the runtime options, not
// bootstrap parameters, on stdin and read the shim's address from stdout as plain text
// (1.6 reads stdout and stderr together, so nothing else may be printed). The plain address
// makes every one of them talk task API v2 (containerd.task.v2.Task), which the task service
// serves beside v3.
//
// It returns false when the process is not a legacy `start`; RunShim then handles it, with
// stdin restored. For a legacy `start` it prints the address, or the error, and exits.
func LegacyStart(ctx context.Context, m Manager) bool {
	fs := flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	debug := fs.Bool("debug", false, "")
	ns := fs.String("namespace", "", "")
	id := fs.String("id", "", "")
	address := fs.String("address", "", "")
	for _, name := range []string{"socket", "debug-socket", "bundle", "publish-binary"} {
		fs.String(name, "", "")
	}
	fs.Bool("v", false, "")
	fs.Bool("version", false, "")
	fs.Bool("info", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.Arg(0) != "start" {
		return false // RunShim reports bad flags itself
	}
	input, err := io.ReadAll(io.LimitReader(os.Stdin, maxStartInput))
	if err != nil {
		fail(fmt.Errorf("read stdin: %w", err))
	}
	var params bootapi.BootstrapParams
	if proto.Unmarshal(input, &params) == nil && len(input) > 0 &&
		params.GetInstanceID() == *id && params.GetNamespace() == *ns {
		if err := restoreStdin(input); err != nil {
			fail(err)
		}
		return false // containerd 2.3+: the bootstrap protocol
	}
	params = bootapi.BootstrapParams{
		InstanceID:             *id,
		Namespace:              *ns,
		ContainerdGrpcAddress:  *address,
		ContainerdTtrpcAddress: os.Getenv("TTRPC_ADDRESS"),
		LogLevel:               bootapi.LogLevel_LOG_LEVEL_INFO,
	}
	if *debug {
		params.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	log.L.Logger.SetOutput(io.Discard) // stdout and stderr are the address
	if *ns == "" {
		fail(fmt.Errorf("shim namespace cannot be empty"))
	}
	result, err := m.Start(namespaces.WithNamespace(ctx, *ns), &params)
	if err != nil {
		fail(err)
	}
	// containerd 1.x reconnects after a restart through the bundle's address file.
	if err := os.WriteFile(filepath.Join(".", "address"), []byte(result.GetAddress()), 0o600); err != nil {
		fail(fmt.Errorf("write address file: %w", err))
	}
	if _, err := fmt.Fprint(os.Stdout, result.GetAddress()); err != nil {
		fail(fmt.Errorf("write address: %w", err))
	}
	os.Exit(0)
	return true
}

// restoreStdin makes os.Stdin yield input again, for RunShim to read.
func restoreStdin(input []byte) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("restore stdin: %w", err)
	}
	go func() {
		_, _ = w.Write(input)
		w.Close()
	}()
	os.Stdin = r
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "%s: %s", RuntimeName, err)
	os.Exit(1)
}
