package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/imagepull"
)

const (
	// MaxPullTime bounds one pull, which goes on after the request that started it gave up.
	MaxPullTime = 30 * time.Minute
	// MaxPulls bounds the pulls under way at once.
	MaxPulls = 8
)

// pullCall is one pull under way; the requests for the same image wait on it.
type pullCall struct {
	done chan struct{}
	img  *imagepull.Image
	err  error
}

// pull fetches ref pinned to digest into the cache. The pull runs on its own, bounded by
// MaxPullTime, not by ctx: when ctx ends first (the kubelet's 2-minute runtime request
// timeout, for a large image under a slow network or emulation) the request fails, but the
// pull goes on and fills the cache, so the request made again (the kubelet retries) finds it
// under way or done. Requests for an image already being pulled wait for that pull.
func (g *GuestPull) pull(ctx context.Context, ref, digest string) (*imagepull.Image, error) {
	key := ref + "@" + digest
	c, err := g.startPull(ctx, key, ref, digest)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.done:
		return c.img, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("image %s (%s) is still being pulled in the guest, which goes on for up to %s: "+
			"create the container again to use it: %w", ref, digest, MaxPullTime, ctx.Err())
	}
}

// startPull returns the pull of key under way, or starts it.
func (g *GuestPull) startPull(ctx context.Context, key, ref, digest string) (*pullCall, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.running[key]; c != nil {
		return c, nil
	}
	if len(g.running) >= MaxPulls {
		return nil, fmt.Errorf("%d image pulls are under way in the guest: %w", MaxPulls, errdefs.ErrResourceExhausted)
	}
	if g.running == nil {
		g.running = map[string]*pullCall{}
	}
	c := &pullCall{done: make(chan struct{})}
	g.running[key] = c
	opts := imagepull.Options{
		Digest:             digest,
		CacheDir:           g.Dir,
		InsecureRegistries: g.InsecureRegistries,
		KeyProvider:        g.KeyProvider,
		Verifier:           g.Verifier,
		SealCache:          !g.NoSeal,
	}
	logger := log.G(ctx).WithField("image", ref).WithField("digest", digest)
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), MaxPullTime)
		defer cancel()
		start := time.Now()
		c.img, c.err = imagepull.Pull(pctx, ref, opts)
		if c.err != nil {
			logger.WithError(c.err).Warn("image pull failed")
		} else if !c.img.Cached {
			logger.WithField("took", time.Since(start)).Info("image pulled")
		}
		g.mu.Lock()
		delete(g.running, key)
		g.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}
