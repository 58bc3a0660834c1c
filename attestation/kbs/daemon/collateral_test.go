package daemon

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/initdata"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// The whole-KBS tests of issue 12's revocation and TCB checks: veil-kbs started from a TOML
// configuration file as an operator writes it ([attestation] check_revocations,
// collateral_dir, reference_values), a collateral directory as curl would fill it from Intel
// PCS and AMD KDS (here signed by the sim authority), and sim TDX and SNP guests that attest
// with kbs-client and ask for a resource.

// Launch values of the guests, and the initdata they are launched with.
var (
	collMRTD    = [48]byte{0x7d, 0x01}
	collSNPMeas = [48]byte{0x5e, 0x02}
)

const collInitData = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"

// collateralSetup is one sim authority (shared by the test binary) with its roots written out,
// a PCS signing for its TDX platform, and its guests.
type collateralSetup struct {
	auth     *sim.Authority
	pcs      *sim.PCS
	roots    string // directory of sim-snp-roots.pem and sim-tdx-root.pem
	tdx, snp *sim.Attester
	// tdx2 is a guest on another TDX platform of the same model (its own PCK).
	tdx2      *sim.Attester
	initData  *protocol.InitData
	tdxSerial string // the PCK's serial, hex, as the verifier names it
}

func newCollateralSetup(t *testing.T) *collateralSetup {
	t.Helper()
	s := &collateralSetup{auth: kbstest.Authority(t), roots: t.TempDir()}
	if err := s.auth.WriteFiles(s.roots); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.pcs, err = s.auth.TDX.PCS(time.Now()); err != nil {
		t.Fatal(err)
	}
	doc, err := initdata.Parse([]byte(collInitData))
	if err != nil {
		t.Fatal(err)
	}
	tl := sim.TDXLaunch{MRTD: collMRTD}
	copy(tl.MRConfigID[:], initdata.TDXMRConfigID(doc.Digest()))
	if s.tdx, err = sim.NewTDXAttester(s.auth, tl); err != nil {
		t.Fatal(err)
	}
	other, err := s.auth.TDX.Platform(rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.tdx2, err = sim.NewTDXAttester(&sim.Authority{SNP: s.auth.SNP, TDX: other}, tl); err != nil {
		t.Fatal(err)
	}
	sl := sim.SNPLaunch{Measurement: collSNPMeas}
	copy(sl.HostData[:], initdata.SNPHostData(doc.Digest()))
	if s.snp, err = sim.NewSNPAttester(s.auth, sl); err != nil {
		t.Fatal(err)
	}
	s.initData = &protocol.InitData{Format: "toml", Body: collInitData}
	s.tdxSerial = s.auth.TDX.PCK.SerialNumber.Text(16)
	return s
}

// collateral describes a collateral directory to write.
type collateral struct {
	revokedPCK, revokedVCEK bool
	// tcb edits the TDX TCB info (one level, the platform's own, UpToDate).
	tcb func(*sim.TCBInfo)
}

// writeCollateral writes a new collateral directory: Intel PCS's TCB info, QE identity, PCK CRL
// and root CA CRL for the TDX platform (sim.PCS.WriteDir), and AMD's Milan VCEK CRL.
func (s *collateralSetup) writeCollateral(t *testing.T, c collateral) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	info, err := s.auth.TDX.TCBInfo(now)
	if err != nil {
		t.Fatal(err)
	}
	if c.tcb != nil {
		c.tcb(info)
	}
	qe, err := s.auth.TDX.QEIdentity(now)
	if err != nil {
		t.Fatal(err)
	}
	pck := sim.CRLOptions{Revoked: []*big.Int{big.NewInt(42)}} // some other platform
	if c.revokedPCK {
		pck.Revoked = append(pck.Revoked, s.auth.TDX.PCK.SerialNumber)
	}
	if err := s.pcs.WriteDir(dir, info, qe, pck, sim.CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	vcek := sim.CRLOptions{Revoked: []*big.Int{big.NewInt(43)}}
	if c.revokedVCEK {
		vcek.Revoked = append(vcek.Revoked, s.auth.SNP.VCEK.SerialNumber)
	}
	crl, err := s.auth.SNP.CRL(vcek)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "vcek", "v1", s.auth.SNP.ProductLine, "crl")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, crl, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kbsSettings are the revocation and TCB settings of a KBS.
type kbsSettings struct {
	collateralDir    string
	checkRevocations bool
	// flags: set check_revocations and collateral_dir by flags (--check-revocations,
	// --collateral-dir) instead of in the configuration file.
	flags bool
	// allowedTCB is the reference values' tdx.allowed_tcb_statuses.
	allowedTCB []string
}

// startKBS writes a veil-kbs configuration file and a TOML reference values file as an operator
// would, starts veil-kbs from them (ParseFlags --config, the path of cmd/veil-kbs), stores the
// resource default/key/1 and returns the KBS's URL.
func (s *collateralSetup) startKBS(t *testing.T, k kbsSettings) string {
	t.Helper()
	dir := t.TempDir()
	refs := filepath.Join(dir, "reference-values.toml")
	quoted := func(l []string) string {
		q := make([]string, len(l))
		for i, v := range l {
			q[i] = fmt.Sprintf("%q", v)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	refText := fmt.Sprintf("[snp]\nallow_simulated = true\nmeasurements = [\"%x\"]\n\n"+
		"[tdx]\nallow_simulated = true\nmr_td = [\"%x\"]\nallowed_tcb_statuses = %s\n", collSNPMeas, collMRTD, quoted(k.allowedTCB))
	if err := os.WriteFile(refs, []byte(refText), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	conf := fmt.Sprintf("data = %q\n\n[attestation]\nsim_snp_roots = %q\nsim_tdx_roots = %q\nreference_values = %q\n",
		data, filepath.Join(s.roots, sim.SNPRootsFile), filepath.Join(s.roots, sim.TDXRootFile), refs)
	args := []string{"--config", filepath.Join(dir, "veil-kbs.toml")}
	switch {
	case k.flags && k.checkRevocations:
		args = append(args, "--check-revocations", "--collateral-dir", k.collateralDir)
	case k.flags:
		args = append(args, "--collateral-dir", k.collateralDir)
	default:
		conf += fmt.Sprintf("check_revocations = %v\ncollateral_dir = %q\n", k.checkRevocations, k.collateralDir)
	}
	if err := os.WriteFile(args[1], []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseFlags("veil-kbs", args)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, cfg)
	res := filepath.Join(data, "resources", "default", "key")
	if err := os.MkdirAll(res, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(res, "1"), []byte("the secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return url
}

// attempt is what one guest got from the KBS.
type attempt struct {
	token     *kbsclient.Token
	attestErr error
	resource  []byte
	getErr    error
}

// annotated returns the token's annotated evidence (the verified claims) and EAR status.
func (a attempt) annotated(t *testing.T) (map[string]any, string) {
	t.Helper()
	sub, _ := a.token.Claims["submods"].(map[string]any)
	cpu0, _ := sub["cpu0"].(map[string]any)
	ann, _ := cpu0["ear.veraison.annotated-evidence"].(map[string]any)
	status, _ := cpu0["ear.status"].(string)
	if ann == nil {
		t.Fatalf("token without annotated evidence: %v", a.token.Claims)
	}
	return ann, status
}

// run attests guest at the KBS and asks for default/key/1 with the token.
func (s *collateralSetup) run(t *testing.T, url string, guest *sim.Attester) attempt {
	t.Helper()
	cl, err := kbsclient.New(url, guest, kbsclient.Options{InitData: s.initData, Retry: kbsclient.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var a attempt
	if a.token, a.attestErr = cl.Attest(t.Context()); a.attestErr != nil {
		return a
	}
	a.resource, a.getErr = cl.GetResource(t.Context(), "kbs:///default/key/1")
	return a
}

// served fails unless the guest got the resource.
func (a attempt) served(t *testing.T, who string) {
	t.Helper()
	if a.attestErr != nil || a.getErr != nil || string(a.resource) != "the secret" {
		t.Fatalf("%s: attest %v; resource %q, %v", who, a.attestErr, a.resource, a.getErr)
	}
}

// refused fails unless attestation failed with an error containing want, and nothing was
// served.
func (a attempt) refused(t *testing.T, who string, wants ...string) {
	t.Helper()
	if a.attestErr == nil || a.resource != nil {
		t.Fatalf("%s: attest error %v, resource %q; want an attestation error", who, a.attestErr, a.resource)
	}
	for _, want := range wants {
		if !strings.Contains(a.attestErr.Error(), want) {
			t.Fatalf("%s: attest error %v; want it to contain %q", who, a.attestErr, want)
		}
	}
	t.Logf("%s: %v", who, a.attestErr)
}

// checkTCBClaims checks the TDX TCB claims of the token.
func checkTCBClaims(t *testing.T, a attempt, status, date string, advisories []string) {
	t.Helper()
	ann, _ := a.annotated(t)
	if ann["tcb_status"] != status || ann["tcb_date"] != date {
		t.Errorf("token claims tcb_status %v, tcb_date %v; want %s, %s", ann["tcb_status"], ann["tcb_date"], status, date)
	}
	ids, ok := ann["advisory_ids"].([]any)
	got := make([]string, len(ids))
	for i, id := range ids {
		got[i], _ = id.(string)
	}
	if !ok || !slices.Equal(got, advisories) {
		t.Errorf("token claim advisory_ids %v, want %v", ann["advisory_ids"], advisories)
	}
}

// answersAuth fails unless the KBS answers a new challenge.
func answersAuth(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url+protocol.PathPrefix+"/auth", "application/json",
		strings.NewReader(`{"version":"0.4.0","tee":"tdx","extra-params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("auth after a refusal: %d", resp.StatusCode)
	}
}

// check_revocations and collateral_dir from the configuration file: with current collateral
// a sim TDX guest gets its resource and its token carries the TCB status Veil's verifier found;
// with its PCK on the PCK CRL it is refused, naming the revoked certificate, and the KBS goes
// on serving other guests; the same for an SNP guest whose VCEK is on AMD's CRL.
func TestKBSRevocationFromConfig(t *testing.T) {
	s := newCollateralSetup(t)
	t.Run("current collateral", func(t *testing.T) {
		url := s.startKBS(t, kbsSettings{collateralDir: s.writeCollateral(t, collateral{}), checkRevocations: true})
		a := s.run(t, url, s.tdx)
		a.served(t, "TDX guest")
		checkTCBClaims(t, a, "UpToDate", "2024-03-13T00:00:00Z", []string{})
		if ann, status := a.annotated(t); status != "affirming" || ann["simulated"] != true {
			t.Errorf("EAR status %q, simulated %v", status, ann["simulated"])
		}
		s.run(t, url, s.snp).served(t, "SNP guest")
	})
	t.Run("revoked PCK", func(t *testing.T) {
		dir := s.writeCollateral(t, collateral{revokedPCK: true})
		url := s.startKBS(t, kbsSettings{collateralDir: dir, checkRevocations: true})
		// The refusal names the directory's file the CRL came from, not PCS's URL.
		s.run(t, url, s.tdx).refused(t, "TDX guest with a revoked PCK",
			"TDX PCK certificate (serial "+s.tdxSerial+") was revoked", "by the PCK CRL "+dir+"/")
		answersAuth(t, url)
		// Another platform of the same model (same FMSPC and collateral, its own PCK).
		s.run(t, url, s.tdx2).served(t, "TDX guest of another platform after the refusal")
		s.run(t, url, s.snp).served(t, "SNP guest after the refusal")
	})
	// This time by flags: --check-revocations --collateral-dir.
	t.Run("revoked VCEK", func(t *testing.T) {
		url := s.startKBS(t, kbsSettings{collateralDir: s.writeCollateral(t, collateral{revokedVCEK: true}), checkRevocations: true, flags: true})
		s.run(t, url, s.snp).refused(t, "SNP guest with a revoked VCEK",
			"SEV-SNP VCEK (serial "+s.auth.SNP.VCEK.SerialNumber.Text(16)+") was revoked")
		answersAuth(t, url)
		s.run(t, url, s.tdx).served(t, "TDX guest after the refusal")
	})
	// check_revocations off is the opt-out (docs/kbs.md): the CRLs of the directory are not
	// read, so revoked certificates are accepted; the TDX TCB status is still checked.
	t.Run("check_revocations off", func(t *testing.T) {
		url := s.startKBS(t, kbsSettings{collateralDir: s.writeCollateral(t, collateral{revokedPCK: true, revokedVCEK: true})})
		a := s.run(t, url, s.tdx)
		a.served(t, "TDX guest with a revoked PCK, revocations not checked")
		checkTCBClaims(t, a, "UpToDate", "2024-03-13T00:00:00Z", []string{})
		s.run(t, url, s.snp).served(t, "SNP guest with a revoked VCEK, revocations not checked")
	})
}

// A TDX platform whose TCB level Intel's TCB info marks OutOfDate: the token says so, and the
// default reference values deny the resource; reference values that list OutOfDate in
// tdx.allowed_tcb_statuses let the guest have it.
func TestKBSTDXTCBStatusFromConfig(t *testing.T) {
	s := newCollateralSetup(t)
	advisories := []string{"INTEL-SA-00837", "INTEL-SA-00960"}
	dir := s.writeCollateral(t, collateral{tcb: func(info *sim.TCBInfo) {
		info.Levels[0].Status, info.Levels[0].Date, info.Levels[0].Advisories = "OutOfDate", "2023-08-09T00:00:00Z", advisories
	}})
	t.Run("default reference values", func(t *testing.T) {
		url := s.startKBS(t, kbsSettings{collateralDir: dir, checkRevocations: true})
		a := s.run(t, url, s.tdx)
		if a.attestErr != nil {
			t.Fatalf("attest: %v", a.attestErr)
		}
		checkTCBClaims(t, a, "OutOfDate", "2023-08-09T00:00:00Z", advisories)
		ann, status := a.annotated(t)
		if status != "contraindicated" || !strings.Contains(fmt.Sprint(ann["appraisal_reasons"]), "TCB status OutOfDate is not allowed") {
			t.Errorf("EAR status %q, reasons %v; want contraindicated for the OutOfDate TCB", status, ann["appraisal_reasons"])
		}
		if a.getErr == nil || !strings.Contains(a.getErr.Error(), "PolicyDeny") || a.resource != nil {
			t.Fatalf("resource for an OutOfDate TCB: %q, %v; want PolicyDeny", a.resource, a.getErr)
		}
	})
	t.Run("allowed_tcb_statuses lists OutOfDate", func(t *testing.T) {
		url := s.startKBS(t, kbsSettings{collateralDir: dir, checkRevocations: true, allowedTCB: []string{"UpToDate", "OutOfDate"}})
		a := s.run(t, url, s.tdx)
		a.served(t, "TDX guest with an allowed OutOfDate TCB")
		checkTCBClaims(t, a, "OutOfDate", "2023-08-09T00:00:00Z", advisories)
		if _, status := a.annotated(t); status != "affirming" {
			t.Errorf("EAR status %q, want affirming", status)
		}
	})
}

// An explicit boolean flag wins over the configuration file both ways: --check-revocations=false
// and --fetch-collateral=false turn off what the file turned on (they used to be ignored).
func TestBoolFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "veil-kbs.toml")
	conf := fmt.Sprintf("[attestation]\ncheck_revocations = true\nfetch_collateral = true\ncollateral_dir = %q\n", dir)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args         []string
		check, fetch bool
	}{
		{nil, true, true},
		{[]string{"--check-revocations=false"}, false, true},
		{[]string{"--fetch-collateral=false"}, true, false},
		{[]string{"--check-revocations=false", "--fetch-collateral=false"}, false, false},
		{[]string{"--check-revocations"}, true, true},
	} {
		cfg, err := ParseFlags("veil-kbs", append([]string{"--config", file, "--data", dir}, tc.args...))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if a := cfg.Attestation; a.CheckRevocations != tc.check || a.FetchCollateral != tc.fetch || a.CollateralDir != dir {
			t.Errorf("%v: check_revocations %v, fetch_collateral %v, collateral_dir %q; want %v, %v, %q",
				tc.args, a.CheckRevocations, a.FetchCollateral, a.CollateralDir, tc.check, tc.fetch, dir)
		}
	}
}
