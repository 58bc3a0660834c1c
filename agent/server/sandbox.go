package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/container"
)

// maxDNSLine bounds one line of resolv.conf.
const maxDNSLine = 256

// Check reports that the agent serves.
func (s *Server) Check(ctx context.Context, req *api.CheckRequest) (*api.CheckResponse, error) {
	return &api.CheckResponse{Status: api.CheckResponse_SERVING}, nil
}

// Version returns the agent's version and the API version.
func (s *Server) Version(ctx context.Context, req *api.VersionRequest) (*api.VersionResponse, error) {
	return &api.VersionResponse{AgentVersion: AgentVersion, ApiVersion: APIVersion}, nil
}

// CreateSandbox mounts the sandbox storages (the pod's share at api.SharedDir), writes the
// DNS lines into api.ResolvConf and sets the hostname. It runs once per VM; on failure it
// undoes its mounts.
func (s *Server) CreateSandbox(ctx context.Context, req *api.CreateSandboxRequest) (*api.Empty, error) {
	if err := checkSandboxRequest(req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandboxID != "" {
		return nil, fmt.Errorf("sandbox %s already created: %w", s.sandboxID, errdefs.ErrAlreadyExists)
	}
	var mounted []func() error
	err := s.setUpSandbox(req, &mounted)
	if err != nil {
		for i := len(mounted) - 1; i >= 0; i-- {
			if uerr := mounted[i](); uerr != nil {
				log.G(ctx).WithError(uerr).Warn("undo sandbox storage")
			}
		}
		return nil, err
	}
	s.sandboxID, s.sandboxMounts = req.GetSandboxId(), mounted
	s.containers.SetSandbox(s.sandboxID)
	log.G(ctx).WithField("sandbox", s.sandboxID).Info("sandbox created")
	return &api.Empty{}, nil
}

// setUpSandbox does the work of CreateSandbox, appending each mount point to mounted.
func (s *Server) setUpSandbox(req *api.CreateSandboxRequest, mounted *[]func() error) error {
	for i, st := range req.GetStorages() {
		undo, err := s.paths.Mount(st)
		if err != nil {
			return fmt.Errorf("sandbox storages[%d]: %w", i, err)
		}
		*mounted = append(*mounted, undo)
	}
	if len(req.GetDns()) > 0 {
		data := []byte(strings.Join(req.GetDns(), "\n") + "\n")
		dir, name := filepath.Split(s.paths.Path(api.ResolvConf))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := writeFileBeneath(dir, name, data, 0o644, false); err != nil {
			return fmt.Errorf("write %s: %w", s.paths.Path(api.ResolvConf), err)
		}
	}
	if h := req.GetHostname(); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fmt.Errorf("set hostname %q: %w", h, err)
		}
	}
	return nil
}

func checkSandboxRequest(req *api.CreateSandboxRequest) error {
	if err := container.ValidateID("sandbox_id", req.GetSandboxId()); err != nil {
		return err
	}
	if h := req.GetHostname(); h != "" && !validHostname(h) {
		return fmt.Errorf("hostname %q is not a valid host name (letters, digits, '-' and '.', at most 64): %w",
			h, errdefs.ErrInvalidArgument)
	}
	for i, line := range req.GetDns() {
		if line == "" || len(line) > maxDNSLine || strings.ContainsAny(line, "\n\r\x00") {
			return fmt.Errorf("dns line %d %q must be one non-empty line of at most %d bytes: %w",
				i, line, maxDNSLine, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 64 || h[0] == '-' || h[0] == '.' {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// DestroySandbox kills and removes every container, unmounts the sandbox storages and then
// lets the agent exit (see Destroyed), so that init powers the VM off. The agent leaves even
// when some of this failed: the error reports what, and powering off ends the rest.
func (s *Server) DestroySandbox(ctx context.Context, req *api.DestroySandboxRequest) (*api.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := req.GetSandboxId(); id != "" && s.sandboxID != "" && id != s.sandboxID {
		return nil, fmt.Errorf("sandbox %s: this VM holds sandbox %s: %w", id, s.sandboxID, errdefs.ErrNotFound)
	}
	var errs []error
	s.ports.CloseAll()
	if err := s.containers.RemoveAll(ctx, 0); err != nil {
		errs = append(errs, fmt.Errorf("remove containers: %w", err))
	}
	for i := len(s.sandboxMounts) - 1; i >= 0; i-- {
		if err := s.sandboxMounts[i](); err != nil {
			errs = append(errs, fmt.Errorf("sandbox storage: %w", err))
		}
	}
	s.sandboxMounts = nil
	s.destroyOnce.Do(func() { close(s.destroyed) })
	log.G(ctx).WithField("sandbox", s.sandboxID).Info("sandbox destroyed; the agent stops")
	return &api.Empty{}, errors.Join(errs...)
}

// SetGuestTime sets the guest's wall clock (CLOCK_REALTIME).
func (s *Server) SetGuestTime(ctx context.Context, req *api.SetGuestTimeRequest) (*api.Empty, error) {
	if req.GetUnixNano() <= 0 {
		return nil, fmt.Errorf("unix_nano %d is not a time after 1970: %w", req.GetUnixNano(), errdefs.ErrInvalidArgument)
	}
	ts := unix.NsecToTimespec(req.GetUnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return nil, fmt.Errorf("set the guest clock: %w", err)
	}
	return &api.Empty{}, nil
}

// PolicyReplacer installs a new policy (policy.Engine is one).
type PolicyReplacer interface {
	Replace(regoText string) error
}

// SetPolicyEngine gives SetPolicy the engine whose policy it replaces. The agent sets it
// before serving.
func (s *Server) SetPolicyEngine(r PolicyReplacer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy = r
}

// SetPolicy replaces the policy the agent enforces. The policy interceptor judged the request
// first, so it runs only when the installed policy allows SetPolicy. A new policy that does
// not compile is InvalidArgument (the error names the line), and the old one stays.
func (s *Server) SetPolicy(ctx context.Context, req *api.SetPolicyRequest) (*api.Empty, error) {
	s.mu.Lock()
	r := s.policy
	s.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("SetPolicy: this server has no policy engine: %w", errdefs.ErrFailedPrecondition)
	}
	if err := r.Replace(req.GetPolicy()); err != nil {
		return nil, fmt.Errorf("SetPolicy: new policy refused, the old one stays: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	log.G(ctx).Infof("SetPolicy: new policy installed (%d bytes)", len(req.GetPolicy()))
	return &api.Empty{}, nil
}
