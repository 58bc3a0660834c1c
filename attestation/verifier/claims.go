package verifier

import (
	"encoding/hex"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// TCB is an SNP TCB_VERSION by component. FMC is set on Turin only.
type TCB struct {
	Bootloader uint8  `json:"bootloader"`
	TEE        uint8  `json:"tee"`
	SNP        uint8  `json:"snp"`
	Microcode  uint8  `json:"microcode"`
	FMC        *uint8 `json:"fmc,omitempty"`
}

// SNPClaims are the fields of a verified SEV-SNP report.
type SNPClaims struct {
	ReportVersion uint32
	// ProductLine is "Milan", "Genoa" or "Turin" when the report says (version 3 and later).
	ProductLine string
	// Signer is "VCEK" or "VLEK".
	Signer                                           string
	Policy                                           uint64
	VMPL, GuestSVN                                   uint32
	PlatformInfo                                     uint64
	FamilyID, ImageID, ChipID                        []byte
	IDKeyDigest, AuthorKeyDigest                     []byte
	ReportedTCB, CurrentTCB, CommittedTCB, LaunchTCB TCB
}

// snpTCB decomposes a raw TCB_VERSION in the layout of the report's product line.
func snpTCB(raw uint64, turin bool) TCB {
	if turin {
		fmc := uint8(raw)
		return TCB{FMC: &fmc, Bootloader: uint8(raw >> 8), TEE: uint8(raw >> 16), SNP: uint8(raw >> 24), Microcode: uint8(raw >> 56)}
	}
	p := kds.DecomposeTCBVersion(kds.TCBVersion(raw))
	return TCB{Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
}

func snpClaims(c *snpCheck, initDataChecked bool) *Claims {
	r := c.att.GetReport()
	var line string
	if fms := r.GetCpuid1EaxFms(); fms != 0 {
		line = kds.ProductLineFromFms(fms)
	}
	turin := line == "Turin"
	policy, _ := abi.ParseSnpPolicy(r.GetPolicy()) // parsed before: ReportToProto checks it
	s := &SNPClaims{
		ReportVersion: r.GetVersion(), ProductLine: line, Signer: c.signer, Policy: r.GetPolicy(),
		VMPL: r.GetVmpl(), GuestSVN: r.GetGuestSvn(), PlatformInfo: r.GetPlatformInfo(),
		FamilyID: r.GetFamilyId(), ImageID: r.GetImageId(), ChipID: r.GetChipId(),
		IDKeyDigest: r.GetIdKeyDigest(), AuthorKeyDigest: r.GetAuthorKeyDigest(),
		ReportedTCB: snpTCB(r.GetReportedTcb(), turin), CurrentTCB: snpTCB(r.GetCurrentTcb(), turin),
		CommittedTCB: snpTCB(r.GetCommittedTcb(), turin), LaunchTCB: snpTCB(r.GetLaunchTcb(), turin),
	}
	claims := &Claims{
		TEE: "snp", Simulated: c.simulated, Measurement: r.GetMeasurement(), HostData: r.GetHostData(),
		ReportData: r.GetReportData(), InitDataChecked: initDataChecked, Debug: policy.Debug, SNP: s,
	}
	claims.Raw = snpRaw(claims, s, policy)
	return claims
}

func snpRaw(c *Claims, s *SNPClaims, p abi.SnpPolicy) map[string]any {
	n := func(v uint64) any { return int64(v) }
	tcb := func(t TCB) map[string]any {
		m := map[string]any{"bootloader": n(uint64(t.Bootloader)), "tee": n(uint64(t.TEE)),
			"snp": n(uint64(t.SNP)), "microcode": n(uint64(t.Microcode))}
		if t.FMC != nil {
			m["fmc"] = n(uint64(*t.FMC))
		}
		return m
	}
	raw := common(c)
	for k, v := range map[string]any{
		"host_data": hex.EncodeToString(c.HostData), "report_version": n(uint64(s.ReportVersion)),
		"product_line": s.ProductLine, "signer": s.Signer, "policy": n(s.Policy), "vmpl": n(uint64(s.VMPL)),
		"guest_svn": n(uint64(s.GuestSVN)), "platform_info": n(s.PlatformInfo),
		"platform_smt_enabled": s.PlatformInfo&1 != 0, "platform_tsme_enabled": s.PlatformInfo&2 != 0,
		"family_id": hex.EncodeToString(s.FamilyID), "image_id": hex.EncodeToString(s.ImageID),
		"chip_id": hex.EncodeToString(s.ChipID), "id_key_digest": hex.EncodeToString(s.IDKeyDigest),
		"author_key_digest": hex.EncodeToString(s.AuthorKeyDigest),
		"policy_abi_major":  n(uint64(p.ABIMajor)), "policy_abi_minor": n(uint64(p.ABIMinor)),
		"policy_smt_allowed": p.SMT, "policy_migrate_ma": p.MigrateMA, "policy_debug_allowed": p.Debug,
		"policy_single_socket": p.SingleSocket, "policy_cxl_allowed": p.CXLAllowed,
		"policy_mem_aes_256_xts": p.MemAES256XTS, "policy_rapl_dis": p.RAPLDis,
		"policy_ciphertext_hiding": p.CipherTextHidingDRAM, "policy_page_swap_disable": p.PageSwapDisable,
		"reported_tcb_bootloader": n(uint64(s.ReportedTCB.Bootloader)), "reported_tcb_tee": n(uint64(s.ReportedTCB.TEE)),
		"reported_tcb_snp": n(uint64(s.ReportedTCB.SNP)), "reported_tcb_microcode": n(uint64(s.ReportedTCB.Microcode)),
		"tcb": map[string]any{"reported": tcb(s.ReportedTCB), "current": tcb(s.CurrentTCB),
			"committed": tcb(s.CommittedTCB), "launch": tcb(s.LaunchTCB)},
	} {
		raw[k] = v
	}
	if s.ReportedTCB.FMC != nil {
		raw["reported_tcb_fmc"] = n(uint64(*s.ReportedTCB.FMC))
	}
	return raw
}

// common holds the claims every TEE makes, under the same names.
func common(c *Claims) map[string]any {
	return map[string]any{
		"tee":         c.TEE,
		"simulated":   c.Simulated,
		"measurement": hex.EncodeToString(c.Measurement),
		"init_data":   hex.EncodeToString(c.HostData),
		"report_data": hex.EncodeToString(c.ReportData),
		"debug":       c.Debug,
		// init_data_checked: init_data was compared with the initdata digest of the request.
		"init_data_checked": c.InitDataChecked,
	}
}

func tdxRaw(c *Claims, t *TDXClaims, h *pb.Header) map[string]any {
	raw := common(c)
	for k, v := range map[string]any{
		"mr_td": hex.EncodeToString(t.MRTD), "mr_config_id": hex.EncodeToString(t.MRConfigID),
		"mr_owner": hex.EncodeToString(t.MROwner), "mr_owner_config": hex.EncodeToString(t.MROwnerConfig),
		"rtmr_0": hex.EncodeToString(t.RTMRs[0]), "rtmr_1": hex.EncodeToString(t.RTMRs[1]),
		"rtmr_2": hex.EncodeToString(t.RTMRs[2]), "rtmr_3": hex.EncodeToString(t.RTMRs[3]),
		"td_attributes": hex.EncodeToString(t.TDAttributes), "xfam": hex.EncodeToString(t.XFAM),
		"tcb_svn": hex.EncodeToString(t.TEETCBSVN), "mr_seam": hex.EncodeToString(t.MRSeam),
		"mr_signer_seam": hex.EncodeToString(t.MRSignerSeam), "seam_attributes": hex.EncodeToString(t.SeamAttributes),
		"qe_svn": hex.EncodeToString(h.GetQeSvn()), "pce_svn": hex.EncodeToString(h.GetPceSvn()),
		"fmspc": t.FMSPC,
	} {
		raw[k] = v
	}
	if t.TCBStatus != "" {
		raw["tcb_status"] = t.TCBStatus
		raw["tcb_date"] = t.TCBDate
		ids := make([]any, len(t.AdvisoryIDs))
		for i, id := range t.AdvisoryIDs {
			ids[i] = id
		}
		raw["advisory_ids"] = ids
	}
	return raw
}
