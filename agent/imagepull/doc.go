// Package imagepull is the guest side of confidential image pull: the agent fetches a
// container image from its registry itself, pinned to a digest the policy names, verifies
// every piece against that pin and unpacks it into guest-private storage, so the host can
// neither swap nor read what runs. See docs/imagepull.md.
//
// Pull resolves a reference that is pinned, either name@sha256:... or a tag together with
// Options.Digest (a tag alone is refused with ErrNotPinned), through
// go-containerregistry's remote package. In order, it:
//
//  0. with Options.Verifier (agent/imagesig: the initdata's image security policy), checks
//     the reference and pin against the policy, before anything of the image is fetched and
//     on a cache hit too;
//  1. hashes the manifest (or index) it is served and refuses it unless it is the pinned
//     digest, before it reads anything else;
//  2. from an index, picks the manifest for Options.Platform (linux/amd64 by default) and
//     fetches it by digest, checking that digest again;
//  3. reads the config (size bounded, digest checked), checks its os/architecture and that
//     it lists one rootfs.diff_id per layer;
//  4. streams each layer: the compressed bytes are checked against the manifest's digest and
//     size, the uncompressed tar against the config's diff_id, and the tar is applied with
//     containerd's archive.Apply (whiteouts, opaque directories, every path kept inside the
//     root);
//  5. renames the staging directory into place: a failed pull leaves nothing behind.
//
// Encrypted layers (ocicrypt "+encrypted" media types) are decrypted when
// Options.KeyProvider is set, and refused with ErrUnsupported otherwise. NewKBSKeyProvider
// reads Confidential Containers' "attestation-agent" key annotation: the layer options are
// sealed with AES-256-GCM under a key-encryption key that it fetches from the KBS through a
// ResourceGetter (agent/cdh.Hub). The blob as served (the ciphertext) is checked against the
// manifest digest, ocicrypt's blockcipher decrypts it and checks its HMAC, and the decrypted
// tar is checked against the diff_id.
//
// Plain HTTP is refused except to Options.InsecureRegistries (go-containerregistry would
// otherwise use it for loopback and private addresses), and Options.Limits bound the
// manifest, the config, the layer count and the unpacked size. Errors wrap one of the Err*
// sentinels and say where: the reference, the digest expected and got, the layer index.
//
// # Cache
//
// With Options.CacheDir, there is one unpacked root filesystem per pinned digest and
// platform, shared read-only by every container of that image (the caller mounts an overlay
// on it); a second Pull of the same pin makes no registry request. Layout:
//
//	images/sha256/<hex>/<os>_<arch>[_<variant>]/rootfs/      the tree
//	images/sha256/<hex>/<os>_<arch>[_<variant>]/image.json   the Image
//	locks/<hex>.<os>_<arch>[_<variant>].lock                  flock(2) per entry
//	tmp/<hex>.<os>_<arch>[_<variant>]/                        staging, under the lock
//
// Concurrent Pulls of one image (goroutines or processes) serialise on the entry's lock and
// all but the first return the cached entry. The cache must be on guest-private storage:
// entries are trusted once committed and not re-hashed on a hit.
//
// # Cost
//
// Measured with the Makefile's agent flags (static, -s -w, tags netgo,osusergo,seccomp):
// a blank import adds 63,808 bytes to cmd/veil-agent (27,805,680 to 27,869,488: the linker
// drops the unused code); a reachable call to Pull adds 886,304 bytes (to 28,691,984,
// +3.2%), mostly go-containerregistry's remote, klauspost/compress (gzip, zstd) and
// docker/cli's credential config pulled in by authn. Unpacking from a loopback registry runs
// at about 96 MB/s on 2 vCPUs (BenchmarkPull).
//
// This package does not import shim/, hypervisor/ or the KBS server. The agent uses it for
// its image_guest_pull storage; decryption is not wired there yet (docs/imagepull.md).
package imagepull
