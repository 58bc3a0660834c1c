package appraisal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// ReferenceValues are what a relying party accepts, per TEE. A TEE without a section gets the
// zero section: any measurement (a warning), no debug, default policy flags, no minimum TCB.
type ReferenceValues struct {
	SNP *SNPReference `json:"snp,omitempty" toml:"snp"`
	TDX *TDXReference `json:"tdx,omitempty" toml:"tdx"`
}

// SNPReference are the SEV-SNP reference values.
type SNPReference struct {
	// Measurements are the accepted launch measurements (hex, 48 bytes). Empty: any, with a
	// warning (executables 33).
	Measurements []string `json:"measurements,omitempty" toml:"measurements"`
	// AllowDebug accepts guests whose policy has the DEBUG bit.
	AllowDebug bool `json:"allow_debug,omitempty" toml:"allow_debug"`
	// AllowedPolicyFlags are the permissive guest-policy flags that may be set: "smt",
	// "migrate_ma", "cxl_allowed" ("debug" is governed by AllowDebug). nil means ["smt"].
	AllowedPolicyFlags []string `json:"allowed_policy_flags,omitempty" toml:"allowed_policy_flags"`
	// RequiredPolicyFlags are restrictive flags that must be set: "single_socket",
	// "mem_aes_256_xts", "rapl_dis", "ciphertext_hiding", "page_swap_disable".
	RequiredPolicyFlags []string `json:"required_policy_flags,omitempty" toml:"required_policy_flags"`
	// MinimumTCB is the component-wise minimum REPORTED_TCB; nil: not checked.
	MinimumTCB *TCB `json:"minimum_tcb,omitempty" toml:"minimum_tcb"`
	// MinimumGuestSVN is the minimum GUEST_SVN.
	MinimumGuestSVN uint32 `json:"minimum_guest_svn,omitempty" toml:"minimum_guest_svn"`
	// VMPL is the VMPL the report must come from; nil: any.
	VMPL *uint32 `json:"vmpl,omitempty" toml:"vmpl"`
	// AllowSimulated makes verified sim evidence affirming; otherwise it is a warning
	// (hardware 32). Whether sim evidence verifies at all is the verifier's configuration.
	AllowSimulated bool `json:"allow_simulated,omitempty" toml:"allow_simulated"`
}

// TCB is a minimum SNP TCB; FMC is compared only when set (Turin).
type TCB struct {
	Bootloader uint8  `json:"bootloader" toml:"bootloader"`
	TEE        uint8  `json:"tee" toml:"tee"`
	SNP        uint8  `json:"snp" toml:"snp"`
	Microcode  uint8  `json:"microcode" toml:"microcode"`
	FMC        *uint8 `json:"fmc,omitempty" toml:"fmc"`
}

// TDXReference are the TDX reference values. Every list is a set of accepted values (hex, 48
// bytes); an empty list accepts any value. With no MRTD list, executables is a warning (33).
type TDXReference struct {
	MRTD  []string `json:"mr_td,omitempty" toml:"mr_td"`
	RTMR0 []string `json:"rtmr_0,omitempty" toml:"rtmr_0"`
	RTMR1 []string `json:"rtmr_1,omitempty" toml:"rtmr_1"`
	RTMR2 []string `json:"rtmr_2,omitempty" toml:"rtmr_2"`
	RTMR3 []string `json:"rtmr_3,omitempty" toml:"rtmr_3"`
	// AllowDebug accepts TDs with TDATTRIBUTES.DEBUG.
	AllowDebug bool `json:"allow_debug,omitempty" toml:"allow_debug"`
	// MinimumTEETCBSVN is the byte-wise minimum TEE_TCB_SVN (hex, 16 bytes); "": not checked.
	MinimumTEETCBSVN string `json:"minimum_tee_tcb_svn,omitempty" toml:"minimum_tee_tcb_svn"`
	// AllowSimulated: as for SNP.
	AllowSimulated bool `json:"allow_simulated,omitempty" toml:"allow_simulated"`
	// AllowedTCBStatuses are the TCB statuses (Intel's names: UpToDate, SWHardeningNeeded, …)
	// accepted in the tcb_status claim. Non-empty: evidence without the claim (not checked
	// against Intel's TCB info) or with another status is contraindicated. Empty: evidence
	// without the claim passes, and a claim other than UpToDate is contraindicated. Revoked is
	// refused by the verifier and cannot be listed.
	AllowedTCBStatuses []string `json:"allowed_tcb_statuses,omitempty" toml:"allowed_tcb_statuses"`
}

// tdxTCBStatuses are the TCB statuses of Intel's TCB info (PCS API v4).
var tdxTCBStatuses = []string{
	"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
	"OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
}

var (
	permissiveFlags  = []string{"smt", "migrate_ma", "cxl_allowed"}
	restrictiveFlags = []string{"single_socket", "mem_aes_256_xts", "rapl_dis", "ciphertext_hiding", "page_swap_disable"}
)

// LoadReferenceValues reads a file: TOML for ".toml", JSON otherwise.
func LoadReferenceValues(path string) (*ReferenceValues, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reference values: %w", err)
	}
	format := "json"
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		format = "toml"
	}
	return ParseReferenceValues(data, format)
}

// ParseReferenceValues reads reference values in format "json" or "toml"; unknown keys are
// errors, so that a misspelt key does not silently accept everything.
func ParseReferenceValues(data []byte, format string) (*ReferenceValues, error) {
	rv := &ReferenceValues{}
	switch format {
	case "json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(rv); err != nil {
			return nil, fmt.Errorf("reference values (JSON): %w", err)
		}
	case "toml":
		md, err := toml.Decode(string(data), rv)
		if err != nil {
			return nil, fmt.Errorf("reference values (TOML): %w", err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return nil, fmt.Errorf("reference values (TOML): unknown keys %v", und)
		}
	default:
		return nil, fmt.Errorf("reference values: unknown format %q (json or toml)", format)
	}
	if err := rv.Validate(); err != nil {
		return nil, err
	}
	return rv, nil
}

// Validate checks hex sizes and flag names, all at once.
func (rv *ReferenceValues) Validate() error {
	var errs []error
	hexes := func(field string, values []string, size int) {
		for _, v := range values {
			if b, err := hex.DecodeString(v); err != nil || len(b) != size {
				errs = append(errs, fmt.Errorf("%s: %q is not %d bytes of hex", field, v, size))
			}
		}
	}
	flags := func(field string, values, known []string) {
		for _, v := range values {
			if !contains(known, v) {
				errs = append(errs, fmt.Errorf("%s: unknown flag %q (known: %s)", field, v, strings.Join(known, ", ")))
			}
		}
	}
	if s := rv.SNP; s != nil {
		hexes("snp.measurements", s.Measurements, 48)
		flags("snp.allowed_policy_flags", s.AllowedPolicyFlags, append([]string{"debug"}, permissiveFlags...))
		flags("snp.required_policy_flags", s.RequiredPolicyFlags, restrictiveFlags)
	}
	if t := rv.TDX; t != nil {
		for name, list := range map[string][]string{"mr_td": t.MRTD, "rtmr_0": t.RTMR0, "rtmr_1": t.RTMR1, "rtmr_2": t.RTMR2, "rtmr_3": t.RTMR3} {
			hexes("tdx."+name, list, 48)
		}
		if t.MinimumTEETCBSVN != "" {
			hexes("tdx.minimum_tee_tcb_svn", []string{t.MinimumTEETCBSVN}, 16)
		}
		for _, s := range t.AllowedTCBStatuses {
			if !contains(tdxTCBStatuses, s) {
				errs = append(errs, fmt.Errorf("tdx.allowed_tcb_statuses: unknown TCB status %q (known: %s)", s, strings.Join(tdxTCBStatuses, ", ")))
			}
			if s == "Revoked" {
				errs = append(errs, errors.New("tdx.allowed_tcb_statuses: Revoked cannot be allowed (the verifier refuses a revoked TCB)"))
			}
		}
	}
	return errors.Join(errs...)
}

// regoInput returns the reference section of a TEE as Rego sees it: lower-case hex, defaults
// filled in, every key present.
func (rv *ReferenceValues) regoInput(tee string) map[string]any {
	lower := func(in []string) []any {
		out := make([]any, 0, len(in))
		for _, v := range in {
			out = append(out, strings.ToLower(v))
		}
		return out
	}
	strs := func(in []string) []any {
		out := make([]any, 0, len(in))
		for _, v := range in {
			out = append(out, v)
		}
		return out
	}
	switch tee {
	case "snp":
		s := SNPReference{}
		if rv != nil && rv.SNP != nil {
			s = *rv.SNP
		}
		if s.AllowedPolicyFlags == nil {
			s.AllowedPolicyFlags = []string{"smt"}
		}
		m := map[string]any{
			"measurements": lower(s.Measurements), "allow_debug": s.AllowDebug || contains(s.AllowedPolicyFlags, "debug"),
			"allowed_policy_flags": strs(s.AllowedPolicyFlags), "required_policy_flags": strs(s.RequiredPolicyFlags),
			"minimum_guest_svn": int64(s.MinimumGuestSVN), "vmpl": nil, "minimum_tcb": nil,
			"allow_simulated": s.AllowSimulated,
		}
		if s.VMPL != nil {
			m["vmpl"] = int64(*s.VMPL)
		}
		if t := s.MinimumTCB; t != nil {
			tcb := map[string]any{"bootloader": int64(t.Bootloader), "tee": int64(t.TEE), "snp": int64(t.SNP), "microcode": int64(t.Microcode)}
			if t.FMC != nil {
				tcb["fmc"] = int64(*t.FMC)
			}
			m["minimum_tcb"] = tcb
		}
		return m
	default:
		t := TDXReference{}
		if rv != nil && rv.TDX != nil {
			t = *rv.TDX
		}
		return map[string]any{
			"mr_td": lower(t.MRTD), "rtmr_0": lower(t.RTMR0), "rtmr_1": lower(t.RTMR1),
			"rtmr_2": lower(t.RTMR2), "rtmr_3": lower(t.RTMR3), "allow_debug": t.AllowDebug,
			"minimum_tee_tcb_svn": strings.ToLower(t.MinimumTEETCBSVN), "allow_simulated": t.AllowSimulated,
			"allowed_tcb_statuses": strs(t.AllowedTCBStatuses),
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
