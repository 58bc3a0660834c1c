// Package layout is the one home of the report layouts the trust boundary depends on: where
// an SEV-SNP ATTESTATION_REPORT, a TDX TDREPORT_STRUCT and a version 4 TDX quote keep the
// fields Veil reads (HOST_DATA and MRCONFIGID, which carry the initdata digest), and their
// sizes (AMD SEV-SNP ABI specification, Intel TDX module ABI; PROTOCOLS.md). The evidence
// parser, the sim signer, the agent's launch check, the hypervisor's launch options and
// initdata all use these constants; nothing else spells them.
package layout

// SEV-SNP ATTESTATION_REPORT.
const (
	// SNPReportSize is the report's size (without a certificate table).
	SNPReportSize = 0x4A0
	// SNPReportMinVersion is the oldest report version whose layout this is.
	SNPReportMinVersion = 2
	// SNPHostDataOffset and SNPHostDataSize place HOST_DATA, which the host sets at launch
	// (the initdata digest, zero-padded or truncated to fit).
	SNPHostDataOffset = 0xC0
	SNPHostDataSize   = 32
)

// TDX.
const (
	// TDXMRConfigIDSize is MRCONFIGID's size, which the host sets at launch.
	TDXMRConfigIDSize = 48
	// TDReportSize is TDREPORT_STRUCT's (what /dev/tdx_guest returns): REPORTMACSTRUCT 256,
	// TEE_TCB_INFO 239+17, TDINFO 512. TDINFO starts with ATTRIBUTES 8, XFAM 8, MRTD 48,
	// then MRCONFIGID.
	TDReportSize             = 1024
	TDReportMRConfigIDOffset = 256 + 256 + 8 + 8 + 48
	// A version 4 quote: a 48-byte header, then the TD quote body (584 bytes), where
	// MRCONFIGID follows TEE_TCB_SVN 16, MRSEAM 48, MRSIGNERSEAM 48, SEAMATTRIBUTES 8,
	// TDATTRIBUTES 8, XFAM 8 and MRTD 48.
	TDXQuoteHeaderSize       = 48
	TDXQuoteBodySize         = 584
	TDXQuoteMRConfigIDOffset = TDXQuoteHeaderSize + 16 + 48 + 48 + 8 + 8 + 8 + 48
	// TDXQuoteTEEType is the quote header's TEE type for TDX.
	TDXQuoteTEEType = 0x81
)
