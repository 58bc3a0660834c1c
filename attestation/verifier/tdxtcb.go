package verifier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// Intel's TCB statuses (TCB info v3, QE identity v2), as go-tdx-guest's pcs package names them.
const (
	statusUpToDate          = string(pcs.TcbComponentStatusUpToDate)
	statusSWHardening       = string(pcs.TcbComponentStatusSwHardeningNeeded)
	statusConfig            = string(pcs.TcbComponentStatusConfigurationNeeded)
	statusConfigSWHardening = string(pcs.TcbComponentStatusConfigurationAndSWHardeningNeeded)
	statusOutOfDate         = string(pcs.TcbComponentStatusOutOfDate)
	statusOutOfDateConfig   = string(pcs.TcbComponentStatusOutOfDateConfigurationNeeded)
	statusRevoked           = string(pcs.TcbComponentStatusRevoked)
)

// tdxTCB is the outcome of matching a quote against Intel's TCB info and QE identity.
type tdxTCB struct {
	// Status is the combined status (platform, TDX module, QE), Intel's name.
	Status string
	// Platform, Module and QE are the statuses of each matching level; Module is "" when the
	// quote's TDX module has no identity of its own in the TCB info (TEE_TCB_SVN[1] = 0).
	Platform, Module, QE string
	// TCBDate is the date of the matching platform TCB level.
	TCBDate string
	// AdvisoryIDs are the Intel security advisories of the matching levels (platform, TDX
	// module, QE), each once, in that order.
	AdvisoryIDs []string
}

// errNoTCBLevel: the quote is below every TCB level of the TCB info (Intel: TCB not supported).
var errNoTCBLevel = errors.New("no matching TCB level")

// matchTDXTCB finds the quote's status by Intel's TDX quote verification algorithm (Intel SGX
// and TDX DCAP Quote Verification Library, TCB info v3): the TD's SEAM module and the QE must
// be those the TCB info and QE identity describe (MRSIGNERSEAM, SEAM attributes, FMSPC, PCEID;
// QE MRSIGNER, ISVPRODID, MISCSELECT and attributes under their masks); the platform level is the
// first of tcbLevels whose SGX components and PCESVN (from the PCK certificate) and TDX
// components (TEE_TCB_SVN, bytes 0 and 1 skipped when TEE_TCB_SVN[1] > 0) are all at or below
// the quote's; when TEE_TCB_SVN[1] > 0 the TDX module's level is the first of the identity
// "TDX_<TEE_TCB_SVN[1] in hex>" whose ISVSVN is at or below TEE_TCB_SVN[0]; the QE's level is
// the first of the QE identity's whose ISVSVN is at or below the QE report's. The statuses then
// converge as Intel's library does (converge).
func matchTDXTCB(info *pcs.TcbInfo, qeID *pcs.EnclaveIdentity, body *pb.TDQuoteBody, qe *pb.EnclaveReport, exts *pcs.PckExtensions) (*tdxTCB, error) {
	if err := tdxModuleMatches(info, body, exts); err != nil {
		return nil, err
	}
	if err := qeMatches(qeID, qe); err != nil {
		return nil, err
	}
	svn := body.GetTeeTcbSvn()
	if len(svn) != 16 {
		return nil, fmt.Errorf("TEE_TCB_SVN has %d bytes, want 16", len(svn))
	}
	var platform *pcs.TcbLevel
	for i := range info.TcbLevels {
		l := &info.TcbLevels[i]
		if sgxAtLeast(exts.TCB.CPUSvnComponents, l.Tcb.SgxTcbcomponents) && exts.TCB.PCESvn >= l.Tcb.Pcesvn &&
			tdxAtLeast(svn, l.Tcb.TdxTcbcomponents) {
			platform = l
			break
		}
	}
	if platform == nil {
		return nil, fmt.Errorf("%w in the TCB info for FMSPC %s: the PCK certificate's SGX TCB (components %x, PCESVN %d) and TEE_TCB_SVN %x are below every level",
			errNoTCBLevel, info.Fmspc, exts.TCB.CPUSvnComponents, exts.TCB.PCESvn, svn)
	}
	r := &tdxTCB{Platform: string(platform.TcbStatus), TCBDate: platform.TcbDate}
	r.addAdvisories(platform.AdvisoryIDs)
	status := r.Platform
	if svn[1] > 0 {
		module, err := tdxModuleLevel(info.TdxModuleIdentities, svn, body)
		if err != nil {
			return nil, err
		}
		r.Module = string(module.TcbStatus)
		r.addAdvisories(module.AdvisoryIDs)
		status = converge(status, r.Module)
	}
	var qeLevel *pcs.TcbLevel
	for i := range qeID.TcbLevels {
		if qeID.TcbLevels[i].Tcb.Isvsvn <= qe.GetIsvSvn() {
			qeLevel = &qeID.TcbLevels[i]
			break
		}
	}
	if qeLevel == nil {
		return nil, fmt.Errorf("%w in the QE identity: the QE's ISVSVN %d is below every level", errNoTCBLevel, qe.GetIsvSvn())
	}
	r.QE = string(qeLevel.TcbStatus)
	r.addAdvisories(qeLevel.AdvisoryIDs)
	r.Status = converge(status, r.QE)
	return r, nil
}

// converge combines the platform's status with a component's (TDX module or QE) as Intel's
// library does: a revoked component revokes; an out-of-date one makes an up-to-date or
// SW-hardening-needed platform OutOfDate and a configuration-needed one
// OutOfDateConfigurationNeeded; otherwise the platform's status stands.
func converge(platform, component string) string {
	switch component {
	case statusRevoked:
		return statusRevoked
	case statusOutOfDate, statusOutOfDateConfig:
		switch platform {
		case statusUpToDate, statusSWHardening:
			return statusOutOfDate
		case statusConfig, statusConfigSWHardening:
			return statusOutOfDateConfig
		}
	}
	return platform
}

func (r *tdxTCB) addAdvisories(ids []string) {
	for _, id := range ids {
		if !slices.Contains(r.AdvisoryIDs, id) {
			r.AdvisoryIDs = append(r.AdvisoryIDs, id)
		}
	}
}

// sgxAtLeast: each of the PCK certificate's 16 SGX TCB components is at least the level's.
func sgxAtLeast(have []byte, level []pcs.TcbComponent) bool {
	if len(have) != len(level) {
		return false
	}
	for i, c := range level {
		if have[i] < c.Svn {
			return false
		}
	}
	return true
}

// tdxAtLeast: each byte of TEE_TCB_SVN is at least the level's TDX component; bytes 0 and 1 (the
// TDX module's SVN and version) are skipped when the module has an identity of its own
// (TEE_TCB_SVN[1] > 0), since its identity's levels judge them.
func tdxAtLeast(svn []byte, level []pcs.TcbComponent) bool {
	if len(svn) != len(level) {
		return false
	}
	start := 0
	if svn[1] > 0 {
		start = 2
	}
	for i := start; i < len(svn); i++ {
		if svn[i] < level[i].Svn {
			return false
		}
	}
	return true
}

// tdxModuleLevel finds the TDX module identity "TDX_<major version>" and its first level at or
// below the module's SVN (TEE_TCB_SVN[0]); the identity's MRSIGNER and attributes must match
// the quote's MRSIGNERSEAM and SEAMATTRIBUTES.
func tdxModuleLevel(ids []pcs.TdxModuleIdentity, svn []byte, body *pb.TDQuoteBody) (*pcs.TcbLevel, error) {
	want := fmt.Sprintf("TDX_%02X", svn[1])
	for _, id := range ids {
		if !strings.EqualFold(id.ID, want) {
			continue
		}
		if err := maskedEqual("TDX module identity "+id.ID+" MRSIGNER", body.GetMrSignerSeam(), id.Mrsigner.Bytes, nil); err != nil {
			return nil, err
		}
		if err := maskedEqual("TDX module identity "+id.ID+" attributes", body.GetSeamAttributes(), id.Attributes.Bytes, id.AttributesMask.Bytes); err != nil {
			return nil, err
		}
		for i := range id.TcbLevels {
			if id.TcbLevels[i].Tcb.Isvsvn <= uint32(svn[0]) {
				return &id.TcbLevels[i], nil
			}
		}
		return nil, fmt.Errorf("%w in TDX module identity %s: the module's SVN %d is below every level", errNoTCBLevel, id.ID, svn[0])
	}
	return nil, fmt.Errorf("the TCB info has no TDX module identity %s (TEE_TCB_SVN %x)", want, svn)
}

// tdxModuleMatches checks the TCB info is for this platform and this SEAM module.
func tdxModuleMatches(info *pcs.TcbInfo, body *pb.TDQuoteBody, exts *pcs.PckExtensions) error {
	if !strings.EqualFold(info.Fmspc, exts.FMSPC) {
		return fmt.Errorf("the TCB info is for FMSPC %s, the PCK certificate's is %s", info.Fmspc, exts.FMSPC)
	}
	if !strings.EqualFold(info.PceID, exts.PCEID) {
		return fmt.Errorf("the TCB info is for PCEID %s, the PCK certificate's is %s", info.PceID, exts.PCEID)
	}
	if err := maskedEqual("TCB info tdxModule MRSIGNER (MRSIGNERSEAM)", body.GetMrSignerSeam(), info.TdxModule.Mrsigner.Bytes, nil); err != nil {
		return err
	}
	return maskedEqual("TCB info tdxModule attributes (SEAMATTRIBUTES)", body.GetSeamAttributes(), info.TdxModule.Attributes.Bytes, info.TdxModule.AttributesMask.Bytes)
}

// qeMatches checks the QE report is of the quoting enclave the QE identity describes.
func qeMatches(id *pcs.EnclaveIdentity, qe *pb.EnclaveReport) error {
	if !bytes.Equal(qe.GetMrSigner(), id.Mrsigner.Bytes) {
		return fmt.Errorf("QE identity mismatch: the QE's MRSIGNER is %x, the QE identity's %x", qe.GetMrSigner(), id.Mrsigner.Bytes)
	}
	if qe.GetIsvProdId() != uint32(id.IsvProdID) {
		return fmt.Errorf("QE identity mismatch: the QE's ISVPRODID is %d, the QE identity's %d", qe.GetIsvProdId(), id.IsvProdID)
	}
	misc := binary.LittleEndian.AppendUint32(nil, qe.GetMiscSelect())
	if err := maskedEqual("QE identity MISCSELECT", misc, id.Miscselect.Bytes, id.MiscselectMask.Bytes); err != nil {
		return fmt.Errorf("QE identity mismatch: %w", err)
	}
	if err := maskedEqual("QE identity attributes", qe.GetAttributes(), id.Attributes.Bytes, id.AttributesMask.Bytes); err != nil {
		return fmt.Errorf("QE identity mismatch: %w", err)
	}
	return nil
}

// maskedEqual: have & mask == want (mask nil: have == want), all of one length.
func maskedEqual(what string, have, want, mask []byte) error {
	if len(have) != len(want) || mask != nil && len(mask) != len(want) {
		return fmt.Errorf("%s: the quote's value has %d bytes, the collateral's %d (mask %d)", what, len(have), len(want), len(mask))
	}
	got := bytes.Clone(have)
	for i := range mask {
		got[i] &= mask[i]
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: the quote has %x (masked), the collateral wants %x", what, got, want)
	}
	return nil
}
