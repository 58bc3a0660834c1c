// Package kbsclient is the guest's side of the Key Broker Service protocol 0.4.0 (the
// Confidential Containers "Trustee" KBS; Veil's own KBS is in attestation/kbs). A Client runs
// the RCAR handshake with any Attester: it asks for a challenge, makes an ephemeral key
// (EC P-256 by default, RSA optionally), has the TEE sign evidence whose report_data binds the
// nonce and that key (attestation/binding), and receives an attestation token. It keeps the
// token until it expires and uses it to fetch resources by kbs:///repository/type/tag URIs,
// which the KBS sends sealed to the ephemeral key (JWE) and the client opens.
//
// Connection failures and 5xx replies are retried with exponential backoff, bounded by the
// caller's context and Options.Retry. Refusals by the KBS are returned as *Error, carrying the
// KBS's error type and detail.
package kbsclient
