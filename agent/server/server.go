// Package server implements the agent's ttrpc service (agent/api) on top of the guest's
// container manager, storage and network packages. Handlers validate their input and return
// errors that name what was wrong; a bad request never stops the server.
package server

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/container"
	"github.com/veil-runtime/veil/agent/portfwd"
	"github.com/veil-runtime/veil/agent/storage"
	"github.com/veil-runtime/veil/agent/unseal"
)

// AgentVersion is the agent's version, set at build time with
// -ldflags "-X github.com/veil-runtime/veil/agent/server.AgentVersion=...".
var AgentVersion = "dev"

// APIVersion is the version of the agent API; it changes when a message or method changes
// incompatibly.
const APIVersion = 1

// Server is the agent's API service.
type Server struct {
	containers *container.Manager

	// paths mounts the host's storages and resolves the paths it names, below its root
	// (api.GuestRoot; tests use a temporary directory).
	paths *storage.Table
	// ports holds the forwarded connections (OpenPort and friends).
	ports *portfwd.Table

	// destroyed is closed once DestroySandbox has run.
	destroyed   chan struct{}
	destroyOnce sync.Once

	mu            sync.Mutex     // guards the sandbox fields below
	sandboxID     string         // "" until CreateSandbox
	sandboxMounts []func() error // undo the sandbox storages, in mount order
	policy        PolicyReplacer // SetPolicy's engine; nil until SetPolicyEngine
	decisions     DecisionLog    // ReadDecisionLog's log; nil until SetDecisionLog
}

var _ api.AgentService = (*Server)(nil)

// SetGuestPull lets CreateContainer mount image_guest_pull storages with g. Call it before
// serving.
func (s *Server) SetGuestPull(g *storage.GuestPull) { s.paths.Pull = g }

// SetUnsealer lets CreateContainer unseal sealed secrets with u (without it, or with a u
// that has no KBS, every sealed value is refused). Call it before serving.
func (s *Server) SetUnsealer(u *unseal.Unsealer) { s.containers.SetUnsealer(u) }

// New returns a Server whose containers keep their state under stateDir, with the guest's
// directories at api.GuestRoot.
func New(stateDir string) (*Server, error) { return newServer(stateDir, storage.New(api.GuestRoot)) }

func newServer(stateDir string, paths *storage.Table) (*Server, error) {
	m, err := container.NewManager(stateDir, paths)
	if err != nil {
		return nil, err
	}
	return &Server{containers: m, paths: paths, ports: &portfwd.Table{}, destroyed: make(chan struct{})}, nil
}

// Register adds the service to a ttrpc server.
func (s *Server) Register(srv *ttrpc.Server) {
	api.RegisterAgentService(srv, s)
}

// Destroyed is closed when DestroySandbox has removed the sandbox: the agent then stops
// serving (after the reply has gone out) and exits, and init powers the VM off.
func (s *Server) Destroyed() <-chan struct{} { return s.destroyed }

// Interceptor is the agent's ttrpc unary interceptor. It logs every call at debug level
// (method, duration, error; never a request or a reply), turns a handler's panic into an
// Internal error so that the agent keeps serving, and converts errdefs errors into ttrpc
// status codes: handlers return errors wrapping errdefs sentinels, and only this edge maps
// them.
func Interceptor(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo,
	method ttrpc.Method) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).WithField("method", info.FullMethod).
				Errorf("handler panic: %v\n%s", r, debug.Stack())
			resp, err = nil, status.Errorf(codes.Internal, "%s: agent handler panic: %v", info.FullMethod, r)
		}
	}()
	resp, err = method(ctx, unmarshal)
	entry := log.G(ctx).WithField("method", info.FullMethod).WithField("duration", time.Since(start))
	if err != nil {
		entry.WithError(err).Debug("call failed")
		return nil, errgrpc.ToGRPC(err)
	}
	entry.Debug("call")
	return resp, nil
}

var _ ttrpc.UnaryServerInterceptor = Interceptor
