package builtin_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/builtin"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/token"
	"github.com/veil-runtime/veil/attestation/verifier"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard)
	os.Exit(m.Run())
}

var authority struct {
	once sync.Once
	a    *sim.Authority
	err  error
}

// simAuthority is one sim authority for the whole test binary (its RSA keys are slow to make).
func simAuthority(tb testing.TB) *sim.Authority {
	tb.Helper()
	authority.once.Do(func() { authority.a, authority.err = sim.NewAuthority(rand.Reader, sim.Options{}) })
	if authority.err != nil {
		tb.Fatal(authority.err)
	}
	return authority.a
}

const initdataBody = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n"

var measurement = [48]byte{0xaa, 0xbb}

// refs accepts sim evidence with the measurement above.
func refs() *appraisal.ReferenceValues {
	return &appraisal.ReferenceValues{
		SNP: &appraisal.SNPReference{AllowSimulated: true, Measurements: []string{hex.EncodeToString(measurement[:])}},
		TDX: &appraisal.TDXReference{AllowSimulated: true, MRTD: []string{hex.EncodeToString(measurement[:])}},
	}
}

// newKBS serves a KBS with the built-in attestation service; trustSim says whether it trusts
// the test authority's roots. edits may change the other options.
func newKBS(tb testing.TB, trustSim bool, edits ...func(*kbs.Options)) *kbstest.Env {
	tb.Helper()
	a := simAuthority(tb)
	vc := verifier.Config{}
	if trustSim {
		vc.SimSNPRoots, vc.SimTDXRoots = a.SNPRoots(), a.TDXRoots()
	}
	v, err := verifier.New(vc)
	if err != nil {
		tb.Fatal(err)
	}
	ap, err := builtin.NewAppraiser(context.Background(), appraisal.DefaultPolicy, refs())
	if err != nil {
		tb.Fatal(err)
	}
	iss, err := token.GenerateIssuer(token.IssuerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := builtin.New(builtin.Options{Verifier: v, Appraiser: ap, Issuer: iss, Reference: refs()})
	if err != nil {
		tb.Fatal(err)
	}
	env := kbstest.NewServer(tb, func(o *kbs.Options) {
		o.Attestation, o.Tokens = svc, svc
		for _, edit := range edits {
			edit(o)
		}
	})
	p, _ := protocol.ParseResourcePath("default/key/1")
	if err := env.Store.Put(context.Background(), p, []byte("the secret")); err != nil {
		tb.Fatal(err)
	}
	return env
}

// guest is a sim guest launched with l (SNP) whose host data is the digest of initdata.
func snpGuest(tb testing.TB, l sim.SNPLaunch, body string) (kbsclient.Attester, *protocol.InitData) {
	tb.Helper()
	sum := sha256.Sum256([]byte(body))
	if l.HostData == ([32]byte{}) {
		l.HostData = sum
	}
	if l.Measurement == ([48]byte{}) {
		l.Measurement = measurement
	}
	att, err := sim.NewSNPAttester(simAuthority(tb), l)
	if err != nil {
		tb.Fatal(err)
	}
	return att, &protocol.InitData{Format: "toml", Body: body}
}

func tdxGuest(tb testing.TB, l sim.TDXLaunch) (kbsclient.Attester, *protocol.InitData) {
	tb.Helper()
	sum := sha256.Sum256([]byte(initdataBody))
	copy(l.MRConfigID[:], sum[:])
	l.MRTD = measurement
	att, err := sim.NewTDXAttester(simAuthority(tb), l)
	if err != nil {
		tb.Fatal(err)
	}
	return att, &protocol.InitData{Format: "toml", Body: initdataBody}
}

func client(tb testing.TB, env *kbstest.Env, att kbsclient.Attester, init *protocol.InitData) *kbsclient.Client {
	tb.Helper()
	cl, err := kbsclient.New(env.URL(), att, kbsclient.Options{InitData: init, Retry: kbsclient.Retry{Attempts: 1}})
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}

// The full flow on loopback: a sim guest attests, gets the resource and decrypts it, and the
// token carries the initdata digest, verified against the TEE's HOST_DATA / MRCONFIGID.
func TestFullFlow(t *testing.T) {
	env := newKBS(t, true)
	sum := sha256.Sum256([]byte(initdataBody))
	snpAtt, snpInit := snpGuest(t, sim.SNPLaunch{}, initdataBody)
	tdxAtt, tdxInit := tdxGuest(t, sim.TDXLaunch{})
	for name, g := range map[string]struct {
		att  kbsclient.Attester
		init *protocol.InitData
	}{"snp": {snpAtt, snpInit}, "tdx": {tdxAtt, tdxInit}} {
		t.Run(name, func(t *testing.T) {
			cl := client(t, env, g.att, g.init)
			got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
			if err != nil || string(got) != "the secret" {
				t.Fatalf("GetResource = %q, %v", got, err)
			}
			tok, err := cl.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			ear, err := token.Verify(tok.Raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			cpu0 := ear.CPU0()
			ae := cpu0.AnnotatedEvidence
			if cpu0.Status != "affirming" || ae["init_data_checked"] != true || ae["simulated"] != true {
				t.Fatalf("token cpu0 = %+v", cpu0)
			}
			if !strings.HasPrefix(ae["init_data"].(string), hex.EncodeToString(sum[:])) {
				t.Fatalf("token init_data %v, want the digest %x", ae["init_data"], sum)
			}
			if claims, _ := ae["init_data_claims"].(map[string]any); claims["policy.rego"] != "package agent_policy" {
				t.Fatalf("init_data_claims %v", ae["init_data_claims"])
			}
		})
	}
}

// Refusals that need real evidence: each with its error type, and no resource released.
func TestSimRefusals(t *testing.T) {
	env := newKBS(t, true)
	untrusting := newKBS(t, false)
	flip := &flipper{}
	tests := []struct {
		name    string
		env     *kbstest.Env
		att     func() (kbsclient.Attester, *protocol.InitData)
		kind    protocol.ErrorKind
		wantErr string
	}{
		{"untrusted sim root", untrusting, func() (kbsclient.Attester, *protocol.InitData) { return snpGuest(t, sim.SNPLaunch{}, initdataBody) },
			protocol.AttestationError, "not trusted"},
		{"one flipped byte in the report", env, func() (kbsclient.Attester, *protocol.InitData) {
			a, i := snpGuest(t, sim.SNPLaunch{}, initdataBody)
			flip.Attester = a
			return flip, i
		}, protocol.AttestationError, "report signature"},
		{"host data that does not match the initdata", env, func() (kbsclient.Attester, *protocol.InitData) {
			a, _ := snpGuest(t, sim.SNPLaunch{}, initdataBody)
			return a, &protocol.InitData{Format: "toml", Body: strings.Replace(initdataBody, "agent_policy", "other", 1)}
		}, protocol.AttestationError, "does not match"},
		{"debug bit the reference values forbid", env, func() (kbsclient.Attester, *protocol.InitData) {
			return snpGuest(t, sim.SNPLaunch{Policy: sim.DefaultSNPPolicy | sim.PolicyDebug}, initdataBody)
		}, protocol.PolicyDeny, "denied by the resource policy"},
		{"measurement not in the reference values", env, func() (kbsclient.Attester, *protocol.InitData) {
			return snpGuest(t, sim.SNPLaunch{Measurement: [48]byte{1}}, initdataBody)
		}, protocol.PolicyDeny, "denied by the resource policy"},
		{"TDX debug", env, func() (kbsclient.Attester, *protocol.InitData) { return tdxGuest(t, sim.TDXLaunch{Debug: true}) },
			protocol.PolicyDeny, "denied by the resource policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			att, init := tt.att()
			cl := client(t, tt.env, att, init)
			got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
			var ke *kbsclient.Error
			if got != nil || !errors.As(err, &ke) || ke.Kind != tt.kind || ke.StatusCode != 401 || !strings.Contains(ke.Detail, tt.wantErr) {
				t.Fatalf("GetResource = %q, %v; want %s %q", got, err, tt.kind, tt.wantErr)
			}
			if tt.kind != protocol.PolicyDeny {
				return
			}
			// Appraisal's verdict is in the token: contraindicated, with the reason.
			tok, err := cl.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			cpu0 := tok.Claims["submods"].(map[string]any)["cpu0"].(map[string]any)
			if cpu0["ear.status"] != "contraindicated" {
				t.Fatalf("token status %v, want contraindicated", cpu0["ear.status"])
			}
		})
	}
}

// flipper flips one byte of the signed report inside the evidence (in the measurement).
type flipper struct{ kbsclient.Attester }

func (f *flipper) Evidence(ctx context.Context, rd [64]byte) (json.RawMessage, error) {
	ev, err := f.Attester.Evidence(ctx, rd)
	if err != nil {
		return nil, err
	}
	var s evidence.SNP
	if err := json.Unmarshal(ev, &s); err != nil {
		return nil, err
	}
	s.Report[0x90] ^= 1
	return json.Marshal(s)
}
