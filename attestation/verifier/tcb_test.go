package verifier

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
)

// Without a minimum_tcb in the reference values, the SNP TCB is still checked here: the report
// must claim the TCB its VCEK certifies (REPORTED_TCB equal to the VCEK's, CURRENT_TCB not below
// it, COMMITTED_TCB not above CURRENT_TCB). A report signed by the chip's own VCEK but claiming
// another TCB is refused. What it does not check is how old that TCB is: that is minimum_tcb.
func TestSNPTCBAgainstVCEK(t *testing.T) {
	a := simAuthority(t)
	v, err := New(Config{SimSNPRoots: a.SNPRoots(), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	ev := simSNPEvidence(t, a, sim.SNPLaunch{}, rd)
	certified := binary.LittleEndian.Uint64(mustReport(t, ev)[0x180:])
	higher := certified + 1<<48 // SNP SPL + 1
	lower := certified - 1<<48
	tests := []struct {
		name string
		off  int
		tcb  uint64
		want string
	}{
		{name: "reported TCB above the VCEK's", off: 0x180, tcb: higher, want: "does not match"},
		{name: "reported TCB below the VCEK's", off: 0x180, tcb: lower, want: "does not match"},
		{name: "current TCB below the VCEK's", off: 0x38, tcb: lower, want: "CURRENT_TCB {BlSpl:4 TeeSpl:0 Spl4:0 Spl5:0 Spl6:0 Spl7:0 SnpSpl:21 UcodeSpl:213} is lower than the TCB of the V[CL]EK certificate"},
		{name: "committed TCB above current", off: 0x1E0, tcb: higher, want: "lower than the report's COMMITTED_TCB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			edited := editSNP(t, ev, func(r []byte) {
				binary.LittleEndian.PutUint64(r[tc.off:], tc.tcb)
				if err := a.SNP.SignReport(r); err != nil {
					t.Fatal(err)
				}
			})
			_, err := v.Verify(context.Background(), Input{TEE: "snp", Evidence: edited, ReportData: rd})
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v; want an untrusted TCB saying %q", err, tc.want)
			}
		})
	}
}

func mustReport(t *testing.T, ev []byte) []byte {
	t.Helper()
	var report []byte
	editSNP(t, ev, func(r []byte) { report = append([]byte(nil), r...) })
	return report
}
