// Package unseal replaces the sealed secrets of a container (kbs-client/sealed) with their
// plaintext, inside the guest, before the container is created: every environment variable
// of the OCI spec (and of an exec'd process, Env) whose value starts with "sealed.", and every
// file of a bind mount's source
// (a Secret or ConfigMap volume on the pod's share, a single file) whose content does. The
// plaintext of a file never goes back to the share: the source directory (or file) is copied
// onto a tmpfs of the guest's own memory, at <container dir>/sealed/<n>, with each sealed file
// unsealed there, and the mount is pointed at that copy.
//
// A value that cannot be unsealed (no KBS configured, malformed, signature wrong, untrusted
// key, resource missing, the KBS refusing) fails the container with an error that names the
// variable or the file, never the plaintext; nothing sealed is left in place and every copy is
// removed on that path. Plaintext is never logged.
//
// The package is guest side: it uses a sealed.Fetcher (agent/cdh's Hub), never the KBS server.
package unseal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/kbs-client/sealed"
)

// Limits of the scan of a bind mount's source for sealed files.
const (
	// MaxEntries bounds the directory entries scanned below one mount's source.
	MaxEntries = 16384
	// MaxDepth bounds the directory depth below one mount's source.
	MaxDepth = 16
	// TmpfsSize bounds the guest memory a container's copies take.
	TmpfsSize = "64m"
)

// Unsealer unseals the sealed values of containers with the resources of one KBS.
type Unsealer struct {
	// Fetcher gets resources from the KBS the guest attested to; nil means the guest has no
	// KBS, and every sealed value is refused.
	Fetcher sealed.Fetcher
	// Trusted are the kbs:/// URIs of the verification keys the measured initdata trusts;
	// empty means any kbs:/// key the attested KBS serves.
	Trusted []string

	// cache holds the plaintexts of values already unsealed (at most MaxCached), so that an
	// exec probe carrying the container's sealed env does not ask the KBS each time.
	mu    sync.Mutex
	cache map[string][]byte
}

// MaxCached bounds the unsealed values an Unsealer keeps in (guest) memory.
const MaxCached = 256

// open unseals one value (once per distinct value); err names no plaintext. The caller owns
// (and may clear) the returned bytes.
func (u *Unsealer) open(ctx context.Context, value string) ([]byte, error) {
	if u == nil || u.Fetcher == nil {
		return nil, errors.New("this guest has no KBS to unseal it with (initdata veil.toml [kbs] url, and a TEE)")
	}
	u.mu.Lock()
	p, ok := u.cache[value]
	u.mu.Unlock()
	if ok {
		return bytes.Clone(p), nil
	}
	p, err := sealed.Open(ctx, value, u.Fetcher, u.Trusted)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	if u.cache == nil {
		u.cache = map[string][]byte{}
	}
	if len(u.cache) < MaxCached {
		u.cache[value] = bytes.Clone(p)
	}
	u.mu.Unlock()
	return p, nil
}

// classify wraps err with the errdefs class a caller sees: InvalidArgument for a malformed
// value or a wrong signature, FailedPrecondition for the rest.
func classify(err error) error {
	if errors.Is(err, sealed.ErrMalformed) || errors.Is(err, sealed.ErrSignature) || errors.Is(err, sealed.ErrUntrustedKey) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
}

// Container unseals spec's sealed environment variables and the sealed files of its bind
// mounts' sources, which must already be the agent's own paths (storage.PrepareContainer).
// dir is the container's directory of the agent; the copies go to dir/sealed. The returned
// function removes the copies; on error nothing is left.
func (u *Unsealer) Container(ctx context.Context, spec *specs.Spec, dir string) (func() error, error) {
	if err := u.env(ctx, spec); err != nil {
		return nil, err
	}
	c := &copier{u: u, dir: dir + "/sealed"}
	if err := c.mounts(ctx, spec); err != nil {
		if uerr := c.undo(); uerr != nil {
			log.G(ctx).WithError(uerr).Warn("unseal: remove the copies of a failed container")
		}
		return nil, err
	}
	return c.undo, nil
}

// env replaces every sealed value of spec.Process.Env.
func (u *Unsealer) env(ctx context.Context, spec *specs.Spec) error {
	if spec.Process == nil {
		return nil
	}
	return u.Env(ctx, spec.Process.Env, "oci_spec process.env")
}

// Env replaces every sealed value of env ("NAME=value" entries) in place; what names the
// list in errors ("process.env" of an exec).
func (u *Unsealer) Env(ctx context.Context, env []string, what string) error {
	n := 0
	for i, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(value, sealed.Prefix) {
			continue
		}
		plain, err := u.open(ctx, value)
		if err != nil {
			return classify(fmt.Errorf("%s %s: the sealed value cannot be unsealed: %w", what, name, err))
		}
		if strings.IndexByte(string(plain), 0) >= 0 {
			clear(plain)
			return fmt.Errorf("%s %s: the unsealed secret holds a NUL byte, which an environment variable cannot: %w",
				what, name, errdefs.ErrInvalidArgument)
		}
		env[i] = name + "=" + string(plain)
		clear(plain)
		n++
	}
	if n > 0 {
		log.G(ctx).Infof("unseal: %d sealed environment variable(s) of %s unsealed", n, what)
	}
	return nil
}

type sealedMountsKey struct{}

// WithSealedMounts returns ctx carrying the mount destinations whose every regular file must
// be a sealed secret (the policy's obligation sealed_mounts): Container refuses the
// container, naming the file, when the host put another file there.
func WithSealedMounts(ctx context.Context, destinations []string) context.Context {
	return context.WithValue(ctx, sealedMountsKey{}, destinations)
}

// copier makes the guest-private copies of a container's sealed mounts.
type copier struct {
	u       *Unsealer
	dir     string // dir/sealed: the tmpfs, mounted on first use
	mounted bool
}

func (c *copier) undo() error {
	if !c.mounted {
		return nil
	}
	if err := unix.Unmount(c.dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", c.dir, err)
	}
	c.mounted = false
	if err := os.Remove(c.dir); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", c.dir, err)
	}
	return nil
}

// tmpfs mounts the guest-private tmpfs that holds the copies.
func (c *copier) tmpfs() error {
	if c.mounted {
		return nil
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.dir, err)
	}
	if err := unix.Mount("tmpfs", c.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size="+TmpfsSize); err != nil {
		_ = os.Remove(c.dir)
		return fmt.Errorf("mount the tmpfs of unsealed secrets at %s: %w", c.dir, err)
	}
	c.mounted = true
	return nil
}

// mounts scans the source of every bind mount and replaces a source that holds a sealed
// file by its unsealed copy.
func (c *copier) mounts(ctx context.Context, spec *specs.Spec) error {
	required, _ := ctx.Value(sealedMountsKey{}).([]string)
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(m) {
			continue
		}
		what := fmt.Sprintf("oci_spec mounts[%d] (%s)", i, m.Destination)
		src, err := openSource(m.Source)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		files, plain, err := scan(src, what)
		if errors.Is(err, errTooLarge) && (c.u == nil || c.u.Fetcher == nil) && !slices.Contains(required, m.Destination) {
			// Without a KBS (a plain VM) nothing could be unsealed: a large host directory
			// is used as it is rather than refused. In a confidential pod it is refused, so
			// that no sealed value is ever left in place.
			log.G(ctx).WithError(err).Warn("unseal: not scanned (this guest has no KBS)")
			unix.Close(src)
			continue
		}
		if err != nil {
			unix.Close(src)
			return err
		}
		if slices.Contains(required, m.Destination) && len(plain) > 0 {
			unix.Close(src)
			return fmt.Errorf("%s: file %s is not a sealed secret, and the policy requires every file of this mount sealed (its obligation sealed_mounts): %w",
				what, plain[0], errdefs.ErrPermissionDenied)
		}
		if len(files) == 0 {
			unix.Close(src)
			continue
		}
		target := c.dir + "/" + strconv.Itoa(i)
		err = c.copyMount(ctx, src, target, what)
		unix.Close(src)
		if err != nil {
			return err
		}
		log.G(ctx).Infof("unseal: %s: %d sealed file(s) unsealed into guest memory", what, len(files))
		m.Source = target
	}
	return nil
}

func isBind(m *specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}
