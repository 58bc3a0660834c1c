package sim_test

import (
	"bufio"
	"errors"
	"math/big"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	tdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/veil-runtime/veil/attestation/sim"
)

// dirPCS serves a directory WriteDir wrote, as Intel PCS would: the file named by the URL's
// path and query, its headers from FILE.headers.
type dirPCS struct{ dir string }

func (d dirPCS) Get(link string) (map[string][]string, []byte, error) {
	u, err := url.Parse(link)
	if err != nil {
		return nil, nil, err
	}
	rel := strings.TrimPrefix(u.Path, "/")
	if u.RawQuery != "" {
		rel += "?" + u.RawQuery
	}
	file := filepath.Join(d.dir, filepath.FromSlash(rel))
	body, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, errors.New("404 " + link)
	}
	h := map[string][]string{}
	if raw, err := os.ReadFile(file + ".headers"); err == nil {
		r := textproto.NewReader(bufio.NewReader(strings.NewReader(strings.ReplaceAll(string(raw), "\r\n", "\n"))))
		if _, err := r.ReadLine(); err != nil {
			return nil, nil, err
		}
		mh, err := r.ReadMIMEHeader()
		if err != nil {
			return nil, nil, err
		}
		h = mh
	}
	return h, body, nil
}

// The sim PCS's collateral is in Intel's form: go-tdx-guest, an independent implementation,
// fetches it, checks its issuer chains, signatures and CRLs, and accepts the sim quote as
// UpToDate; with the PCK on the PCK CRL it refuses it.
func TestPCSWithGoTdxGuest(t *testing.T) {
	a := authority(t)
	now := time.Now()
	p, err := a.TDX.PCS(now)
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.TDX.TCBInfo(now)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := a.TDX.QEIdentity(now)
	if err != nil {
		t.Fatal(err)
	}
	quote, err := a.TDX.Quote(sim.TDXLaunch{}, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := abi.QuoteToProto(quote)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		crl  sim.CRLOptions
		want string
	}{
		{name: "up to date"},
		{name: "PCK revoked", crl: sim.CRLOptions{Revoked: []*big.Int{a.TDX.PCK.SerialNumber}}, want: "PCK Leaf certificate in PCK certificate chain was revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := p.WriteDir(dir, info, qe, tc.crl, sim.CRLOptions{}); err != nil {
				t.Fatal(err)
			}
			err := tdxverify.TdxQuote(q, &tdxverify.Options{TrustedRoots: a.TDXRoots(), GetCollateral: true,
				CheckRevocations: true, Getter: dirPCS{dir}, Now: now})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("go-tdx-guest TdxQuote = %v, want %q", err, tc.want)
			}
		})
	}
}

// An authority read from its file has no CA keys: no PCS, no VLEK signer.
func TestPCSNeedsCAKeys(t *testing.T) {
	pemData, err := authority(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := sim.ParseAuthority(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.TDX.PCS(time.Now()); err == nil || !strings.Contains(err.Error(), "no CA keys") {
		t.Fatalf("PCS from a loaded authority = %v", err)
	}
	if _, err := loaded.SNP.VLEKSigner(nil, "csp", time.Now()); err == nil || !strings.Contains(err.Error(), "no ARK key") {
		t.Fatalf("VLEKSigner from a loaded authority = %v", err)
	}
}
