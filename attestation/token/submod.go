package token

import (
	"maps"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/verifier"
)

// Annotations are what a KBS adds to the verified claims in the annotated evidence.
type Annotations struct {
	// RuntimeData is the attest request's runtime-data: {"nonce": ..., "tee-pubkey": <JWK>}.
	RuntimeData map[string]any
	// InitData is the initdata the request carried, as the KBS read it; nil when none.
	InitData map[string]any
}

// NewSubmod makes the cpu0 submodule of an appraisal: its status, vector and policy id, and the
// annotated evidence: every verified claim (verifier.Claims.Raw, which has report_data and
// init_data), "runtime_data_claims" and, when set, "init_data_claims".
func NewSubmod(c *verifier.Claims, r *appraisal.Result, a Annotations) Submod {
	ev := maps.Clone(c.Raw)
	if ev == nil {
		ev = map[string]any{}
	}
	ev["runtime_data_claims"] = a.RuntimeData
	if a.InitData != nil {
		ev["init_data_claims"] = a.InitData
	}
	return Submod{
		Status:                string(r.Status),
		TrustworthinessVector: r.TrustworthinessVector,
		AppraisalPolicyID:     r.PolicyID,
		AnnotatedEvidence:     ev,
	}
}
