// Package kbsfuzz holds the fuzz targets of the KBS's HTTP handlers (FuzzAuth, FuzzAttest,
// FuzzResourcePath, FuzzAdminBody): each input goes through kbs.Server.ServeHTTP, the real mux
// and handlers a request over the network reaches, with the real administrator verifier and
// resource store, the sample TEE's attestation service (kbstest/sample) and a resource policy
// that needs no Rego engine.
//
// The targets live apart from attestation/kbs's own tests for speed: Go's fuzzing engine
// instruments every package linked into the test binary and scans all their coverage counters
// on every execution, so linking the Rego engine (OPA) and the verifiers, as the kbs package's
// tests do through kbstest, cost each worker about 0.4 ms per execution on a loaded machine,
// whatever the handler did (an empty target ran at 4,000/s there with two workers, 25,000/s
// without them). The Rego
// compilation of a policy the administrator posts is not fuzzed here; OPA's own fuzzing covers
// its parser. See docs/testing.md.
package kbsfuzz
