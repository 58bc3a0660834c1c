package imagepull

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// unpacker applies layers, in order, into one root directory.
type unpacker struct {
	root        string
	registry    string // the registry's host[:port], named when a blob's transfer fails
	max         int64  // Limits.MaxUnpackedBytes
	left        int64  // unpacked-byte budget left; negative: unlimited
	noSameOwner bool
	keys        KeyProvider // Options.KeyProvider
}

// checkMediaType refuses layers this package cannot unpack. Encrypted layers are checked by
// the media type they have once decrypted.
func checkMediaType(mt types.MediaType) error {
	base := types.MediaType(strings.TrimSuffix(string(mt), encryptedSuffix))
	switch {
	case strings.Contains(string(base), "encrypted"):
		return fmt.Errorf("media type %q is not an ocicrypt layer type: %w", mt, ErrUnsupported)
	case base == types.DockerForeignLayer || strings.Contains(string(mt), "nondistributable"):
		return fmt.Errorf("media type %q: foreign layers are not pulled: %w", mt, ErrUnsupported)
	case base.IsLayer():
		return nil
	default:
		return fmt.Errorf("media type %q is not a layer: %w", mt, ErrUnsupported)
	}
}

// apply streams layer i: the compressed bytes are hashed (and checked by
// go-containerregistry's verifying reader), decompressed, hashed again for the DiffID,
// counted against the budget and applied with containerd's archive.Apply, which handles
// whiteouts and keeps every path inside root. Content is written before the digests are
// known to match: the caller unpacks into a staging directory and removes it on error.
//
// A full disk stops the layer at once, without fetching the rest of the blob.
//
// An encrypted layer's key is unwrapped first; the blob as served is hashed against the
// manifest digest, then decrypted (ocicrypt), decompressed, and its tar checked against the
// diff_id like any other.
func (u *unpacker) apply(ctx context.Context, l v1.Layer, i int, want *Layer) error {
	where := fmt.Sprintf("layer %d (%s)", i, want.Digest)
	if err := checkMediaType(types.MediaType(want.MediaType)); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var lc *layerCipher
	if want.Encrypted {
		var err error
		if lc, err = layerKey(ctx, u.keys, want); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	rc, err := l.Compressed()
	if err != nil {
		if ggcrMismatch(err) { // Content-Length against the descriptor
			return fmt.Errorf("%s: fetch from registry %s: %w: %w", where, u.registry, ErrDigestMismatch, err)
		}
		return fmt.Errorf("%s: fetch from registry %s: %w", where, u.registry, err)
	}
	defer rc.Close()
	zr := &hashReader{r: rc, h: sha256.New()}
	var src io.Reader = zr
	if lc != nil {
		if src, err = lc.reader(zr); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	err = u.unpack(ctx, src, want)
	if ctx.Err() != nil || errors.Is(err, ErrLimit) || diskFull(err) {
		// No digest check: reading the rest of the blob would only delay the error.
		return fmt.Errorf("%s: %w", where, errors.Join(ctx.Err(), err))
	}
	var herr error
	if lc != nil {
		// Read the ciphertext to its end through the decrypter: ocicrypt checks its HMAC there.
		if _, herr = io.Copy(io.Discard, src); herr != nil && !errors.Is(herr, ErrDecrypt) {
			herr = fmt.Errorf("decrypt: %w: %w", herr, ErrDecrypt)
		}
	}
	// Read to the end so the verifying reader checks the blob's digest and size; a tampered
	// blob is reported as such even when it also broke decompression or the tar stream.
	if derr := drainAndCheck(zr, want, u.registry); derr != nil {
		if err != nil {
			derr = fmt.Errorf("%w (unpacking also failed: %v)", derr, err)
		}
		return fmt.Errorf("%s: %w", where, derr)
	}
	if herr != nil {
		return fmt.Errorf("%s: %w", where, herr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// diskFull reports a write that failed for want of space (ENOSPC, or EDQUOT under a quota).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// drainAndCheck reads zr to its end and checks the compressed digest and size. A read that
// fails otherwise (the registry went away: a reset or a connection closed before the
// blob's end) names the registry and how far the transfer got.
func drainAndCheck(zr *hashReader, want *Layer, registry string) error {
	if _, err := io.Copy(io.Discard, zr); err != nil {
		if ggcrMismatch(err) { // the verifying reader's digest or size check
			return fmt.Errorf("compressed blob: %w: %w", ErrDigestMismatch, err)
		}
		return fmt.Errorf("compressed blob: read from registry %s failed after %d of %d bytes: %w", registry, zr.n, want.Size, err)
	}
	if got := zr.sum(); got != want.Digest {
		return fmt.Errorf("compressed blob: want %s, got %s: %w", want.Digest, got, ErrDigestMismatch)
	}
	if zr.n != want.Size {
		return fmt.Errorf("compressed blob: want %d bytes, got %d: %w", want.Size, zr.n, ErrDigestMismatch)
	}
	return nil
}

// unpack decompresses r, applies the tar stream and checks its DiffID.
func (u *unpacker) unpack(ctx context.Context, r io.Reader, want *Layer) error {
	dr, err := compression.DecompressStream(r)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer dr.Close()
	tr := &hashReader{r: dr, h: sha256.New(), budget: u}
	var opts []archive.ApplyOpt
	if u.noSameOwner {
		opts = append(opts, archive.WithNoSameOwner())
	}
	_, err = archive.Apply(ctx, u.root, tr, opts...)
	if err == nil {
		_, err = io.Copy(io.Discard, tr) // tar padding after the end-of-archive blocks
	}
	if tr.over != nil {
		return tr.over // the budget error, however Apply wrapped it
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if got := tr.sum(); got != want.DiffID {
		return fmt.Errorf("uncompressed digest (config rootfs.diff_ids): want %s, got %s: %w", want.DiffID, got, ErrDigestMismatch)
	}
	return nil
}

// hashReader hashes and counts what it reads and, with a budget, fails past it.
type hashReader struct {
	r      io.Reader
	h      hash.Hash
	n      int64
	budget *unpacker
	over   error
}

// Read implements io.Reader.
func (h *hashReader) Read(p []byte) (int, error) {
	if h.over != nil {
		return 0, h.over
	}
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if b := h.budget; b != nil && b.left >= 0 {
		if b.left -= int64(n); b.left < 0 {
			h.over = fmt.Errorf("unpacked size over the Limits.MaxUnpackedBytes budget of %d bytes: %w", b.max, ErrLimit)
			return 0, h.over
		}
	}
	return n, err
}

// sum returns the sha256 digest of what was read.
func (h *hashReader) sum() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.h.Sum(nil))}
}
