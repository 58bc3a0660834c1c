package psp_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim/psp"
)

func TestChannel(t *testing.T) {
	l := psp.Launch{HostData: bytes.Repeat([]byte{7}, 48), Measurement: [48]byte{1, 2}, Policy: 0x30000}
	img, err := l.Encode()
	if err != nil || len(img) != psp.DiskSize || string(img[:8]) != psp.Magic {
		t.Fatalf("Encode: %d bytes, %v", len(img), err)
	}
	got, err := psp.Read(bytes.NewReader(img))
	if err != nil || !bytes.Equal(got.HostData, l.HostData) || got.Measurement != l.Measurement || got.Policy != l.Policy {
		t.Fatalf("Read = %+v, %v; want %+v", got, err, l)
	}
	short := psp.Launch{HostData: []byte{1, 2, 3}}
	img2, _ := short.Encode()
	if got, err := psp.Decode(img2); err != nil || !bytes.Equal(got.HostData, []byte{1, 2, 3}) {
		t.Fatalf("short host data: %+v, %v", got, err)
	}
	if _, err := (psp.Launch{HostData: make([]byte, 49)}).Encode(); err == nil {
		t.Error("49 bytes of host data encoded")
	}
	bad := func(name string, change func(b []byte), want string) {
		b := bytes.Clone(img2)
		change(b)
		if _, err := psp.Decode(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	bad("magic", func(b []byte) { b[0] = 'X' }, "not \"VEILPSP1\"")
	bad("version", func(b []byte) { b[8] = 2 }, "version 2")
	bad("length", func(b []byte) { b[12] = 49 }, "length 49")
	bad("padding", func(b []byte) { b[24+5] = 1 }, "not zero")
	if _, err := psp.Decode(img[:100]); err == nil {
		t.Error("a short disk decoded")
	}
	if _, err := psp.Read(bytes.NewReader(img[:100])); err == nil || !strings.Contains(err.Error(), "read") {
		t.Errorf("Read of a short disk = %v", err)
	}
}

func TestLaunchMeasurement(t *testing.T) {
	k, i := strings.Repeat("ab", 48), strings.Repeat("cd", 48)
	m, err := psp.LaunchMeasurement(k, i, "console=hvc0 veil.tee=sim")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := psp.LaunchMeasurement(k, i, "console=hvc0 veil.tee=sim"); again != m {
		t.Fatal("not deterministic")
	}
	for name, args := range map[string][3]string{
		"kernel":  {strings.Repeat("ac", 48), i, "console=hvc0 veil.tee=sim"},
		"initrd":  {k, strings.Repeat("ce", 48), "console=hvc0 veil.tee=sim"},
		"cmdline": {k, i, "console=hvc0"},
	} {
		if other, _ := psp.LaunchMeasurement(args[0], args[1], args[2]); other == m {
			t.Errorf("changing the %s does not change the measurement", name)
		}
	}
	if _, err := psp.LaunchMeasurement("zz", i, ""); err == nil {
		t.Error("a bad kernel digest was taken")
	}
}
