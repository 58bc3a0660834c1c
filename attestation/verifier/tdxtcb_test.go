package verifier

import (
	"context"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/veil-runtime/veil/attestation/sim"
)

// sim PCS of each authority, made once per test binary (one P-256 key each).
var simPCSes sync.Map

func simPCSOf(t testing.TB, a *sim.Authority) *sim.PCS {
	t.Helper()
	if p, ok := simPCSes.Load(a); ok {
		return p.(*sim.PCS)
	}
	p, err := a.TDX.PCS(sampleTime.Add(-24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := simPCSes.LoadOrStore(a, p)
	return actual.(*sim.PCS)
}

// pcsFiles is what simPCSDir writes: a TCB info and QE identity signed by pcs (default: the
// evidence's authority's), a PCK CRL and a root CA CRL (of pcs's chain).
type pcsFiles struct {
	info            *sim.TCBInfo
	qe              *sim.QEIdentity
	pcs             *sim.PCS
	pckCRL, rootCRL sim.CRLOptions
	// signedInfo edits the TCB info response after it was signed.
	signedInfo func([]byte) []byte
}

// simPCSDir writes Intel PCS collateral for authority a's sim TDX platform into a collateral
// directory: by default a TCB info whose one level is the platform's (UpToDate), the QE's
// identity (UpToDate), and empty, current CRLs; edit changes any of it before it is signed.
func simPCSDir(t *testing.T, a *sim.Authority, edit func(f *pcsFiles)) string {
	t.Helper()
	now := fixedNow()
	info, err := a.TDX.TCBInfo(now)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := a.TDX.QEIdentity(now)
	if err != nil {
		t.Fatal(err)
	}
	crl := sim.CRLOptions{ThisUpdate: now.Add(-time.Hour), NextUpdate: now.AddDate(0, 0, 30)}
	f := &pcsFiles{info: info, qe: qe, pcs: simPCSOf(t, a), pckCRL: crl, rootCRL: crl}
	if edit != nil {
		edit(f)
	}
	dir := t.TempDir()
	if err := f.pcs.WriteDir(dir, f.info, f.qe, f.pckCRL, f.rootCRL); err != nil {
		t.Fatal(err)
	}
	if f.signedInfo != nil {
		rel, err := collateralPath(pcs.TcbInfoURL(info.FMSPC))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, rel)
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, f.signedInfo(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// higher is a TCB level above the platform's (one more on the first SGX component).
func higher(l sim.TCBLevel) sim.TCBLevel {
	l.SGX[0]++
	l.Status, l.Advisories = "UpToDate", nil
	return l
}

// TDX TCB status from sim-signed Intel collateral: each status reaches the claims with its
// advisories; Revoked, revoked certificates and bad collateral are refused.
func TestTDXTCBStatusSim(t *testing.T) {
	a := simAuthority(t)
	rd := [64]byte{7}
	ev := simTDXEvidence(t, a, sim.TDXLaunch{}, rd)
	in := Input{TEE: "tdx", Evidence: ev, ReportData: rd}
	platformIs := func(status string, adv ...string) func(f *pcsFiles) {
		return func(f *pcsFiles) {
			own := f.info.Levels[0]
			own.Status, own.Advisories = status, adv
			f.info.Levels = []sim.TCBLevel{higher(own), own}
		}
	}
	tests := []struct {
		name    string
		edit    func(f *pcsFiles)
		revoke  bool
		status  string
		adv     []string
		want    string
		wantErr error
	}{
		{name: "up to date", revoke: true, status: "UpToDate"},
		{name: "up to date, revocations off", status: "UpToDate"},
		{name: "out of date", edit: platformIs("OutOfDate", "INTEL-SA-00837", "INTEL-SA-00960"), revoke: true,
			status: "OutOfDate", adv: []string{"INTEL-SA-00837", "INTEL-SA-00960"}},
		{name: "SW hardening needed", edit: platformIs("SWHardeningNeeded", "INTEL-SA-00615"), revoke: true,
			status: "SWHardeningNeeded", adv: []string{"INTEL-SA-00615"}},
		{name: "configuration needed", edit: platformIs("ConfigurationNeeded"), status: "ConfigurationNeeded"},
		{name: "QE out of date", revoke: true, status: "OutOfDate", adv: []string{"INTEL-SA-00999"}, edit: func(f *pcsFiles) {
			own := f.qe.Levels[0]
			own.Status, own.Advisories = "OutOfDate", []string{"INTEL-SA-00999"}
			f.qe.Levels = []sim.TCBLevel{{ISVSVN: own.ISVSVN + 1, Status: "UpToDate"}, own}
		}},
		{name: "QE out of date, configuration needed", status: "OutOfDateConfigurationNeeded", adv: []string{"INTEL-SA-00615"}, edit: func(f *pcsFiles) {
			platformIs("ConfigurationNeeded", "INTEL-SA-00615")(f)
			f.qe.Levels[0].Status = "OutOfDate"
		}},
		{name: "TCB revoked", edit: platformIs("Revoked", "INTEL-SA-00086"), want: "TDX TCB status is Revoked", wantErr: ErrRevoked},
		{name: "below every level", want: "no matching TCB level in the TCB info", edit: func(f *pcsFiles) {
			f.info.Levels = []sim.TCBLevel{higher(f.info.Levels[0])}
		}},
		{name: "QE below every level", want: "no matching TCB level in the QE identity", edit: func(f *pcsFiles) {
			f.qe.Levels[0].ISVSVN++
		}},
		{name: "PCK revoked", revoke: true, want: "TDX PCK certificate (serial " + a.TDX.PCK.SerialNumber.Text(16) + ") was revoked",
			wantErr: ErrRevoked, edit: func(f *pcsFiles) { f.pckCRL.Revoked = []*big.Int{big.NewInt(1), a.TDX.PCK.SerialNumber} }},
		{name: "PCK revoked, revocations off", status: "UpToDate",
			edit: func(f *pcsFiles) { f.pckCRL.Revoked = []*big.Int{a.TDX.PCK.SerialNumber} }},
		{name: "TCB signing certificate revoked", revoke: true, want: `"Intel SGX TCB Signing"`, wantErr: ErrRevoked,
			edit: func(f *pcsFiles) { f.rootCRL.Revoked = []*big.Int{f.pcs.Signing.SerialNumber} }},
		{name: "PCK intermediate revoked", revoke: true, want: `"Intel SGX PCK Platform CA"`, wantErr: ErrRevoked,
			edit: func(f *pcsFiles) { f.rootCRL.Revoked = []*big.Int{a.TDX.Intermediate.SerialNumber} }},
		{name: "stale PCK CRL", revoke: true, want: "is stale", edit: func(f *pcsFiles) {
			f.pckCRL.ThisUpdate, f.pckCRL.NextUpdate = fixedNow().AddDate(0, -2, 0), fixedNow().AddDate(0, -1, 0)
		}},
		{name: "bad signature", want: "bad signature", edit: func(f *pcsFiles) {
			f.info.Levels[0].Status = "OutOfDate"
			f.signedInfo = func(b []byte) []byte {
				return []byte(strings.Replace(string(b), `"tcbStatus":"OutOfDate"`, `"tcbStatus":"UpToDate"`, 1))
			}
		}},
		{name: "signed by another root", want: "does not verify to a trusted root", edit: func(f *pcsFiles) { f.pcs = simPCSOf(t, otherAuthority(t)) }},
		{name: "TCB info expired", want: "TCB info expired: its nextUpdate", edit: func(f *pcsFiles) {
			f.info.IssueDate, f.info.NextUpdate = fixedNow().AddDate(0, -2, 0), fixedNow().Add(-time.Second)
		}},
		{name: "QE identity expired", want: "QE identity expired", edit: func(f *pcsFiles) { f.qe.NextUpdate = fixedNow().Add(-time.Hour) }},
		{name: "QE identity of another enclave", want: "QE identity mismatch: the QE's MRSIGNER", edit: func(f *pcsFiles) {
			f.qe.MRSigner = make([]byte, 32)
		}},
		{name: "QE identity of another product", want: "QE identity mismatch: the QE's ISVPRODID", edit: func(f *pcsFiles) { f.qe.ISVProdID++ }},
		{name: "TCB info of another SEAM signer", want: "MRSIGNERSEAM", edit: func(f *pcsFiles) {
			f.info.MRSignerSeam = make([]byte, 48)
			f.info.MRSignerSeam[0] = 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(Config{Now: fixedNow, SimTDXRoots: a.TDXRoots(), CheckRevocations: tc.revoke, CollateralDir: simPCSDir(t, a, tc.edit)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), in)
			if tc.want != "" {
				if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify = %v; want an untrusted quote saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.TDX.TCBStatus != tc.status || c.Raw["tcb_status"] != tc.status || !slices.Equal(c.TDX.AdvisoryIDs, tc.adv) {
				t.Fatalf("TCB status %q (raw %v), advisories %v; want %q, %v", c.TDX.TCBStatus, c.Raw["tcb_status"], c.TDX.AdvisoryIDs, tc.status, tc.adv)
			}
		})
	}
}

// Without collateral the sim quote has no tcb_status; with a directory lacking the TCB info
// it is refused, naming the file.
func TestTDXTCBMissingCollateral(t *testing.T) {
	a := simAuthority(t)
	rd := [64]byte{8}
	in := Input{TEE: "tdx", Evidence: simTDXEvidence(t, a, sim.TDXLaunch{}, rd), ReportData: rd}
	v, err := New(Config{Now: fixedNow, SimTDXRoots: a.TDXRoots()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), in)
	if err != nil || c.TDX.TCBStatus != "" || c.Raw["tcb_status"] != nil {
		t.Fatalf("without collateral: %v, status %q", err, c.TDX.TCBStatus)
	}
	dir := simPCSDir(t, a, nil)
	if err := os.Remove(filepath.Join(dir, "tdx/certification/v4/qe/identity")); err != nil {
		t.Fatal(err)
	}
	if v, err = New(Config{Now: fixedNow, SimTDXRoots: a.TDXRoots(), CollateralDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), in); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "qe/identity: no such file") {
		t.Fatalf("Verify without a QE identity = %v", err)
	}
}

// Intel's convergence of the platform's status with the TDX module's or the QE's.
func TestConvergeTCBStatus(t *testing.T) {
	for _, tc := range []struct{ platform, component, want string }{
		{"UpToDate", "UpToDate", "UpToDate"},
		{"SWHardeningNeeded", "UpToDate", "SWHardeningNeeded"},
		{"UpToDate", "OutOfDate", "OutOfDate"},
		{"SWHardeningNeeded", "OutOfDate", "OutOfDate"},
		{"ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"},
		{"ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"},
		{"OutOfDate", "OutOfDate", "OutOfDate"},
		{"UpToDate", "Revoked", "Revoked"},
		{"Revoked", "UpToDate", "Revoked"},
	} {
		if got := converge(tc.platform, tc.component); got != tc.want {
			t.Errorf("converge(%s, %s) = %s, want %s", tc.platform, tc.component, got, tc.want)
		}
	}
}

// A TDX module with an identity of its own (TEE_TCB_SVN[1] > 0): its level comes from
// tdxModuleIdentities by TEE_TCB_SVN[0], and TEE_TCB_SVN's first two bytes no longer count
// against the platform levels.
func TestTDXModuleIdentity(t *testing.T) {
	svn := make([]byte, 16)
	svn[0], svn[1], svn[2] = 5, 3, 1
	body := &pb.TDQuoteBody{TeeTcbSvn: svn, MrSignerSeam: make([]byte, 48), SeamAttributes: make([]byte, 8)}
	qe := &pb.EnclaveReport{MrSigner: []byte{1}, IsvProdId: 2, IsvSvn: 4, MiscSelect: 0, Attributes: make([]byte, 16)}
	exts := &pcs.PckExtensions{FMSPC: "00806f050000", PCEID: "0000", TCB: pcs.PckCertTCB{PCESvn: 11, CPUSvnComponents: make([]byte, 16)}}
	comps := func(b ...byte) []pcs.TcbComponent {
		out := make([]pcs.TcbComponent, 16)
		for i, v := range b {
			out[i].Svn = v
		}
		return out
	}
	hexb := func(b []byte) pcs.HexBytes { return pcs.HexBytes{Bytes: b} }
	level := func(tdx []pcs.TcbComponent, isvsvn uint32, status string, adv ...string) pcs.TcbLevel {
		return pcs.TcbLevel{Tcb: pcs.Tcb{SgxTcbcomponents: comps(), Pcesvn: 11, TdxTcbcomponents: tdx, Isvsvn: isvsvn},
			TcbStatus: pcs.TcbComponentStatus(status), AdvisoryIDs: adv}
	}
	info := &pcs.TcbInfo{Fmspc: "00806F050000", PceID: "0000",
		TdxModule: pcs.TdxModule{Mrsigner: hexb(make([]byte, 48)), Attributes: hexb(make([]byte, 8)), AttributesMask: hexb(make([]byte, 8))},
		// The first level wants module SVN 9 and version 9: skipped for a module with an identity.
		TcbLevels: []pcs.TcbLevel{level(comps(9, 9, 1), 0, "UpToDate", "INTEL-SA-1"), level(comps(), 0, "OutOfDate")},
		TdxModuleIdentities: []pcs.TdxModuleIdentity{
			{ID: "TDX_01", Mrsigner: hexb(make([]byte, 48)), Attributes: hexb(make([]byte, 8)), AttributesMask: hexb(make([]byte, 8)),
				TcbLevels: []pcs.TcbLevel{level(nil, 0, "UpToDate")}},
			{ID: "TDX_03", Mrsigner: hexb(make([]byte, 48)), Attributes: hexb(make([]byte, 8)), AttributesMask: hexb(make([]byte, 8)),
				TcbLevels: []pcs.TcbLevel{level(nil, 6, "UpToDate"), level(nil, 5, "OutOfDate", "INTEL-SA-2"), level(nil, 0, "Revoked")}},
		},
	}
	qeID := &pcs.EnclaveIdentity{Mrsigner: hexb([]byte{1}), IsvProdID: 2, Miscselect: hexb(make([]byte, 4)), MiscselectMask: hexb(make([]byte, 4)),
		Attributes: hexb(make([]byte, 16)), AttributesMask: hexb(make([]byte, 16)), TcbLevels: []pcs.TcbLevel{level(nil, 4, "UpToDate", "INTEL-SA-1")}}
	got, err := matchTDXTCB(info, qeID, body, qe, exts)
	if err != nil {
		t.Fatal(err)
	}
	want := tdxTCB{Status: "OutOfDate", Platform: "UpToDate", Module: "OutOfDate", QE: "UpToDate", AdvisoryIDs: []string{"INTEL-SA-1", "INTEL-SA-2"}}
	if got.Status != want.Status || got.Platform != want.Platform || got.Module != want.Module || got.QE != want.QE || !slices.Equal(got.AdvisoryIDs, want.AdvisoryIDs) {
		t.Fatalf("matchTDXTCB = %+v, want %+v", *got, want)
	}
	svn[0] = 4 // below the module's OutOfDate level: its Revoked level
	if got, err = matchTDXTCB(info, qeID, body, qe, exts); err != nil || got.Status != "Revoked" {
		t.Fatalf("module SVN 4: %+v, %v", got, err)
	}
	svn[1] = 2 // a module version the TCB info does not know
	if _, err := matchTDXTCB(info, qeID, body, qe, exts); err == nil || !strings.Contains(err.Error(), "no TDX module identity TDX_02") {
		t.Fatalf("unknown module version: %v", err)
	}
	svn[1] = 0 // no module identity: bytes 0 and 1 count against the platform levels
	if got, err = matchTDXTCB(info, qeID, body, qe, exts); err != nil || got.Status != "OutOfDate" || got.Module != "" {
		t.Fatalf("module version 0: %+v, %v", got, err)
	}
}

// pcsServer is Intel PCS for a test: it serves a collateral directory's files, with their
// headers, by URL, and counts the requests.
type pcsServer struct {
	dir string
	n   atomic.Int32
}

func (s *pcsServer) Get(_ context.Context, link string) (http.Header, []byte, error) {
	s.n.Add(1)
	rel, err := collateralPath(link)
	if err != nil {
		return nil, nil, err
	}
	file := filepath.Join(s.dir, rel)
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, errors.New("GET " + link + ": 404 Not Found")
	}
	h, err := readHeaderDump(file + ".headers")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	return http.Header(h), body, nil
}

// Online, the collateral comes from PCS's URLs (TCB info, QE identity, PCK CRL, root CA CRL),
// kept a day; a collateral directory takes precedence and a file missing from it is fetched.
func TestTDXTCBOnline(t *testing.T) {
	a := simAuthority(t)
	rd := [64]byte{10}
	in := Input{TEE: "tdx", Evidence: simTDXEvidence(t, a, sim.TDXLaunch{}, rd), ReportData: rd}
	pcsSrv := &pcsServer{dir: simPCSDir(t, a, nil)}
	var mu sync.Mutex
	now := fixedNow()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v, err := New(Config{Now: clock, SimTDXRoots: a.TDXRoots(), CheckRevocations: true, FetchCollateral: true, Getter: pcsSrv})
	if err != nil {
		t.Fatal(err)
	}
	// Fetched once (TCB info, QE identity, PCK CRL, root CA CRL), kept a day at most.
	for i, want := range []int32{4, 4, 8} {
		if i == 2 {
			mu.Lock()
			now = now.Add(25 * time.Hour)
			mu.Unlock()
		}
		c, err := v.Verify(context.Background(), in)
		if err != nil || c.TDX.TCBStatus != "UpToDate" {
			t.Fatalf("Verify online = %v, status %v", err, c)
		}
		if pcsSrv.n.Load() != want {
			t.Fatalf("verification %d: %d PCS requests in all, want %d", i+1, pcsSrv.n.Load(), want)
		}
	}
	// PCS revokes the PCK; a directory with the old collateral minus its PCK CRL still sees it.
	pcsSrv.dir = simPCSDir(t, a, func(f *pcsFiles) { f.pckCRL.Revoked = []*big.Int{a.TDX.PCK.SerialNumber} })
	dir := simPCSDir(t, a, nil)
	if err := os.Remove(filepath.Join(dir, "sgx/certification/v4/pckcrl?ca=platform&encoding=der")); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{Now: fixedNow, SimTDXRoots: a.TDXRoots(), CheckRevocations: true, FetchCollateral: true, Getter: pcsSrv},
		{Now: fixedNow, SimTDXRoots: a.TDXRoots(), CheckRevocations: true, FetchCollateral: true, Getter: pcsSrv, CollateralDir: dir},
	} {
		v, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), in); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "PCK CRL https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der") {
			t.Fatalf("Verify after PCS revoked the PCK (dir %q) = %v", cfg.CollateralDir, err)
		}
	}
	// The directory's collateral wins: an OutOfDate TCB info there, UpToDate at PCS.
	pcsSrv.dir = simPCSDir(t, a, nil)
	dir = simPCSDir(t, a, func(f *pcsFiles) { f.info.Levels[0].Status = "OutOfDate" })
	v, err = New(Config{Now: fixedNow, SimTDXRoots: a.TDXRoots(), FetchCollateral: true, Getter: pcsSrv, CollateralDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(context.Background(), in); err != nil || c.TDX.TCBStatus != "OutOfDate" {
		t.Fatalf("Verify with the directory's TCB info = %v, %+v", err, c)
	}
}
