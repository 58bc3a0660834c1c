package sim_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
)

func TestPSPChannel(t *testing.T) {
	l := sim.PSPLaunch{HostData: bytes.Repeat([]byte{7}, 48), Measurement: [48]byte{1, 2}, Policy: sim.DefaultSNPPolicy}
	img, err := l.Encode()
	if err != nil || len(img) != sim.PSPDiskSize || string(img[:8]) != sim.PSPMagic {
		t.Fatalf("Encode: %d bytes, %v", len(img), err)
	}
	got, err := sim.ReadPSP(bytes.NewReader(img))
	if err != nil || !bytes.Equal(got.HostData, l.HostData) || got.Measurement != l.Measurement || got.Policy != l.Policy {
		t.Fatalf("ReadPSP = %+v, %v; want %+v", got, err, l)
	}
	if s := got.SNP(); !bytes.Equal(s.HostData[:], l.HostData[:32]) || s.Measurement != l.Measurement {
		t.Fatalf("SNP launch %+v", s)
	}
	short := sim.PSPLaunch{HostData: []byte{1, 2, 3}}
	img2, _ := short.Encode()
	if got, err := sim.DecodePSP(img2); err != nil || !bytes.Equal(got.HostData, []byte{1, 2, 3}) || got.SNP().HostData[3] != 0 {
		t.Fatalf("short host data: %+v, %v", got, err)
	}
	if _, err := (sim.PSPLaunch{HostData: make([]byte, 49)}).Encode(); err == nil {
		t.Error("49 bytes of host data encoded")
	}
	bad := func(name string, change func(b []byte), want string) {
		b := bytes.Clone(img2)
		change(b)
		if _, err := sim.DecodePSP(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	bad("magic", func(b []byte) { b[0] = 'X' }, "not \"VEILPSP1\"")
	bad("version", func(b []byte) { b[8] = 2 }, "version 2")
	bad("length", func(b []byte) { b[12] = 49 }, "length 49")
	bad("padding", func(b []byte) { b[24+5] = 1 }, "not zero")
	if _, err := sim.DecodePSP(img[:100]); err == nil {
		t.Error("a short disk decoded")
	}
}

func TestLaunchMeasurement(t *testing.T) {
	k, i := strings.Repeat("ab", 48), strings.Repeat("cd", 48)
	m, err := sim.LaunchMeasurement(k, i, "console=hvc0 veil.tee=sim")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := sim.LaunchMeasurement(k, i, "console=hvc0 veil.tee=sim"); again != m {
		t.Fatal("not deterministic")
	}
	for name, args := range map[string][3]string{
		"kernel":  {strings.Repeat("ac", 48), i, "console=hvc0 veil.tee=sim"},
		"initrd":  {k, strings.Repeat("ce", 48), "console=hvc0 veil.tee=sim"},
		"cmdline": {k, i, "console=hvc0"},
	} {
		if other, _ := sim.LaunchMeasurement(args[0], args[1], args[2]); other == m {
			t.Errorf("changing the %s does not change the measurement", name)
		}
	}
	if _, err := sim.LaunchMeasurement("zz", i, ""); err == nil {
		t.Error("a bad kernel digest was taken")
	}
}
