//go:build e2e

package cri

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// pushImages builds a busybox image from Debian's busybox-static and a pause image on the
// same layer, and pushes both to the test's registry.
func (e *criEnv) pushImages() error {
	layer, err := busyboximage.Static("var")
	if err != nil {
		return err
	}
	e.busybox = e.registryHost + "/veil-test/busybox:latest"
	e.pause = e.registryHost + "/veil-test/pause:3.10"
	if err := push(e.busybox, layer, busyboximage.Shell()); err != nil {
		return err
	}
	return push(e.pause, layer, busyboximage.Pause())
}

// push writes a one-layer linux/amd64 image with cfg to ref.
func push(ref string, layer v1.Layer, cfg v1.Config) error {
	img, err := busyboximage.Image(cfg, layer)
	if err != nil {
		return err
	}
	return busyboximage.Push(ref, img)
}
