// Package evidence holds the Go types of the TEE evidence that a KBS client sends in the
// "tee-evidence" field of a KBS protocol 0.4.0 attest request, and of the initdata that the TEE
// measured at launch, and reads the PEM certificate bundles (trusted roots) that snp and tdx
// are configured with. It only turns bytes into structs and back: no I/O, no verification.
//
// Forms (see docs/attestation.md):
//   - snp: {"attestation_report": <report>, "cert_chain": [<entry>...] | null}, where <report> is
//     the serde form of the virtee `sev` crate's AttestationReport (the form Trustee's verifier
//     parses) and <entry> is {"cert_type": "VCEK"|...|{"OTHER": "<guid>"}, "data": [<bytes>]}.
//     A report that this form cannot carry exactly is sent as a string: the standard base64 of
//     the raw 0x4A0-byte report (a Veil extension, accepted by Veil only).
//   - tdx: {"cc_eventlog": "<std base64>" | null, "quote": "<std base64 raw quote>"}.
package evidence

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// The TEE names used in the KBS protocol's "tee" field and in evidence dispatch.
const (
	TEESNP = "snp"
	TEETDX = "tdx"
)

// SNP is the evidence of an AMD SEV-SNP guest.
type SNP struct {
	// Report is the raw ATTESTATION_REPORT, layout.SNPReportSize bytes.
	Report []byte
	// CertChain is the certificate table that came with an extended report; nil when none did.
	CertChain []CertTableEntry
}

// CertTableEntry is one entry of the SNP certificate table (the GHCB extended-report blob).
type CertTableEntry struct {
	// Type is one of the CertType constants, or CertOther with GUID set.
	Type string
	// GUID is the entry's GUID; set for every entry, required for CertOther.
	GUID string
	// Data is the entry's content (a DER certificate for ARK, ASK, VCEK and VLEK).
	Data []byte
}

// The certificate types of the sev crate's CertType, with the GUIDs of the GHCB specification.
const (
	CertARK   = "ARK"
	CertASK   = "ASK"
	CertVCEK  = "VCEK"
	CertVLEK  = "VLEK"
	CertCRL   = "CRL"
	CertEmpty = "Empty"
	CertOther = "OTHER"
)

var certGUIDs = map[string]string{
	CertEmpty: "00000000-0000-0000-0000-000000000000",
	CertARK:   "c0b406a4-a803-4952-9743-3fb6014cd0ae",
	CertASK:   "4ab7b379-bbac-4fe4-a02f-05aef327c782",
	CertVCEK:  "63da758d-e664-4564-adc5-f4b93be8accd",
	CertVLEK:  "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
	CertCRL:   "92f81bc3-5811-4d3d-97ff-d19f88dc67ea",
}

// CertTypeOfGUID returns the certificate type named by a GUID (lower case, hyphenated), or
// CertOther.
func CertTypeOfGUID(guid string) string {
	for typ, g := range certGUIDs {
		if g == guid {
			return typ
		}
	}
	return CertOther
}

// GUIDOfCertType returns the GUID of a named certificate type, or "" for CertOther.
func GUIDOfCertType(typ string) string { return certGUIDs[typ] }

// ParseSNP reads SNP evidence: the report in the sev crate's serde form or as a base64 string.
func ParseSNP(data []byte) (*SNP, error) {
	r := &reader{b: data}
	out := &SNP{}
	err := r.object(func(key string) error {
		switch key {
		case "attestation_report":
			raw, err := readSNPReport(r)
			out.Report = raw
			return err
		case "cert_chain":
			if r.null() {
				out.CertChain = nil
				return nil
			}
			chain, err := readCertChain(r)
			out.CertChain = chain
			return err
		default:
			return r.skip()
		}
	})
	if err == nil {
		err = r.end()
	}
	if err == nil && out.Report == nil {
		err = errors.New("attestation_report is missing")
	}
	if err != nil {
		return nil, fmt.Errorf("snp evidence: %w", err)
	}
	return out, nil
}

func readCertChain(r *reader) ([]CertTableEntry, error) {
	if err := r.expect('['); err != nil {
		return nil, err
	}
	out := []CertTableEntry{}
	if r.peek() == ']' {
		r.i++
		return out, nil
	}
	for {
		e, err := readCertEntry(r)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", len(out), err)
		}
		out = append(out, e)
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return out, nil
		default:
			return nil, r.errorf("want ',' or ']'")
		}
	}
}

func readCertEntry(r *reader) (CertTableEntry, error) {
	var e CertTableEntry
	var typed, data bool
	err := r.object(func(key string) error {
		switch key {
		case "cert_type":
			typed = true
			return readCertType(r, &e)
		case "data":
			b, err := r.byteArray()
			e.Data, data = b, true
			return err
		default:
			return r.skip()
		}
	})
	if err == nil && (!typed || !data) {
		err = errors.New("a certificate entry needs cert_type and data")
	}
	return e, err
}

// readCertType reads "VCEK" (and the other names) or {"OTHER": "<guid>"}.
func readCertType(r *reader, e *CertTableEntry) error {
	if r.peek() == '"' {
		name, err := r.str()
		if err != nil {
			return err
		}
		guid, ok := certGUIDs[name]
		if !ok {
			return fmt.Errorf("unknown cert_type %q", name)
		}
		e.Type, e.GUID = name, guid
		return nil
	}
	err := r.object(func(key string) error {
		if key != CertOther {
			return fmt.Errorf("unknown cert_type variant %q", key)
		}
		guid, err := r.str()
		e.Type, e.GUID = CertOther, guid
		return err
	})
	if err == nil && e.GUID == "" {
		err = errors.New(`cert_type is neither a name nor {"OTHER": "<guid>"}`)
	}
	return err
}

// JSON returns the evidence in the sev crate's serde form (see the package documentation).
func (s SNP) JSON() ([]byte, error) {
	report, err := MarshalSNPReport(s.Report)
	if err != nil {
		return nil, err
	}
	out := append(append([]byte(`{"attestation_report":`), report...), `,"cert_chain":`...)
	if s.CertChain == nil {
		return append(out, "null}"...), nil
	}
	out = append(out, '[')
	for i, e := range s.CertChain {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"cert_type":`...)
		switch {
		case e.Type == CertOther || e.Type == "":
			if e.GUID == "" {
				return nil, errors.New("snp evidence: certificate entry of type OTHER without a GUID")
			}
			out = strconv.AppendQuote(append(out, `{"OTHER":`...), e.GUID)
			out = append(out, '}')
		case certGUIDs[e.Type] != "":
			out = strconv.AppendQuote(out, e.Type)
		default:
			return nil, fmt.Errorf("snp evidence: unknown certificate type %q", e.Type)
		}
		out = append(appendBytes(append(out, `,"data":`...), e.Data), '}')
	}
	return append(out, "]}"...), nil
}

// MarshalJSON is JSON.
func (s SNP) MarshalJSON() ([]byte, error) { return s.JSON() }

// UnmarshalJSON is ParseSNP.
func (s *SNP) UnmarshalJSON(data []byte) error {
	ev, err := ParseSNP(data)
	if err != nil {
		return err
	}
	*s = *ev
	return nil
}

// TDX is the evidence of an Intel TDX guest.
type TDX struct {
	// CCEventLog is the CC event log (the ACPI CCEL table's data), nil when not sent.
	CCEventLog []byte
	// Quote is the raw TDX quote (version 4).
	Quote []byte
}

// ParseTDX reads TDX evidence; a quote is required.
func ParseTDX(data []byte) (*TDX, error) {
	r := &reader{b: data}
	out := &TDX{}
	seen := false
	b64 := func(name string, dst *[]byte) error {
		s, err := r.str()
		if err != nil {
			return err
		}
		if *dst, err = base64.StdEncoding.DecodeString(s); err != nil {
			return fmt.Errorf("%s is not standard base64: %w", name, err)
		}
		return nil
	}
	err := r.object(func(key string) error {
		switch key {
		case "quote":
			seen = true
			return b64("quote", &out.Quote)
		case "cc_eventlog":
			if r.null() {
				out.CCEventLog = nil
				return nil
			}
			return b64("cc_eventlog", &out.CCEventLog)
		default:
			return r.skip()
		}
	})
	if err == nil {
		err = r.end()
	}
	if err == nil && !seen {
		err = errors.New("quote is missing")
	}
	if err != nil {
		return nil, fmt.Errorf("tdx evidence: %w", err)
	}
	return out, nil
}

// JSON returns {"cc_eventlog": <base64>|null, "quote": <base64>}.
func (t TDX) JSON() ([]byte, error) {
	out := []byte(`{"cc_eventlog":`)
	if t.CCEventLog == nil {
		out = append(out, "null"...)
	} else {
		out = strconv.AppendQuote(out, base64.StdEncoding.EncodeToString(t.CCEventLog))
	}
	out = strconv.AppendQuote(append(out, `,"quote":`...), base64.StdEncoding.EncodeToString(t.Quote))
	return append(out, '}'), nil
}

// MarshalJSON is JSON.
func (t TDX) MarshalJSON() ([]byte, error) { return t.JSON() }

// UnmarshalJSON is ParseTDX.
func (t *TDX) UnmarshalJSON(data []byte) error {
	ev, err := ParseTDX(data)
	if err != nil {
		return err
	}
	*t = *ev
	return nil
}
