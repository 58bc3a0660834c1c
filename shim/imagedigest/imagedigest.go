// Package imagedigest finds the digest of the image manifest a container was made from, by
// asking containerd (its images and content services over gRPC). The shim puts that digest in
// the OCI spec it sends to the agent as the io.veil.image.digest annotation, which the
// confidential baseline policy compares with the digest veil-genpolicy pinned.
//
// The digest is what containerd's image store says: it pins the image the host claims to
// run, which catches a moved tag or a policy made for another image. It is not evidence
// against a hostile host, which could lie here as it could about the root filesystem it
// shares; that needs the guest to pull and verify the image itself.
package imagedigest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/v2/core/content"
	contentproxy "github.com/containerd/containerd/v2/core/content/proxy"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Annotations containerd's CRI sets to the image a container (or a pod's sandbox) runs: the
// reference the pod wrote, or containerd's name for the image.
const (
	CRIImageName        = "io.kubernetes.cri.image-name"
	CRISandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
)

// Docker's media types, which containerd stores images pulled from Docker registries under.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// lookupTimeout bounds one lookup: containerd answers from its local store.
const lookupTimeout = 10 * time.Second

// maxIndexBytes bounds the index or manifest read from the content store.
const maxIndexBytes = 4 << 20

// Resolver looks images up in one containerd.
type Resolver struct {
	conn     *grpc.ClientConn
	platform platforms.MatchComparer
}

// New connects to containerd's gRPC socket (the shim's -address). The connection is made on
// first use.
func New(address string) (*Resolver, error) {
	if address == "" {
		return nil, errors.New("imagedigest: no containerd address")
	}
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("imagedigest: containerd at %s: %w", address, err)
	}
	return &Resolver{conn: conn, platform: platforms.Default()}, nil
}

// Close closes the connection.
func (r *Resolver) Close() error { return r.conn.Close() }

// ImageName returns the image a container runs: CRI's annotation when containerd's CRI made
// the container, otherwise the image of containerd's container record (ctr, nerdctl). It
// returns "" when the container was made without an image (ctr run --rootfs).
func (r *Resolver) ImageName(ctx context.Context, namespace, containerID string, annotations map[string]string) (string, error) {
	for _, k := range []string{CRIImageName, CRISandboxImageName} {
		if v := annotations[k]; v != "" {
			return v, nil
		}
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, namespace), lookupTimeout)
	defer cancel()
	resp, err := containersapi.NewContainersClient(r.conn).Get(ctx, &containersapi.GetContainerRequest{ID: containerID})
	if err != nil {
		return "", fmt.Errorf("container %s in containerd: %w", containerID, err)
	}
	return resp.GetContainer().GetImage(), nil
}

// ManifestDigest returns the digest of the manifest image name resolves to for this
// machine's platform: the manifest itself, or the best match in an index.
func (r *Resolver) ManifestDigest(ctx context.Context, namespace, name string) (string, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, namespace), lookupTimeout)
	defer cancel()
	img, err := r.image(ctx, name)
	if err != nil {
		return "", err
	}
	t := img.GetTarget()
	desc := ocispec.Descriptor{MediaType: t.GetMediaType(), Size: t.GetSize(), Digest: digest.Digest(t.GetDigest())}
	store := contentproxy.NewContentStore(contentapi.NewContentClient(r.conn))
	for depth := 0; depth < 4; depth++ {
		switch desc.MediaType {
		case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
			return desc.Digest.String(), nil
		case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
			if desc, err = r.pick(ctx, store, desc); err != nil {
				return "", fmt.Errorf("image %s: %w", name, err)
			}
		default:
			return "", fmt.Errorf("image %s: target %s has media type %q, not a manifest or index", name, desc.Digest, desc.MediaType)
		}
	}
	return "", fmt.Errorf("image %s: indexes nested too deep", name)
}

// image finds name in the image store, trying the normalised form ("busybox" is
// "docker.io/library/busybox:latest") when the name as written is not there.
func (r *Resolver) image(ctx context.Context, name string) (*imagesapi.Image, error) {
	client := imagesapi.NewImagesClient(r.conn)
	resp, err := client.Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err == nil {
		return resp.GetImage(), nil
	}
	if named, perr := reference.ParseNormalizedNamed(name); perr == nil {
		if full := reference.TagNameOnly(named).String(); full != name {
			if resp, err2 := client.Get(ctx, &imagesapi.GetImageRequest{Name: full}); err2 == nil {
				return resp.GetImage(), nil
			}
		}
	}
	return nil, fmt.Errorf("image %s in containerd: %w", name, err)
}

// pick reads an index and returns the manifest that best matches the platform.
func (r *Resolver) pick(ctx context.Context, store content.Store, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	if desc.Size > maxIndexBytes {
		return ocispec.Descriptor{}, fmt.Errorf("index %s is %d bytes: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	data, err := content.ReadBlob(ctx, store, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read index %s: %w", desc.Digest, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse index %s: %w", desc.Digest, err)
	}
	var best *ocispec.Descriptor
	for i := range idx.Manifests {
		m := &idx.Manifests[i]
		if m.Platform == nil || !r.platform.Match(*m.Platform) {
			continue
		}
		if best == nil || r.platform.Less(*m.Platform, *best.Platform) {
			best = m
		}
	}
	if best == nil {
		return ocispec.Descriptor{}, fmt.Errorf("index %s has no manifest for %s: %w",
			desc.Digest, platforms.DefaultString(), errdefs.ErrNotFound)
	}
	return *best, nil
}
