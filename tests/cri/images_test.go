//go:build e2e

package cri

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// pauseScript is the pod sandbox's process: it sleeps until SIGTERM or SIGINT, as
// registry.k8s.io/pause does, with busybox's shell.
const pauseScript = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"

// pushImages builds a busybox image from Debian's busybox-static and a pause image on the
// same layer, and pushes both to the test's registry.
func (e *criEnv) pushImages() error {
	layer, err := busyboxLayer()
	if err != nil {
		return err
	}
	e.busybox = e.registryHost + "/veil-test/busybox:latest"
	e.pause = e.registryHost + "/veil-test/pause:3.10"
	if err := push(e.busybox, layer, v1.Config{Cmd: []string{"sh"}}); err != nil {
		return err
	}
	return push(e.pause, layer, v1.Config{Entrypoint: []string{"/bin/sh", "-c", pauseScript}})
}

// push writes a one-layer linux/amd64 image with cfg to ref.
func push(ref string, layer v1.Layer, cfg v1.Config) error {
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// busyboxLayer is a layer with /bin/busybox, a link per applet, /etc/passwd and /etc/group.
func busyboxLayer() (v1.Layer, error) {
	const bb = "/bin/busybox"
	data, err := os.ReadFile(bb)
	if err != nil {
		return nil, fmt.Errorf("%s missing (apt-get install busybox-static): %w", bb, err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/", "root/", "run/", "var/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{
		"bin/busybox": data,
		"etc/passwd":  []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		"etc/group":   []byte("root:x:0:\nnogroup:x:65534:\n"),
	}
	for n, content := range files {
		mode := int64(0o644)
		if n == "bin/busybox" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
}
