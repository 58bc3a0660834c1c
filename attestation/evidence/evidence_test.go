package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/verify/testdata"

	"github.com/veil-runtime/veil/attestation/layout"
)

// milanReport is go-sev-guest's real Milan sample report (version 2).
func milanReport(t testing.TB) []byte {
	t.Helper()
	raw := testdata.AttestationBytes
	if len(raw) < layout.SNPReportSize {
		t.Fatalf("sample report has %d bytes", len(raw))
	}
	return bytes.Clone(raw[:layout.SNPReportSize])
}

func TestSNPReportRoundTrip(t *testing.T) {
	milan := milanReport(t)
	turin := bytes.Clone(milan)
	turin[0] = 3 // version 3
	turin[0x188], turin[0x189], turin[0x18A] = 0x1A, 0x02, 0x01
	for _, off := range []int{0x38, 0x180, 0x1E0, 0x1F0} { // Turin TCB layout: FMC first, 4..6 reserved
		copy(turin[off:off+8], []byte{7, 3, 0, 8, 0, 0, 0, 115})
	}
	mit := bytes.Clone(milan)
	mit[0] = 5
	mit[0x188], mit[0x189], mit[0x18A] = 0x19, 0x01, 0x01
	mit[0x1F8] = 0x42
	reserved := bytes.Clone(milan)
	reserved[0x4C] = 1 // a reserved byte the sev form cannot carry
	tests := []struct {
		name       string
		raw        []byte
		wantString bool
		wantFMC    bool
	}{
		{name: "milan v2", raw: milan},
		{name: "turin v3", raw: turin, wantFMC: true},
		{name: "v5 with mitigation vector", raw: mit},
		{name: "reserved byte set", raw: reserved, wantString: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js, err := MarshalSNPReport(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if isString := js[0] == '"'; isString != tc.wantString {
				t.Fatalf("string form = %v, want %v: %.80s", isString, tc.wantString, js)
			}
			if !tc.wantString {
				var m map[string]any
				if err := json.Unmarshal(js, &m); err != nil {
					t.Fatal(err)
				}
				fmc := m["current_tcb"].(map[string]any)["fmc"]
				if (fmc != nil) != tc.wantFMC {
					t.Errorf("current_tcb.fmc = %v, want set: %v", fmc, tc.wantFMC)
				}
			}
			back, err := UnmarshalSNPReport(js)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, tc.raw) {
				t.Fatal("round trip changed the report")
			}
		})
	}
}

// The field names and shapes Trustee's verifier deserialises (sev crate AttestationReport).
func TestSNPReportSevForm(t *testing.T) {
	js, err := MarshalSNPReport(milanReport(t))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"version", "guest_svn", "policy", "family_id", "image_id", "vmpl",
		"sig_algo", "current_tcb", "plat_info", "key_info", "report_data", "measurement", "host_data",
		"id_key_digest", "author_key_digest", "report_id", "report_id_ma", "reported_tcb",
		"cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "chip_id", "committed_tcb", "current",
		"committed", "launch_tcb", "signature"} {
		if _, ok := m[key]; !ok {
			t.Errorf("missing key %q", key)
		}
	}
	if got := string(m["cpuid_fam_id"]); got != "null" {
		t.Errorf("cpuid_fam_id of a v2 report = %s, want null", got)
	}
	if !strings.HasPrefix(string(m["report_data"]), "[1,2,3,4,5,") {
		t.Errorf("report_data = %.40s, want the sample's 1,2,3,4,5,...", m["report_data"])
	}
	var sig map[string][]int
	if err := json.Unmarshal(m["signature"], &sig); err != nil || len(sig["r"]) != 72 || len(sig["s"]) != 72 {
		t.Errorf("signature = %.60s (%v), want {r:[72], s:[72]}", m["signature"], err)
	}
}

func TestSNPReportErrors(t *testing.T) {
	good, err := MarshalSNPReport(milanReport(t))
	if err != nil {
		t.Fatal(err)
	}
	short := strings.Replace(string(good), `"host_data":[`, `"host_data":[1,`, 1)
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "host_data too long", in: short, wantErr: "host_data: has 33 bytes, want 32"},
		{name: "byte out of range", in: strings.Replace(string(good), `"report_data":[1,`, `"report_data":[256,`, 1), wantErr: "report_data: byte 0: offset 273: integer out of range for 8 bits"},
		{name: "negative", in: strings.Replace(string(good), `"report_data":[1,`, `"report_data":[-1,`, 1), wantErr: "want an unsigned integer"},
		{name: "base64 wrong size", in: `"AAAA"`, wantErr: "report has 3 bytes"},
		{name: "base64 invalid", in: `"!!"`, wantErr: "not standard base64"},
		{name: "not an object", in: `[1,2]`, wantErr: "want '{'"},
		{name: "missing field", in: strings.Replace(string(good), `"vmpl":0,`, ``, 1), wantErr: "vmpl is missing"},
		{name: "tcb without snp", in: strings.Replace(string(good), `"snp":5,`, ``, 1), wantErr: "a TCB needs bootloader, tee, snp and microcode"},
		{name: "trailing data", in: string(good) + "x", wantErr: "trailing data"},
		{name: "unknown key with bad value", in: strings.Replace(string(good), `{"version"`, `{"x":[1,}, "version"`, 1), wantErr: "invalid JSON value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalSNPReport(json.RawMessage(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestSNPEvidence(t *testing.T) {
	ev := SNP{Report: milanReport(t), CertChain: []CertTableEntry{
		{Type: CertVCEK, Data: []byte{0x30, 0x82}},
		{Type: CertOther, GUID: "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", Data: []byte{1}},
	}}
	js, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cert_type":"VCEK","data":[48,130]`, `"cert_type":{"OTHER":"ecae0c0f-9502-43b1-afa2-0ae2e0d565b6"}`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("evidence lacks %s", want)
		}
	}
	var back SNP
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Report, ev.Report) || len(back.CertChain) != 2 || back.CertChain[0].GUID != GUIDOfCertType(CertVCEK) {
		t.Fatalf("round trip = %+v", back.CertChain)
	}
	js, _ = json.Marshal(SNP{Report: ev.Report})
	if !strings.HasSuffix(string(js), `"cert_chain":null}`) {
		t.Errorf("no chain should be null: %s", js[len(js)-30:])
	}
	bad := []struct{ name, in, wantErr string }{
		{"no report", `{"cert_chain":null}`, "attestation_report is missing"},
		{"unknown cert type", `{"attestation_report":"` + base64.StdEncoding.EncodeToString(ev.Report) + `","cert_chain":[{"cert_type":"XYZ","data":[]}]}`, `unknown cert_type "XYZ"`},
		{"bad other", `{"attestation_report":"` + base64.StdEncoding.EncodeToString(ev.Report) + `","cert_chain":[{"cert_type":{"A":"b"},"data":[]}]}`, `unknown cert_type variant "A"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			var s SNP
			if err := json.Unmarshal([]byte(tc.in), &s); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestTDXEvidence(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    TDX
		wantErr string
	}{
		{name: "quote only", in: `{"cc_eventlog":null,"quote":"AQID"}`, want: TDX{Quote: []byte{1, 2, 3}}},
		{name: "with event log", in: `{"cc_eventlog":"BA==","quote":"AQID"}`, want: TDX{CCEventLog: []byte{4}, Quote: []byte{1, 2, 3}}},
		{name: "no quote", in: `{"cc_eventlog":null}`, wantErr: "quote is missing"},
		{name: "bad quote", in: `{"quote":"%%"}`, wantErr: "quote is not standard base64"},
		{name: "bad log", in: `{"quote":"AQID","cc_eventlog":"%"}`, wantErr: "cc_eventlog is not standard base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got TDX
			err := json.Unmarshal([]byte(tc.in), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got.Quote, tc.want.Quote) || !bytes.Equal(got.CCEventLog, tc.want.CCEventLog) {
				t.Fatalf("got %+v, %v", got, err)
			}
			js, _ := json.Marshal(got)
			if tc.want.CCEventLog == nil && string(js) != tc.in {
				t.Errorf("marshal = %s, want %s", js, tc.in)
			}
		})
	}
}

// Keys the reader does not know are skipped when they hold valid JSON; keys match exactly.
func TestReaderLeniency(t *testing.T) {
	good, err := SNP{Report: milanReport(t)}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "unknown keys", in: strings.Replace(string(good), `{"attestation_report":`, `{"x":{"a":["\"]",1.5e3,null,true]},"attestation_report":`, 1)},
		{name: "escaped key", in: strings.Replace(string(good), `"cert_chain"`, `"cert\u005fchain"`, 1)},
		{name: "white space", in: strings.ReplaceAll(string(good), ",", " ,\n ")},
		{name: "upper-case key is unknown", in: strings.Replace(string(good), `"attestation_report"`, `"ATTESTATION_REPORT"`, 1), wantErr: "attestation_report is missing"},
		{name: "control character", in: strings.Replace(string(good), `"cert_chain"`, "\"cert\n\"", 1), wantErr: "control character"},
		{name: "deep nesting", in: strings.Replace(string(good), `{"attestation_report":`, `{"x":`+strings.Repeat("[", 100)+`,"attestation_report":`, 1), wantErr: "nested too deep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseSNP([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(ev.Report, milanReport(t)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
