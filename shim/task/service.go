// Package task is the containerd task service (task API v3, and v2 for containerd 1.x) of the Veil shim: it creates one
// sandbox VM per pod (shim/pod), runs each containerd task as a container inside it through
// the agent, relays stdio to containerd's FIFOs and log URIs, and publishes task events.
// Errors inside wrap containerd's errdefs sentinels; only the ttrpc interceptor converts
// them to gRPC status codes.
package task

import (
	"context"
	"fmt"
	"os"
	"path"
	"sync"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/veil-runtime/veil/agent/api"
)

type agentService = api.AgentService

var (
	_     = shim.TTRPCService(&Service{})
	_     = shim.TTRPCServerUnaryOptioner(&Service{})
	_     = taskAPI.TTRPCTaskService(&Service{})
	empty = &emptypb.Empty{}
)

// Service is the task service of one shim process, which serves one pod.
type Service struct {
	ctx       context.Context // the shim's: lives as long as the process
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan any

	createMu sync.Mutex // serialises pod creation

	mu         sync.Mutex
	pod        *podRef
	containers map[string]*container

	trim   trimmer // drops start-up memory once things settle (trim.go)
	images images  // image digests from containerd (image.go)
}

// New returns the task service; events go to publisher, and Shutdown ends the shim
// through sd. containerdAddress is containerd's gRPC socket, where the shim looks up the
// digests of container images ("" leaves them out).
func New(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, containerdAddress string) (*Service, error) {
	s := &Service{
		images:     images{address: containerdAddress},
		ctx:        ctx,
		publisher:  publisher,
		shutdown:   sd,
		events:     make(chan any, 128),
		containers: make(map[string]*container),
		trim:       trimmer{delay: trimDelay},
	}
	go s.forward()
	go s.trim.periodic(ctx)
	if address, err := shim.ReadAddress("address"); err == nil {
		sd.RegisterCallback(func(context.Context) error { return shim.RemoveSocket(address) })
	}
	sd.RegisterCallback(func(ctx context.Context) error {
		s.closePod(ctx)
		s.images.close()
		return nil
	})
	return s, nil
}

// RegisterTTRPC registers the task service on the shim's ttrpc server, as task API v3
// (containerd 2.x) and v2 (containerd 1.x, see taskv2.go).
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	registerTaskV2(server, s)
	return nil
}

// UnaryServerInterceptor is the ttrpc edge: it converts errdefs errors to gRPC status codes
// and logs failed requests.
func (s *Service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		start := time.Now()
		l := log.G(ctx).WithField("method", info.FullMethod)
		l.Trace("task request")
		resp, err := method(ctx, unmarshal)
		if err != nil {
			l.WithError(err).WithField("took", time.Since(start)).Debug("task request failed")
			return nil, errgrpc.ToGRPC(err)
		}
		l.WithField("took", time.Since(start)).Debug("task request done")
		switch path.Base(info.FullMethod) {
		case "Create", "Start", "Exec", "Delete":
			s.trim.schedule()
		}
		return resp, nil
	}
}

// getContainer returns task id.
func (s *Service) getContainer(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// getProcess returns the init process or an exec of task id.
func (s *Service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	p, ok := c.process(execID)
	if !ok {
		return nil, nil, fmt.Errorf("exec %s of task %s: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// Connect returns the shim's pid and the task's.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.getContainer(r.ID); err == nil {
		resp.TaskPid, _, _, _ = c.init.snapshot()
	}
	return resp, nil
}

// Shutdown ends the shim once it serves no task: the VM is stopped and every file removed.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return empty, nil
	}
	s.closePod(ctx)
	s.shutdown.Shutdown()
	return empty, nil
}

// Checkpoint is not supported: a VM's containers cannot be checkpointed from the host.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, fmt.Errorf("checkpoint of task %s: the Veil runtime does not support checkpoint/restore "+
		"(the container runs inside a VM whose memory the host cannot capture): %w", r.ID, errdefs.ErrNotImplemented)
}

// closePod stops the pod's VM and removes its files, if there is one.
func (s *Service) closePod(ctx context.Context) {
	s.mu.Lock()
	pr := s.pod
	s.pod = nil
	s.mu.Unlock()
	if pr == nil {
		return
	}
	pr.stop()
	cctx, cancel := pr.teardownCtx(ctx)
	defer cancel()
	if err := pr.pod.Close(cctx); err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", pr.pod.ID).Warn("close sandbox")
	}
}
