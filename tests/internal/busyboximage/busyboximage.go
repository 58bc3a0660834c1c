// Package busyboximage builds the container images of the VM test suites (tests/shim, tests/cri
// and tests/critest) from busybox on the host, without a network: layers written as tar in
// memory, made into linux/amd64 images and pushed to a registry (NewRegistry serves one on
// loopback) or written as a docker-archive tarball for `ctr images import`. Static is the layer
// of Debian's busybox-static (/bin/busybox); the pause image is busybox's shell waiting for a
// signal.
//
// It is test support: only packages under tests/ can import it.
package busyboximage

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Path is the PATH every image's config sets (before the config's own Env).
const Path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PauseScript is the pod sandbox's process: it sleeps until SIGTERM or SIGINT, as
// registry.k8s.io/pause does, with busybox's shell.
const PauseScript = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"

// Pause is the config of a pause image on a busybox layer.
func Pause() v1.Config { return v1.Config{Entrypoint: []string{"/bin/sh", "-c", PauseScript}} }

// Shell is the config of a busybox image that runs sh.
func Shell() v1.Config { return v1.Config{Cmd: []string{"sh"}} }

// StaticBusybox is where Debian's busybox-static installs busybox.
const StaticBusybox = "/bin/busybox"

// StaticDirs are the top-level directories of Static's layer.
var StaticDirs = []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "run"}

// Static is a layer of Debian's busybox-static: /bin/busybox, a symbolic link per applet in
// /bin, /etc/passwd and /etc/group (root and nobody) and the directories StaticDirs and
// extraDirs (/tmp sticky and world-writable).
func Static(extraDirs ...string) (v1.Layer, error) {
	data, err := os.ReadFile(StaticBusybox)
	if err != nil {
		return nil, fmt.Errorf("%s missing (apt-get install busybox-static): %w", StaticBusybox, err)
	}
	out, err := exec.Command(StaticBusybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return Layer(func(tw *tar.Writer) error {
		for _, d := range append(append([]string{}, StaticDirs...), extraDirs...) {
			mode := int64(0o755)
			if d == "tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode}); err != nil {
				return err
			}
		}
		files := []struct {
			name string
			mode int64
			data []byte
		}{
			{"bin/busybox", 0o755, data},
			{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
			{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
		}
		for _, f := range files {
			if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		}
		for _, applet := range strings.Fields(string(out)) {
			if applet == "busybox" {
				continue
			}
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Layer is an uncompressed layer of the tar stream write writes (Layer closes the writer).
func Layer(write func(tw *tar.Writer) error) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := write(tw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// RandomFileLayer is a layer holding one file, name, of size random (incompressible) bytes.
func RandomFileLayer(name string, size int64) (v1.Layer, error) {
	return Layer(func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.CopyN(tw, rand.Reader, size)
		return err
	})
}

// Image is a linux/amd64 image of layers with cfg, its Env after Path.
func Image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	cf.Config.Env = append([]string{Path}, cfg.Env...)
	return mutate.ConfigFile(img, cf)
}

// Push pushes img to ref, over plain HTTP (the suites' registries are on loopback).
func Push(ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// WriteTarball writes img, tagged ref, as a docker-archive tarball (what `ctr images import`
// reads) to path.
func WriteTarball(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

// NewRegistry serves an in-memory registry on loopback (plain HTTP, no log) for Push; host is
// its 127.0.0.1:PORT. Close the server when done.
func NewRegistry() (srv *httptest.Server, host string) {
	srv = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	return srv, strings.TrimPrefix(srv.URL, "http://")
}
