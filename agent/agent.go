// Package agent runs the agent proper (the child of init in the guest): the ttrpc service of
// agent/server, with its interceptor, on every transport the guest offers, until the
// sandbox is destroyed or the process is told to stop.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/agent/network"
	"github.com/veil-runtime/veil/agent/scratch"
	"github.com/veil-runtime/veil/agent/server"
	"github.com/veil-runtime/veil/agent/startup"
	"github.com/veil-runtime/veil/agent/storage"
	"github.com/veil-runtime/veil/agent/transport"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// DefaultStateDir is where libcontainer keeps the containers' state: outside api.GuestRoot,
// so that no CopyFile or storage of the host can reach it.
const DefaultStateDir = "/run/veil-agent/containers"

// shutdownTimeout bounds how long calls in flight may still take once the agent stops
// (a GetEvent long poll never ends by itself, so this is also the most it delays power-off).
const shutdownTimeout = 2 * time.Second

// replyGrace is how long the agent lets DestroySandbox's reply go out before it stops.
const replyGrace = 200 * time.Millisecond

// Options configures Run.
type Options struct {
	// Listen holds transport addresses (see transport.Listen: unix:PATH, vsock:PORT,
	// virtio-serial:NAME). Empty means every guest transport that exists
	// (transport.ListenAll).
	Listen []string
	// StateDir is libcontainer's state directory; empty means DefaultStateDir.
	StateDir string
	// Guest prepares the guest before serving: lo up and /run/veil created. Init starts the
	// agent with it; leave it off when running the agent on a host for tests. It also makes
	// the policy come from the initdata disk (package launch) instead of Policy.
	Guest bool
	// Policy is the Rego policy enforced when Guest is off; "" means policies.AllowAll.
	Policy string
	// ImagesDir is where image_guest_pull storages are cached and overlaid; "" means
	// api.ImagesDir.
	ImagesDir string
	// Start, when set, records the steps of the start (package startup); Run logs them once
	// the first request has been answered.
	Start *startup.Trace
}

// Run serves the agent API until ctx is cancelled, DestroySandbox has run, or every listener
// has failed. It returns nil in the first two cases.
func Run(ctx context.Context, opts Options) error {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	tr := opts.Start
	// Every decision, under the initial policy and under any that SetPolicy installs (Replace
	// keeps the engine's options), goes to one bounded log, which ReadDecisionLog returns
	// when the policy allows it.
	decisions := policy.NewDecisionLog(0)
	// The transports open and the guest is prepared (the scratch disk: mke2fs under TCG takes
	// seconds) while the policy is read, checked and compiled: none of the three needs the
	// others. Nothing is served before all three are done: a bad initdata ends the agent here.
	started := startConcurrently(ctx, opts)
	launched, att, err := loadPolicy(ctx, opts, policy.WithDecisionLog(decisions))
	tr.Mark("policy")
	ls, startErr := started.wait()
	if startErr == nil {
		tr.Mark("prepared")
	}
	if startErr != nil { // the guest's failure is the one reported, as before the overlap
		if err != nil {
			log.G(ctx).WithError(err).Error("policy not loaded either")
		}
		err = startErr
	}
	serving := false
	defer func() { // a failure before Serve closes what was opened
		if !serving {
			closeAll(ls)
		}
	}()
	if err != nil {
		return err
	}
	hub, err := kbsHub(ctx, launched, att)
	if err != nil {
		return err
	}
	keys := keyProvider(ctx, hub)
	engine := launched.Engine
	srv, err := server.New(opts.StateDir)
	if err != nil {
		return fmt.Errorf("create agent service: %w", err)
	}
	if opts.ImagesDir == "" {
		opts.ImagesDir = api.ImagesDir
	}
	srv.SetGuestPull(&storage.GuestPull{
		Dir:                opts.ImagesDir,
		InsecureRegistries: launched.Settings.Image.InsecureRegistries,
		KeyProvider:        keys,
		Verifier:           imageVerifier(ctx, launched, hub),
	})
	srv.SetUnsealer(unsealer(ctx, launched, hub))
	srv.SetPolicyEngine(engine)
	srv.SetDecisionLog(decisions)
	// server.Interceptor is outermost but for the start trace's (which only notes when the
	// first answer left): it recovers panics and converts errors for the policy interceptor
	// too, whose PermissionDenied statuses it passes through unchanged.
	ts, err := ttrpc.NewServer(ttrpc.WithChainUnaryServerInterceptor(firstRequest(ctx, tr),
		server.Interceptor, policy.Interceptor(engine)))
	if err != nil {
		return fmt.Errorf("create ttrpc server: %w", err)
	}
	srv.Register(ts)
	// Calls in flight must not see the stop signal: they get shutdownTimeout to finish.
	serveCtx := context.WithoutCancel(ctx)
	failed := make(chan error, len(ls))
	serving = true
	for _, l := range ls {
		go func() { failed <- ts.Serve(serveCtx, l) }()
	}
	tr.Mark("serving")
	log.G(ctx).WithField("version", server.AgentVersion).Infof("agent serving on %d transports", len(ls))

	runErr := wait(ctx, srv, failed, len(ls))
	sctx, cancel := context.WithTimeout(serveCtx, shutdownTimeout)
	defer cancel()
	if err := ts.Shutdown(sctx); err != nil {
		log.G(ctx).WithError(err).Debug("calls still in flight at shutdown: closing them")
		_ = ts.Close()
	}
	return runErr
}

// wait returns when the agent must stop: nil for a signal or a destroyed sandbox, an error
// when all n listeners have failed.
func wait(ctx context.Context, srv *server.Server, failed <-chan error, n int) error {
	var errs []error
	for {
		select {
		case <-ctx.Done():
			log.G(ctx).Info("agent stopping: told to stop")
			return nil
		case <-srv.Destroyed():
			log.G(ctx).Info("agent stopping: sandbox destroyed")
			// The channel closes inside the DestroySandbox handler, before ttrpc has written
			// the reply, and ttrpc's Shutdown may close that idle-looking connection first:
			// give the reply a moment to leave.
			time.Sleep(replyGrace)
			return nil
		case err := <-failed:
			log.G(ctx).WithError(err).Error("a transport stopped serving")
			if errs = append(errs, err); len(errs) == n {
				return fmt.Errorf("every transport failed: %w", errors.Join(errs...))
			}
		}
	}
}

// listen opens the listeners that addrs name, or every guest transport when there is none.
func listen(ctx context.Context, addrs []string) ([]net.Listener, error) {
	if len(addrs) == 0 {
		ls, err := transport.ListenAll(ctx)
		if len(ls) == 0 {
			return nil, fmt.Errorf("no transport to serve on: %w", err)
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("some transports are not served")
		}
		return ls, nil
	}
	var ls []net.Listener
	for _, a := range addrs {
		l, err := transport.Listen(ctx, a)
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// loadPolicy returns the engine of the policy to enforce and the agent's settings: in a guest
// those of the initdata disk (or allow-all without one, in a plain VM), else opts.Policy and
// zero settings. The engine is built with popts. When the settings name a KBS it also returns
// the attester of the TEE the boot checked the initdata with (nil for tee none, and outside
// a guest); a TEE that cannot make one stops the boot.
func loadPolicy(ctx context.Context, opts Options, popts ...policy.Option) (*launch.Launched, attester.Attester, error) {
	if opts.Guest {
		c := launch.DefaultConfig(launch.DetectTEE(ctx))
		c.Options = append(c.Options, popts...)
		l, err := launch.Boot(ctx, c)
		if err != nil || l.Settings.KBS.URL == "" {
			return l, nil, err
		}
		att, err := c.Attester(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("initdata: kbs.url %s: %w", l.Settings.KBS.URL, err)
		}
		return l, att, nil
	}
	text := opts.Policy
	if text == "" {
		text = policies.AllowAll
	}
	e, err := policy.New(text, popts...)
	if err != nil {
		return nil, nil, fmt.Errorf("agent policy: %w", err)
	}
	return &launch.Launched{Engine: e}, nil, nil
}

// prepareGuest brings lo up, creates /run/veil (the only place the host may write) and puts
// the image cache and the containers' roots on the encrypted scratch disk when the host gave
// one (package scratch); a scratch disk that cannot be set up stops the boot.
func prepareGuest(ctx context.Context) error {
	if err := network.SetupLoopback(); err != nil {
		log.G(ctx).WithError(err).Warn("loopback not up")
	}
	if err := os.MkdirAll(api.GuestRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", api.GuestRoot, err)
	}
	if _, err := scratch.Setup(ctx, scratch.DefaultConfig()); err != nil {
		return err
	}
	return nil
}
