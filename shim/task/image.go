package task

import (
	"context"
	"sync"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/imagedigest"
)

// images looks up the image digests of containers in containerd; made on first use.
type images struct {
	address string // containerd's gRPC socket; "" when unknown

	once     sync.Once
	resolver *imagedigest.Resolver
}

// setImageDigest sets the api.ImageDigestAnnotation annotation of a container's spec to the
// manifest digest of its image in containerd, which the confidential baseline compares with
// the digest its policy pins. Whatever the bundle carried under that name is dropped first:
// the annotation says what containerd's store holds, nothing else. A container without an
// image, or one containerd cannot place, gets no annotation (a policy that pins images then
// refuses it) and a warning. It returns the image's name ("" when none is known): CRI's
// image-name annotation (the reference as the pod wrote it) or containerd's record.
func (s *Service) setImageDigest(ctx context.Context, id string, spec *specs.Spec) string {
	delete(spec.Annotations, api.ImageDigestAnnotation)
	im := &s.images
	im.once.Do(func() {
		if im.address == "" {
			return
		}
		r, err := imagedigest.New(im.address)
		if err != nil {
			log.G(ctx).WithError(err).Warn("image digests unavailable")
			return
		}
		im.resolver = r
	})
	if im.resolver == nil {
		return ""
	}
	l := log.G(ctx).WithField("task", id)
	ns := namespaceOf(ctx)
	name, err := im.resolver.ImageName(ctx, ns, id, spec.Annotations)
	if err != nil || name == "" {
		l.WithError(err).Debug("no image to pin: the spec gets no image digest")
		return ""
	}
	d, err := im.resolver.ManifestDigest(ctx, ns, name)
	if err != nil {
		l.WithError(err).Warn("image digest unknown: the spec gets none")
		return name
	}
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[api.ImageDigestAnnotation] = d
	l.WithField("image", name).WithField("digest", d).Debug("image digest")
	return name
}

// close closes the connection to containerd, if one was made.
func (im *images) close() {
	im.once.Do(func() {}) // no connection is made after this
	if im.resolver != nil {
		_ = im.resolver.Close()
	}
}
