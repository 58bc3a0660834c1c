package qemu

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/veil-runtime/veil/hypervisor"
)

// SEV-SNP launch parameters that depend on the host CPU. 51 and 1 are right for EPYC Milan,
// Genoa and Turin; the CPU model is the one SNP launch-digest tools assume by default.
const (
	snpCbitPos             = 51
	snpReducedPhysBits     = 1
	snpCPU                 = "EPYC-v4"
	snpObjectID            = "sev0"
	tdxObjectID            = "tdx0"
	snpMinQEMU, tdxMinQEMU = "9.1", "10.1"
)

// cgsID is the id of the confidential-guest-support object for kind, or "".
func cgsID(kind hypervisor.TEE) string {
	switch kind {
	case hypervisor.TEESNP:
		return snpObjectID
	case hypervisor.TEETDX:
		return tdxObjectID
	}
	return ""
}

// teeObjects adds the launch object of a confidential guest. The simulated TEE launches a
// plain VM: its host data is not delivered by the hypervisor (see docs/hypervisor.md).
func (b *builder) teeObjects() {
	switch b.cfg.TEE.Kind {
	case hypervisor.TEESNP:
		b.add("-object", snpObject(b.cfg))
	case hypervisor.TEETDX:
		b.add("-object", tdxObject(b.cfg.TEE))
	}
}

// snpObject is the sev-snp-guest object (QEMU 9.1+). host-data is base64 of 32 bytes;
// kernel-hashes=on makes OVMF measure the -kernel/-initrd/-append it is handed.
func snpObject(cfg hypervisor.Config) string {
	s := fmt.Sprintf("sev-snp-guest,id=%s,cbitpos=%d,reduced-phys-bits=%d,policy=%#x",
		snpObjectID, snpCbitPos, snpReducedPhysBits, cfg.TEE.SNPPolicy)
	if hd := cfg.TEE.PaddedHostData(); hd != nil {
		s += ",host-data=" + base64.StdEncoding.EncodeToString(hd)
	}
	if cfg.Kernel != "" {
		s += ",kernel-hashes=on"
	}
	return s
}

// tdxObject is the tdx-guest object (QEMU 10.1+) in JSON form, which the socket address
// needs. mrconfigid is base64 of 48 bytes.
func tdxObject(t hypervisor.TEEConfig) string {
	type socketAddress struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	obj := struct {
		QOMType    string         `json:"qom-type"`
		ID         string         `json:"id"`
		MRConfigID string         `json:"mrconfigid,omitempty"`
		QGS        *socketAddress `json:"quote-generation-socket,omitempty"`
	}{QOMType: "tdx-guest", ID: tdxObjectID}
	if hd := t.PaddedHostData(); hd != nil {
		obj.MRConfigID = base64.StdEncoding.EncodeToString(hd)
	}
	if t.QuoteGenerationSocket != "" {
		obj.QGS = &socketAddress{Type: "unix", Path: t.QuoteGenerationSocket}
	}
	b, _ := json.Marshal(obj) // cannot fail: strings only
	return string(b)
}

// checkVersion refuses launches the installed QEMU cannot do.
func checkVersion(v version, kind hypervisor.TEE) error {
	need := map[hypervisor.TEE]string{hypervisor.TEESNP: snpMinQEMU, hypervisor.TEETDX: tdxMinQEMU}[kind]
	if need == "" {
		return nil
	}
	least, _ := parseVersion(need)
	if v.less(least) {
		return fmt.Errorf("qemu: tee %s needs QEMU %s or newer, have %s", kind, need, v)
	}
	return nil
}
