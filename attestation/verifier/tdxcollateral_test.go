package verifier

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testcases "github.com/google/go-tdx-guest/testing"
	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/veil-runtime/veil/attestation/tdx"
)

// A time inside the validity of go-tdx-guest's sample Intel PCS collateral (TCB info, QE
// identity, CRLs of mid-2023).
var pcsSampleTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

// pcsDir writes go-tdx-guest's sample Intel PCS responses (real, Intel-signed collateral for
// its sample quote) into a collateral directory, as curl -D FILE.headers -o FILE would. skip
// names files to leave out; edit may change a body.
func pcsDir(t *testing.T, skip string, edit func(name string, body []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	for link, resp := range testcases.TestGetter.Responses {
		rel, err := collateralPath(link)
		if err != nil {
			t.Fatal(err)
		}
		if skip != "" && strings.Contains(rel, skip) {
			continue // the body and its headers
		}
		file := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		body := append([]byte(nil), resp.Body...)
		if edit != nil {
			body = edit(rel, body)
		}
		if err := os.WriteFile(file, body, 0o644); err != nil {
			t.Fatal(err)
		}
		var h strings.Builder
		h.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
		for name, values := range resp.Header {
			for _, v := range values {
				h.WriteString(name + ": " + v + "\r\n")
			}
		}
		h.WriteString("\r\n")
		if skip != "" && strings.Contains(rel+".headers", skip) {
			continue // the headers only
		}
		if err := os.WriteFile(file+".headers", []byte(h.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// noLevel is where Veil stops with go-tdx-guest's sample quote and Intel's sample collateral,
// after it has verified the collateral (issuer chains, signatures, expiry, CRLs): the quote's
// TEE_TCB_SVN is below every TCB level of Intel's sample TCB info, so no status applies.
const noLevel = "no matching TCB level in the TCB info for FMSPC 50806f000000"

// Offline TDX collateral: Veil checks the sample quote against Intel's TCB info, QE
// identity and CRLs from the directory; missing, forged or expired collateral is refused.
func TestTDXCollateralOffline(t *testing.T) {
	ev, rd := sampleTDXEvidence(t)
	in := Input{TEE: "tdx", Evidence: ev, ReportData: rd}
	at := func(tm time.Time) func() time.Time { return func() time.Time { return tm } }
	tests := []struct {
		name   string
		dir    string
		now    time.Time
		revoke bool
		want   string
	}{
		{name: "sample collateral", dir: pcsDir(t, "", nil), now: pcsSampleTime, want: noLevel},
		{name: "sample collateral and CRLs", dir: pcsDir(t, "", nil), now: pcsSampleTime, revoke: true, want: noLevel},
		{name: "no TCB info", dir: pcsDir(t, "tcb?fmspc", nil), now: pcsSampleTime,
			want: "tdx/certification/v4/tcb?fmspc=50806f000000: no such file"},
		{name: "no PCK CRL", dir: pcsDir(t, "pckcrl", nil), now: pcsSampleTime, revoke: true, want: "PCK CRL"},
		{name: "no PCK CRL, revocations off", dir: pcsDir(t, "pckcrl", nil), now: pcsSampleTime, want: noLevel},
		{name: "no issuer chain", dir: pcsDir(t, "qe/identity.headers", nil), now: pcsSampleTime, want: "Sgx-Enclave-Identity-Issuer-Chain"},
		{name: "forged TCB info", now: pcsSampleTime, want: "tcb?fmspc=50806f000000: bad signature", dir: pcsDir(t, "", func(name string, body []byte) []byte {
			if strings.Contains(name, "tcb?fmspc") {
				return []byte(strings.Replace(string(body), `"tcbStatus":"OutOfDate"`, `"tcbStatus":"UpToDate"`, 1))
			}
			return body
		})},
		{name: "expired collateral", dir: pcsDir(t, "", nil), now: pcsSampleTime.AddDate(1, 0, 0), want: "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(Config{Now: at(tc.now), CheckRevocations: tc.revoke, CollateralDir: tc.dir})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v; want an untrusted quote saying %q", err, tc.want)
			}
		})
	}
}

func TestReadHeaderDump(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "h")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// curl -L -D: a redirect, then the response; HTTP/2 lower-case names.
	write("HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\nHTTP/2 200\r\ntcb-info-issuer-chain: a%20b\r\n\r\n")
	h, err := readHeaderDump(file)
	if err != nil || len(h["Tcb-Info-Issuer-Chain"]) != 1 || h["Tcb-Info-Issuer-Chain"][0] != "a%20b" || h["Location"] != nil {
		t.Fatalf("readHeaderDump = %v, %v", h, err)
	}
	write("Tcb-Info-Issuer-Chain: a\n\n")
	if _, err := readHeaderDump(file); err == nil || !strings.Contains(err.Error(), "not an HTTP status line") {
		t.Fatalf("readHeaderDump without a status line = %v", err)
	}
}

// The tcb_status claim is there only when the quote was checked against Intel's TCB info.
func TestTDXTCBStatusClaim(t *testing.T) {
	q, err := tdx.ParseQuote(tdxtestdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := tdx.PCKChain(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []string{"", "UpToDate", "SWHardeningNeeded"} {
		check := &tdxCheck{quote: q, chain: chain}
		if status != "" {
			check.tcb = &tdxTCB{Status: status, TCBDate: "2024-03-13T00:00:00Z", AdvisoryIDs: []string{"INTEL-SA-00837"}}
		}
		c := tdxClaims(check, false)
		got, ok := c.Raw["tcb_status"]
		if c.TDX.TCBStatus != status || ok != (status != "") || ok && got != status {
			t.Errorf("status %q: TCBStatus %q, raw %v (%v)", status, c.TDX.TCBStatus, got, ok)
		}
		if ids, _ := c.Raw["advisory_ids"].([]any); ok && (len(ids) != 1 || ids[0] != "INTEL-SA-00837" || c.Raw["tcb_date"] != "2024-03-13T00:00:00Z") {
			t.Errorf("status %q: advisory_ids %v, tcb_date %v", status, c.Raw["advisory_ids"], c.Raw["tcb_date"])
		}
	}
	// Without collateral (the default) the real sample verifies and has no tcb_status.
	v, err := New(Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	ev, rd := sampleTDXEvidence(t)
	c, err := v.Verify(context.Background(), Input{TEE: "tdx", Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Raw["tcb_status"]; ok {
		t.Fatalf("tcb_status without collateral: %v", c.Raw["tcb_status"])
	}
}
