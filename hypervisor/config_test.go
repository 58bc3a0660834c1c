package hypervisor

import (
	"bytes"
	"strings"
	"testing"
)

func TestWithDefaults(t *testing.T) {
	c := Config{TEE: TEEConfig{Kind: TEESNP}}.WithDefaults()
	if c.MemoryMiB != DefaultMemoryMiB || c.VCPUs != DefaultVCPUs || c.Machine != "q35" ||
		c.Accel != AccelAuto || c.TEE.SNPPolicy != DefaultSNPPolicy || c.Transport != "" {
		t.Errorf("defaults %+v", c)
	}
	if c := (Config{}).WithDefaults(); c.TEE.Kind != TEENone || c.TEE.SNPPolicy != 0 {
		t.Errorf("plain defaults %+v", c.TEE)
	}
}

func TestPaddedHostData(t *testing.T) {
	tests := []struct {
		tee     TEEConfig
		wantLen int
	}{
		{TEEConfig{Kind: TEESNP, HostData: []byte{1, 2}}, 32},
		{TEEConfig{Kind: TEETDX, HostData: []byte{1, 2}}, 48},
		{TEEConfig{Kind: TEESim, HostData: []byte{1, 2}}, 2},
		{TEEConfig{Kind: TEESNP}, 0},
	}
	for _, tt := range tests {
		got := tt.tee.PaddedHostData()
		if len(got) != tt.wantLen || (tt.wantLen > 0 && !bytes.HasPrefix(got, []byte{1, 2})) {
			t.Errorf("%s: padded to %x", tt.tee.Kind, got)
		}
	}
}

func TestValidateReportsAll(t *testing.T) {
	err := Config{ID: "bad id!", StateDir: "rel", MemoryMiB: 1, Transport: "carrier-pigeon"}.Validate()
	if err == nil {
		t.Fatal("Validate passed")
	}
	for _, want := range []string{`id "bad id!"`, `state dir "rel"`, "memory 1 MiB", `transport "carrier-pigeon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
