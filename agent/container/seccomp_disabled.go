//go:build !cgo || !seccomp

package container

// SeccompSupported reports whether the agent applies a spec's linux.seccomp section. It does
// when built with the seccomp tag (and cgo, linking libseccomp); without it, a spec that asks
// for seccomp is refused rather than run unconfined.
const SeccompSupported = false
