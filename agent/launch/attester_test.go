package launch

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/initdata"
)

// TestBootInitDataText: the boot keeps the document's text, whose digest is the host data,
// for the KBS.
func TestBootInitDataText(t *testing.T) {
	l, err := BootDisk(context.Background(), DefaultConfig(api.TEENone), writeDisk(t, goodDoc))
	if err != nil {
		t.Fatal(err)
	}
	if l.InitData != goodDoc {
		t.Fatalf("Launched.InitData = %q, want the document", l.InitData)
	}
}

func TestConfigAttester(t *testing.T) {
	ctx := context.Background()
	for _, tee := range []string{api.TEENone, ""} {
		a, err := Config{TEE: tee}.Attester(ctx)
		if a != nil || err != nil {
			t.Errorf("tee %q: attester %v, err %v; want none", tee, a, err)
		}
	}
	if _, err := (Config{TEE: "cca"}).Attester(ctx); err == nil || !strings.Contains(err.Error(), `tee "cca"`) {
		t.Errorf("unknown tee: %v", err)
	}

	auth, err := sim.NewAuthority(rand.Reader, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := mustDigest(t, goodDoc)
	launch := psp.Launch{HostData: initdata.HostData(doc, 48), Measurement: [48]byte{7, 8, 9}}
	r := simGuest(t, launch, auth)
	c := Config{TEE: api.TEESim, Reader: r}
	if err := Verify(ctx, c.TEE, c.Reader, doc); err != nil {
		t.Fatal(err)
	}
	a, err := c.Attester(ctx)
	if err != nil {
		t.Fatalf("sim attester: %v", err)
	}
	if a.TEE() != evidence.TEESNP {
		t.Fatalf("sim attester's tee %q, want snp", a.TEE())
	}
	raw, err := a.Evidence(ctx, [64]byte{5})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.ParseSNP(raw)
	if err != nil {
		t.Fatalf("sim evidence: %v", err)
	}
	p, err := sevabi.ReportToProto(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.GetHostData()) != string(doc[:32]) || p.GetMeasurement()[0] != 7 || p.GetReportData()[0] != 5 {
		t.Fatalf("sim evidence: host data %x, measurement %x, report data %x", p.GetHostData(), p.GetMeasurement(), p.GetReportData())
	}

	noAuth := Config{TEE: api.TEESim, Reader: simGuest(t, launch, nil)}
	if _, err := noAuth.Attester(ctx); err == nil || !strings.Contains(err.Error(), "no sim authority") {
		t.Fatalf("sim guest without an authority: %v", err)
	}
}
