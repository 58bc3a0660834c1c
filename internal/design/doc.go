// Package design checks the rules of direction of shared/DESIGN.md and docs/architecture.md
// against the packages' real imports (go list), so that `make unit` fails when a change breaks
// one: the guest binary never imports shim/, hypervisor/ or the KBS server; kbs-client never
// imports the KBS server (both share attestation/kbswire); the shim imports nothing of the
// agent but agent/api; attestation/ and policy/ know nothing about containerd.
package design
