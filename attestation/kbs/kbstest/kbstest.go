// Package kbstest provides test doubles for the KBS and its clients: a fake attestation
// service for the "sample" TEE that issues real ES256 EAR-shaped tokens, a sample attester
// (both from kbstest/sample), a KBS served on loopback with a fresh administrator key, and a
// KBS with the real verifier trusting a sim authority. It is for tests only: the "sample" TEE
// proves nothing.
package kbstest

import "github.com/veil-runtime/veil/attestation/kbs/kbstest/sample"

// TEE is the name of the fake TEE.
const TEE = sample.TEE

// The sample TEE's evidence, attestation service and attester (package sample).
type (
	SampleEvidence = sample.SampleEvidence
	Attestation    = sample.Attestation
	Attester       = sample.Attester
)

// NewAttestation returns a service that appraises every good sample evidence as "affirming".
func NewAttestation() *Attestation { return sample.NewAttestation() }
