package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/initdata"
)

// fakeImage writes an image directory whose manifest describes its (fake) kernel and initrd.
func fakeImage(t *testing.T, src *manifest.Source) (string, *manifest.Manifest) {
	t.Helper()
	dir := t.TempDir()
	kernel, initrd := []byte("kernel bytes"), []byte("initrd bytes")
	m := &manifest.Manifest{FormatVersion: 2, Cmdline: "console=ttyS0 quiet", Source: src,
		Kernel: manifest.DescribeBytes(manifest.KernelFile, kernel), Initrd: manifest.DescribeBytes(manifest.InitrdFile, initrd),
		SimAuthority: &manifest.SimAuthority{Path: "/etc/veil/sim-authority.pem"}}
	for name, data := range map[string][]byte{manifest.KernelFile: kernel, manifest.InitrdFile: initrd, manifest.ManifestFile: m.Encode()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, m
}

// TestReferenceValues: the output is reference values veil-kbs reads, holding the launch
// measurement the shim's sim PSP computes for the image (its command line, the handler's
// kernel_params, veil.tee=sim); --bindings writes the initdata digests as repository bindings.
func TestReferenceValues(t *testing.T) {
	dir, m := fakeImage(t, nil)
	doc, err := initdata.Marshal("sha384", map[string]string{"policy.rego": "package agent_policy\n"})
	if err != nil {
		t.Fatal(err)
	}
	docFile, bindings := filepath.Join(t.TempDir(), "initdata.toml"), filepath.Join(t.TempDir(), "bindings.json")
	if err := os.WriteFile(docFile, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = referenceValuesTo([]string{"--kernel-params", "agent.debug=1", "--initdata", docFile, "--repository", "tenant",
		"--bindings", bindings, dir}, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := appraisal.ParseReferenceValues(stdout.Bytes(), "json")
	if err != nil {
		t.Fatalf("veil-kbs would not read %s: %v", stdout.String(), err)
	}
	want, err := psp.LaunchMeasurement(m.Kernel.SHA384, m.Initrd.SHA384, "console=ttyS0 quiet agent.debug=1 veil.tee=sim")
	if err != nil {
		t.Fatal(err)
	}
	if rv.SNP == nil || !rv.SNP.AllowSimulated || len(rv.SNP.Measurements) != 1 || rv.SNP.Measurements[0] != hex.EncodeToString(want[:]) {
		t.Errorf("reference values %s, want the measurement %x", stdout.String(), want)
	}
	d, err := initdata.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	var b map[string][]string
	if raw, err := os.ReadFile(bindings); err != nil || json.Unmarshal(raw, &b) != nil ||
		len(b["tenant"]) != 1 || b["tenant"][0] != hex.EncodeToString(d.Digest()) {
		t.Errorf("bindings %v (%v), want tenant bound to %x", b, err, d.Digest())
	}

	// A tampered image is refused; other TEEs are not done and say so.
	if err := os.WriteFile(filepath.Join(dir, manifest.InitrdFile), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := referenceValuesTo([]string{dir}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("tampered initrd: %v", err)
	}
	if err := referenceValuesTo([]string{"--tee", "snp", dir}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "only the sim") {
		t.Errorf("--tee snp: %v", err)
	}
}

// TestVerifyRefuses: an image that cannot be rebuilt is refused before any work.
func TestVerifyRefuses(t *testing.T) {
	noSource, _ := fakeImage(t, nil)
	modified, _ := fakeImage(t, &manifest.Source{Commit: strings.Repeat("a", 40), Modified: true, GoVersion: "go1.26.8"})
	clean, _ := fakeImage(t, &manifest.Source{Commit: strings.Repeat("a", 40), GoVersion: "go1.26.8"})
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{noSource}, "names no source commit"},
		{[]string{modified}, "modified tree"},
		{[]string{clean}, "--sim-authority"},
		{[]string{"--src", t.TempDir(), "--sim-authority", "/dev/null", clean}, "is commit " + strings.Repeat("a", 40) + " in"},
	} {
		if err := verify(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("verify %q = %v, want %q", tt.args, err, tt.want)
		}
	}
}
