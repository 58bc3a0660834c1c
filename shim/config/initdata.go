package config

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/initdata"
)

// InitData returns the initdata document for a pod: the pod annotation
// io.katacontainers.config.hypervisor.cc_init_data (base64 of gzip, as the Kata ecosystem's
// tools write it) when present, else the file the configuration names (runtime.initdata), else
// nil (no initdata: a plain VM gets the allow-all policy).
//
// The annotation needs no allow-list entry: the document's digest is bound to the launch
// (SNP HOST_DATA, TDX MRCONFIGID) and checked by the guest and the relying party, so a host
// that changes it is caught rather than trusted.
func (c *Config) InitData(annotations map[string]string) ([]byte, error) {
	if v, ok := annotations[initdata.Annotation]; ok {
		raw, err := initdata.DecodeAnnotation(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w: %w", initdata.Annotation, err, errdefs.ErrInvalidArgument)
		}
		return raw, nil
	}
	if c.Runtime.InitData == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(c.Runtime.InitData)
	if err != nil {
		return nil, fmt.Errorf("runtime.initdata of %s: %w", c.Path, err)
	}
	return raw, nil
}
