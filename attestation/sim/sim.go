// Package sim is Veil's simulated TEE, for machines without SEV-SNP or TDX. It makes genuine
// SEV-SNP attestation reports and TDX version 4 quotes, byte for byte in the hardware formats,
// signed by a test certificate chain that an Authority generates once (when the guest image is
// built). The host supplies what a real platform would measure (launch measurement, HOST_DATA /
// MRCONFIGID, guest policy); the guest supplies REPORT_DATA.
//
// Simulated evidence is recognisable: every certificate of a sim chain carries the subject
// attribute description=Marker, every SNP report has CHIPID (and its VCEK the HWID) filled with
// the marker text, and every TDX quote header carries TDXUserData. A verifier trusts sim
// evidence only when it is configured with the sim roots (SNPRootsPEM, TDXRootPEM); Veil's
// verifier then marks the claims Simulated. Nothing selects this package implicitly: the
// attester package's Detect never returns it.
package sim

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// Marker is the text that identifies simulated evidence.
const Marker = "Veil simulated TEE (test only)"

// oidDescription is the X.520 description attribute (2.5.4.13).
var oidDescription = asn1.ObjectIdentifier{2, 5, 4, 13}

// ChipID returns the CHIP_ID of every simulated SNP report: the marker text repeated to 64 bytes.
func ChipID() [64]byte {
	var id [64]byte
	for i := range id {
		id[i] = Marker[i%len(Marker)]
	}
	return id
}

// TDXUserData is the QE user data in the header of every simulated TDX quote (20 bytes).
var TDXUserData = [20]byte{'V', 'E', 'I', 'L', '-', 'S', 'I', 'M', ' ', 'T', 'E', 'S', 'T', ' ', 'O', 'N', 'L', 'Y'}

// IsSimulatedCert reports whether a certificate belongs to a sim chain (its subject carries
// description=Marker). It says nothing about trust: a verifier decides that from its roots.
func IsSimulatedCert(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	for _, atv := range c.Subject.Names {
		if atv.Type.Equal(oidDescription) && atv.Value == Marker {
			return true
		}
	}
	return false
}

// markedName returns name with the description=Marker attribute added.
func markedName(name pkix.Name) pkix.Name {
	name.ExtraNames = append(name.ExtraNames, pkix.AttributeTypeAndValue{Type: oidDescription, Value: Marker})
	return name
}

func amdName(cn string) pkix.Name {
	return markedName(pkix.Name{
		Country:            []string{"US"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
	})
}

func intelName(cn string) pkix.Name {
	return markedName(pkix.Name{
		Country:      []string{"US"},
		Locality:     []string{"Santa Clara"},
		Province:     []string{"CA"},
		Organization: []string{"Intel Corporation"},
		CommonName:   cn,
	})
}
