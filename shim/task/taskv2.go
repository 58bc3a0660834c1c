package task

import (
	"context"

	"github.com/containerd/ttrpc"
)

// taskV2Service is the name containerd before 2.0 (and 2.x for shims that print a plain
// address) calls the task API by. Its messages are task v3's, field for field and on the
// wire (the two .proto files differ only in their package), so the v2 service decodes each
// request straight into the v3 type and answers with the v3 response, as containerd's own
// bridge does the other way round.
const taskV2Service = "containerd.task.v2.Task"

// registerTaskV2 serves s as containerd.task.v2.Task too.
func registerTaskV2(server *ttrpc.Server, s *Service) {
	server.RegisterService(taskV2Service, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			"State":      method(s.State),
			"Create":     method(s.Create),
			"Start":      method(s.Start),
			"Delete":     method(s.Delete),
			"Pids":       method(s.Pids),
			"Pause":      method(s.Pause),
			"Resume":     method(s.Resume),
			"Checkpoint": method(s.Checkpoint),
			"Kill":       method(s.Kill),
			"Exec":       method(s.Exec),
			"ResizePty":  method(s.ResizePty),
			"CloseIO":    method(s.CloseIO),
			"Update":     method(s.Update),
			"Wait":       method(s.Wait),
			"Stats":      method(s.Stats),
			"Connect":    method(s.Connect),
			"Shutdown":   method(s.Shutdown),
		},
	})
}

// method adapts one task service method to a ttrpc method: the request is decoded into a new
// Req.
func method[Req any, PReq interface{ *Req }, Resp any](f func(context.Context, PReq) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return f(ctx, req)
	}
}
