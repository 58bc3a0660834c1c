package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
)

// ErrNoSimAuthority says that the guest image carries no sim authority, so it cannot be a sim
// guest.
var ErrNoSimAuthority = errors.New("this guest image has no sim authority " +
	"(build it with: veil-image build --sim-authority FILE): refusing to serve")

// SimReader is the launch-data reader of the simulated TEE. It reads what the sim PSP reports
// about the launch from its disk (attestation/sim/psp: serial psp.DiskSerial), signs a genuine
// SEV-SNP report with the image's sim authority, and returns the HOST_DATA of that report,
// parsed back from its bytes as for real SNP.
type SimReader struct {
	Paths Paths
	// Serial is the PSP disk's serial; "" means psp.DiskSerial.
	Serial string
	// Wait bounds the wait for a virtio block device that is still being probed.
	Wait time.Duration
	// Disk is the PSP disk (or its image); "" means the disk with the serial, found in Paths.
	Disk string
	// AuthorityPath is the sim authority's file; "" means sim.GuestAuthorityPath.
	AuthorityPath string
}

// HostData implements LaunchDataReader.
func (r *SimReader) HostData(ctx context.Context) ([]byte, error) {
	raw, err := r.Report(ctx, [64]byte{})
	if err != nil {
		return nil, err
	}
	return SNPHostData(raw)
}

// Report returns a sim SEV-SNP report carrying reportData for this launch.
func (r *SimReader) Report(ctx context.Context, reportData [64]byte) ([]byte, error) {
	auth, err := r.authority()
	if err != nil {
		return nil, err
	}
	l, err := r.launch(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := auth.SNP.Report(sim.SNPLaunchFromPSP(l), reportData)
	if err != nil {
		return nil, fmt.Errorf("sim: sign report: %w", err)
	}
	log.G(ctx).Infof("sim TEE: report signed by the image's sim authority (MEASUREMENT %x)", l.Measurement)
	return raw, nil
}

func (r *SimReader) authority() (*sim.Authority, error) {
	path := r.AuthorityPath
	if path == "" {
		path = sim.GuestAuthorityPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("veil.tee=sim: %w", ErrNoSimAuthority)
	}
	if err != nil {
		return nil, fmt.Errorf("veil.tee=sim: read the sim authority: %w", err)
	}
	a, err := sim.ParseAuthority(data)
	if err != nil {
		return nil, fmt.Errorf("veil.tee=sim: %w", err)
	}
	return a, nil
}

// launch reads the PSP disk.
func (r *SimReader) launch(ctx context.Context) (psp.Launch, error) {
	serial := r.Serial
	if serial == "" {
		serial = psp.DiskSerial
	}
	dev := r.Disk
	if dev == "" {
		var err error
		if dev, err = FindDevice(ctx, r.Paths, serial, r.Wait); err != nil {
			return psp.Launch{}, fmt.Errorf("veil.tee=sim: %w", err)
		}
	}
	if dev == "" {
		return psp.Launch{}, fmt.Errorf("veil.tee=sim: no sim PSP disk (serial %q): the host did not launch this VM as a sim TEE", serial)
	}
	f, err := os.Open(dev)
	if err != nil {
		return psp.Launch{}, fmt.Errorf("veil.tee=sim: open PSP disk: %w", err)
	}
	defer f.Close()
	l, err := psp.Read(f)
	if err != nil {
		return psp.Launch{}, fmt.Errorf("veil.tee=sim: %w (disk %s)", err, dev)
	}
	return l, nil
}
