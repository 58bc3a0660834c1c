package launch

import (
	"context"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/google/go-sev-guest/client"
	labi "github.com/google/go-tdx-guest/client/linuxabi"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/layout"
)

// SNPHostData returns HOST_DATA of a raw SEV-SNP report (or of a report followed by its
// certificate table, as a quote provider returns it).
func SNPHostData(report []byte) ([]byte, error) {
	if len(report) < layout.SNPReportSize {
		return nil, fmt.Errorf("snp report: %d bytes, less than a report (%d)", len(report), layout.SNPReportSize)
	}
	if v := uint32(report[0]) | uint32(report[1])<<8 | uint32(report[2])<<16 | uint32(report[3])<<24; v < layout.SNPReportMinVersion {
		return nil, fmt.Errorf("snp report: version %d is not a report this agent reads", v)
	}
	return append([]byte(nil), report[layout.SNPHostDataOffset:layout.SNPHostDataOffset+layout.SNPHostDataSize]...), nil
}

// TDReportMRConfigID returns MRCONFIGID of a TDREPORT_STRUCT (what /dev/tdx_guest returns).
func TDReportMRConfigID(report []byte) ([]byte, error) {
	if len(report) != layout.TDReportSize {
		return nil, fmt.Errorf("tdreport: %d bytes, want %d", len(report), layout.TDReportSize)
	}
	return append([]byte(nil), report[layout.TDReportMRConfigIDOffset:layout.TDReportMRConfigIDOffset+layout.TDXMRConfigIDSize]...), nil
}

// TDXQuoteMRConfigID returns MRCONFIGID of a version 4 TDX quote (what configfs-tsm's
// outblob holds in a TDX guest).
func TDXQuoteMRConfigID(quote []byte) ([]byte, error) {
	if len(quote) < layout.TDXQuoteHeaderSize+layout.TDXQuoteBodySize {
		return nil, fmt.Errorf("tdx quote: %d bytes, less than a header and a body", len(quote))
	}
	if v := uint16(quote[0]) | uint16(quote[1])<<8; v != 4 {
		return nil, fmt.Errorf("tdx quote: version %d, this agent reads version 4", v)
	}
	if tee := uint32(quote[4]) | uint32(quote[5])<<8 | uint32(quote[6])<<16 | uint32(quote[7])<<24; tee != layout.TDXQuoteTEEType {
		return nil, fmt.Errorf("tdx quote: TEE type %#x is not TDX", tee)
	}
	return append([]byte(nil), quote[layout.TDXQuoteMRConfigIDOffset:layout.TDXQuoteMRConfigIDOffset+layout.TDXMRConfigIDSize]...), nil
}

// RawReporter returns a raw attestation report for reportData: go-sev-guest's quote
// providers (configfs-tsm, then /dev/sev-guest) are ones.
type RawReporter interface {
	GetRawQuote(reportData [64]byte) ([]byte, error)
}

// SNPReader reads HOST_DATA from a fresh SEV-SNP report.
type SNPReader struct {
	// Provider returns the report source; nil means go-sev-guest's GetQuoteProvider.
	Provider func() (RawReporter, error)
}

// HostData implements LaunchDataReader.
func (r *SNPReader) HostData(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	provider := r.Provider
	if provider == nil {
		provider = func() (RawReporter, error) {
			qp, err := client.GetQuoteProvider()
			return qp, err
		}
	}
	qp, err := provider()
	if err != nil {
		return nil, fmt.Errorf("snp: no report source (configfs-tsm or /dev/sev-guest): %w", err)
	}
	raw, err := qp.GetRawQuote([64]byte{})
	if err != nil {
		return nil, fmt.Errorf("snp: get report: %w", err)
	}
	return SNPHostData(raw)
}

// TDXReader reads MRCONFIGID from a TDREPORT of /dev/tdx_guest: a report, not a quote, so the
// check needs no quote generation service.
type TDXReader struct {
	// Device is the TDX guest device; "" means /dev/tdx_guest.
	Device string
}

// HostData implements LaunchDataReader.
func (r *TDXReader) HostData(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dev := r.Device
	if dev == "" {
		dev = "/dev/tdx_guest"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tdx: %w", err)
	}
	defer f.Close()
	var req labi.TdxReportReq
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(labi.IocTdxGetReport), uintptr(unsafe.Pointer(&req)))
	if errno != 0 {
		return nil, fmt.Errorf("tdx: TDX_CMD_GET_REPORT0 on %s: %w", dev, errno)
	}
	return TDReportMRConfigID(req.TdReport[:])
}

// NewReader returns the launch-data reader of the TEE kind tee, or nil for none (and for a
// kind this agent does not know, which Verify then refuses).
func NewReader(tee string) LaunchDataReader {
	switch tee {
	case api.TEESNP:
		return &SNPReader{}
	case api.TEETDX:
		return &TDXReader{}
	case api.TEESim:
		return &SimReader{Paths: DefaultPaths, Wait: 5 * time.Second}
	}
	return nil
}
