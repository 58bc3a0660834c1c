package launch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/initdata"
)

// simGuest returns a reader of a PSP disk image holding l, with an authority file.
func simGuest(t *testing.T, l psp.Launch, auth *sim.Authority) *SimReader {
	t.Helper()
	r := &SimReader{AuthorityPath: filepath.Join(t.TempDir(), "sim-authority.pem")}
	if auth != nil {
		pem, err := auth.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.AuthorityPath, pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.Disk = filepath.Join(t.TempDir(), "psp.img")
	if err := os.WriteFile(r.Disk, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSimReader(t *testing.T) {
	ctx := context.Background()
	auth, err := sim.NewAuthority(rand.Reader, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := initdata.Marshal("sha384", map[string]string{initdata.KeyPolicy: "package agent_policy\n"})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := initdata.Parse(raw)
	launch := psp.Launch{HostData: initdata.HostData(doc.Digest(), 48), Measurement: [48]byte{1, 2, 3}}
	r := simGuest(t, launch, auth)
	report, err := r.Report(ctx, [64]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sevabi.ReportToProto(report)
	if err != nil {
		t.Fatalf("the sim report does not parse: %v", err)
	}
	if !bytes.Equal(p.GetHostData(), doc.Digest()[:32]) || p.GetMeasurement()[0] != 1 || p.GetReportData()[0] != 9 {
		t.Fatalf("sim report: host data %x measurement %x", p.GetHostData(), p.GetMeasurement())
	}
	if err := Verify(ctx, api.TEESim, r, doc.Digest()); err != nil {
		t.Fatalf("matching initdata refused: %v", err)
	}
	other, _ := initdata.Marshal("sha384", map[string]string{initdata.KeyPolicy: "package other\n"})
	od, _ := initdata.Parse(other)
	if err := Verify(ctx, api.TEESim, r, od.Digest()); err == nil || !strings.Contains(err.Error(), "does not match the launch's host data") {
		t.Fatalf("other initdata: %v", err)
	}

	noAuth := simGuest(t, launch, nil)
	if _, err := noAuth.HostData(ctx); !errors.Is(err, ErrNoSimAuthority) {
		t.Fatalf("no authority: %v", err)
	}
	noDisk := &SimReader{Paths: fakeSys(t, nil, 0), AuthorityPath: r.AuthorityPath}
	if _, err := noDisk.HostData(ctx); err == nil || !strings.Contains(err.Error(), "no sim PSP disk") {
		t.Fatalf("no PSP disk: %v", err)
	}
}
