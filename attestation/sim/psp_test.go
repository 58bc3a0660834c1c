package sim_test

import (
	"bytes"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
)

func TestSNPLaunchFromPSP(t *testing.T) {
	l := psp.Launch{HostData: bytes.Repeat([]byte{7}, 48), Measurement: [48]byte{1, 2}, Policy: sim.DefaultSNPPolicy}
	if s := sim.SNPLaunchFromPSP(l); !bytes.Equal(s.HostData[:], l.HostData[:32]) || s.Measurement != l.Measurement || s.Policy != l.Policy {
		t.Fatalf("SNP launch %+v", s)
	}
	short := psp.Launch{HostData: []byte{1, 2, 3}}
	if s := sim.SNPLaunchFromPSP(short); !bytes.Equal(s.HostData[:4], []byte{1, 2, 3, 0}) || s.HostData != [32]byte{1, 2, 3} {
		t.Fatalf("short host data: %+v", s)
	}
}
