package evidence

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/veil-runtime/veil/attestation/layout"
)

// The SNP report's JSON form is the serde form of the virtee sev crate's AttestationReport (sev
// 6.x), the form Trustee's SNP verifier deserialises: integers, byte arrays as arrays of
// numbers, TCB_VERSIONs as {"fmc": n|null, "bootloader", "tee", "snp", "microcode"} (fmc set
// in the Turin layout only), versions as {"major", "minor", "build"}, the signature as
// {"r": [72], "s": [72]} (little-endian). launch_mit_vector and current_mit_vector (optional
// fields of newer sev versions; older ones ignore unknown keys) are written only when non-zero.

type fieldKind int

const (
	kU32 fieldKind = iota
	kU64
	kBytes
	kTCB
	kVersion
	kSig
	kOptU8  // null, or a byte (cpuid_*: versions 3 and later)
	kOptU64 // absent or null when zero (mitigation vectors)
)

type reportField struct {
	name string
	off  int
	size int
	kind fieldKind
}

var reportFields = []reportField{
	{"version", 0x00, 4, kU32}, {"guest_svn", 0x04, 4, kU32}, {"policy", 0x08, 8, kU64},
	{"family_id", 0x10, 16, kBytes}, {"image_id", 0x20, 16, kBytes}, {"vmpl", 0x30, 4, kU32},
	{"sig_algo", 0x34, 4, kU32}, {"current_tcb", 0x38, 8, kTCB}, {"plat_info", 0x40, 8, kU64},
	{"key_info", 0x48, 4, kU32}, {"report_data", 0x50, 64, kBytes}, {"measurement", 0x90, 48, kBytes},
	{"host_data", layout.SNPHostDataOffset, layout.SNPHostDataSize, kBytes}, {"id_key_digest", 0xE0, 48, kBytes},
	{"author_key_digest", 0x110, 48, kBytes}, {"report_id", 0x140, 32, kBytes},
	{"report_id_ma", 0x160, 32, kBytes}, {"reported_tcb", 0x180, 8, kTCB},
	{"cpuid_fam_id", 0x188, 1, kOptU8}, {"cpuid_mod_id", 0x189, 1, kOptU8}, {"cpuid_step", 0x18A, 1, kOptU8},
	{"chip_id", 0x1A0, 64, kBytes}, {"committed_tcb", 0x1E0, 8, kTCB}, {"current", 0x1E8, 3, kVersion},
	{"committed", 0x1EC, 3, kVersion}, {"launch_tcb", 0x1F0, 8, kTCB},
	{"launch_mit_vector", 0x1F8, 8, kOptU64}, {"current_mit_vector", 0x200, 8, kOptU64},
	{"signature", 0x2A0, 144, kSig},
}

var fieldIndex = func() map[string]int {
	m := make(map[string]int, len(reportFields))
	for i, f := range reportFields {
		m[f.name] = i
	}
	return m
}()

// MarshalSNPReport returns the JSON of a raw SNP report: the sev crate's serde form when it
// carries every byte of the report, else a JSON string with the standard base64 of the report.
func MarshalSNPReport(raw []byte) (json.RawMessage, error) {
	if len(raw) != layout.SNPReportSize {
		return nil, fmt.Errorf("snp report has %d bytes, want %d", len(raw), layout.SNPReportSize)
	}
	form := appendSNPReport(make([]byte, 0, 5200), raw)
	if back, err := parseSNPReport(&reader{b: form}); err == nil && bytes.Equal(back, raw) {
		return form, nil
	}
	return strconv.AppendQuote(nil, base64.StdEncoding.EncodeToString(raw)), nil
}

// UnmarshalSNPReport accepts either form that MarshalSNPReport writes and returns the raw report.
func UnmarshalSNPReport(data []byte) ([]byte, error) {
	r := &reader{b: data}
	raw, err := readSNPReport(r)
	if err != nil {
		return nil, err
	}
	return raw, r.end()
}

// readSNPReport reads the report in either form.
func readSNPReport(r *reader) ([]byte, error) {
	if r.peek() != '"' {
		return parseSNPReport(r)
	}
	s, err := r.str()
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("report string is not standard base64: %w", err)
	}
	if len(raw) != layout.SNPReportSize {
		return nil, fmt.Errorf("report has %d bytes, want %d", len(raw), layout.SNPReportSize)
	}
	return raw, nil
}

func parseSNPReport(r *reader) ([]byte, error) {
	raw := make([]byte, layout.SNPReportSize)
	var seen [32]bool
	err := r.object(func(key string) error {
		i, ok := fieldIndex[key]
		if !ok {
			return r.skip()
		}
		seen[i] = true
		return readField(r, reportFields[i], raw)
	})
	if err != nil {
		return nil, err
	}
	var missing []error
	for i, f := range reportFields {
		if !seen[i] && f.kind != kOptU64 && f.kind != kOptU8 {
			missing = append(missing, fmt.Errorf("%s is missing", f.name))
		}
	}
	if len(missing) > 0 {
		return nil, errors.Join(missing...)
	}
	if binary.LittleEndian.Uint32(raw) < 3 {
		raw[0x188], raw[0x189], raw[0x18A] = 0, 0, 0 // no CPUID fields before version 3
	} else if !seen[fieldIndex["cpuid_fam_id"]] || !seen[fieldIndex["cpuid_mod_id"]] || !seen[fieldIndex["cpuid_step"]] {
		return nil, errors.New("a version 3 or later report needs cpuid_fam_id, cpuid_mod_id and cpuid_step")
	}
	return raw, nil
}

func readField(r *reader, f reportField, raw []byte) error {
	dst := raw[f.off : f.off+f.size]
	switch f.kind {
	case kU32, kU64, kOptU64, kOptU8:
		if (f.kind == kOptU64 || f.kind == kOptU8) && r.null() {
			return nil
		}
		v, err := r.uint(8 * f.size)
		if err != nil {
			return err
		}
		for i := range dst {
			dst[i] = byte(v >> (8 * i))
		}
		return nil
	case kBytes:
		b, err := r.byteArray()
		if err == nil && len(b) != f.size {
			err = fmt.Errorf("has %d bytes, want %d", len(b), f.size)
		}
		copy(dst, b)
		return err
	case kTCB:
		return readTCB(r, dst)
	case kVersion:
		return readVersion(r, dst)
	default:
		return readSig(r, dst)
	}
}

// readTCB reads a TCB_VERSION: the Turin layout when fmc is a number, the older one otherwise.
func readTCB(r *reader, dst []byte) error {
	var fmc, bl, tee, snp, ucode uint64
	turin, n := false, 0
	err := r.object(func(key string) error {
		var p *uint64
		switch key {
		case "fmc":
			if r.null() {
				return nil
			}
			p, turin = &fmc, true
		case "bootloader":
			p = &bl
		case "tee":
			p = &tee
		case "snp":
			p = &snp
		case "microcode":
			p = &ucode
		default:
			return r.skip()
		}
		if p != &fmc {
			n++
		}
		v, err := r.uint(8)
		*p = v
		return err
	})
	if err != nil {
		return err
	}
	if n != 4 {
		return errors.New("a TCB needs bootloader, tee, snp and microcode")
	}
	if turin {
		copy(dst, []byte{byte(fmc), byte(bl), byte(tee), byte(snp), 0, 0, 0, byte(ucode)})
	} else {
		copy(dst, []byte{byte(bl), byte(tee), 0, 0, 0, 0, byte(snp), byte(ucode)})
	}
	return nil
}

// readVersion reads {"major", "minor", "build"} into the ABI order build, minor, major.
func readVersion(r *reader, dst []byte) error {
	n := 0
	err := r.object(func(key string) error {
		var pos int
		switch key {
		case "build":
			pos = 0
		case "minor":
			pos = 1
		case "major":
			pos = 2
		default:
			return r.skip()
		}
		v, err := r.uint(8)
		dst[pos] = byte(v)
		n++
		return err
	})
	if err == nil && n != 3 {
		err = errors.New("a version needs major, minor and build")
	}
	return err
}

func readSig(r *reader, dst []byte) error {
	n := 0
	err := r.object(func(key string) error {
		var off int
		switch key {
		case "r":
			off = 0
		case "s":
			off = 72
		default:
			return r.skip()
		}
		b, err := r.byteArray()
		if err == nil && len(b) != 72 {
			err = fmt.Errorf("has %d bytes, want 72", len(b))
		}
		copy(dst[off:], b)
		n++
		return err
	})
	if err == nil && n != 2 {
		err = errors.New("a signature needs r and s")
	}
	return err
}

// appendSNPReport writes the serde form of a raw report.
func appendSNPReport(out, raw []byte) []byte {
	turin := turinLayout(raw)
	v3 := binary.LittleEndian.Uint32(raw) >= 3
	out = append(out, '{')
	for i, f := range reportFields {
		v := raw[f.off : f.off+f.size]
		if f.kind == kOptU64 && allZero(v) {
			continue
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(strconv.AppendQuote(out, f.name), ':')
		switch f.kind {
		case kU32, kU64, kOptU64:
			var n uint64
			for j := len(v) - 1; j >= 0; j-- {
				n = n<<8 | uint64(v[j])
			}
			out = strconv.AppendUint(out, n, 10)
		case kOptU8:
			if !v3 {
				out = append(out, "null"...)
				continue
			}
			out = strconv.AppendUint(out, uint64(v[0]), 10)
		case kBytes:
			out = appendBytes(out, v)
		case kTCB:
			out = appendTCB(out, v, turin)
		case kVersion:
			out = fmt.Appendf(out, `{"major":%d,"minor":%d,"build":%d}`, v[2], v[1], v[0])
		case kSig:
			out = appendBytes(append(out, `{"r":`...), v[:72])
			out = append(appendBytes(append(out, `,"s":`...), v[72:]), '}')
		}
	}
	return append(out, '}')
}

func appendTCB(out, b []byte, turin bool) []byte {
	if turin {
		return fmt.Appendf(out, `{"fmc":%d,"bootloader":%d,"tee":%d,"snp":%d,"microcode":%d}`, b[0], b[1], b[2], b[3], b[7])
	}
	return fmt.Appendf(out, `{"fmc":null,"bootloader":%d,"tee":%d,"snp":%d,"microcode":%d}`, b[0], b[1], b[6], b[7])
}

// appendBytes writes a byte string as a JSON array of numbers.
func appendBytes(out, b []byte) []byte {
	out = append(out, '[')
	for i, v := range b {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendUint(out, uint64(v), 10)
	}
	return append(out, ']')
}

// turinLayout reports whether the TCB fields of a raw report use the Zen 5 layout, as the sev
// crate decides it: from CPUID family for version 3 and later, from CHIP_ID for version 2.
func turinLayout(raw []byte) bool {
	if binary.LittleEndian.Uint32(raw[0:4]) >= 3 {
		return raw[0x188] >= 0x1A
	}
	chip := raw[0x1A0:0x1E0]
	return !allZero(chip) && allZero(chip[8:])
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}
