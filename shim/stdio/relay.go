// Package stdio relays a guest process's standard streams through the agent API: local
// readers feed WriteStdin, and ReadStdout/ReadStderr long polls feed local writers until the
// agent reports the stream drained.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/veil-runtime/veil/agent/api"
)

// chunk is the most bytes one read or write request carries; well below ttrpc's 4 MiB limit.
const chunk = 128 << 10

// Process names one process in the guest: ExecID is empty for a container's init process.
type Process struct {
	Agent       api.AgentService
	ContainerID string
	ExecID      string
}

// CopyStdout copies the process's stdout into w until the agent reports end of stream.
func (p Process) CopyStdout(ctx context.Context, w io.Writer) error {
	return p.copyOut(ctx, w, "stdout", p.Agent.ReadStdout)
}

// CopyStderr copies the process's stderr into w until the agent reports end of stream.
func (p Process) CopyStderr(ctx context.Context, w io.Writer) error {
	return p.copyOut(ctx, w, "stderr", p.Agent.ReadStderr)
}

type readFunc func(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error)

func (p Process) copyOut(ctx context.Context, w io.Writer, name string, read readFunc) error {
	req := &api.ReadStreamRequest{ContainerId: p.ContainerID, ExecId: p.ExecID, Len: chunk}
	for {
		resp, err := read(ctx, req)
		if err != nil {
			return fmt.Errorf("read %s of %s: %w", name, p, err)
		}
		if len(resp.GetData()) > 0 {
			if _, err := w.Write(resp.GetData()); err != nil {
				return fmt.Errorf("write %s of %s: %w", name, p, err)
			}
		}
		if resp.GetEof() {
			return nil
		}
	}
}

// CopyStdin sends everything read from r to the process's stdin, then closes it. A nil r
// closes stdin at once.
func (p Process) CopyStdin(ctx context.Context, r io.Reader) error {
	if r != nil {
		buf := make([]byte, chunk)
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				if err := p.write(ctx, buf[:n]); err != nil {
					return err
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("read local stdin for %s: %w", p, rerr)
			}
		}
	}
	_, err := p.Agent.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: p.ContainerID, ExecId: p.ExecID})
	if err != nil {
		return fmt.Errorf("close stdin of %s: %w", p, err)
	}
	return nil
}

func (p Process) write(ctx context.Context, data []byte) error {
	for len(data) > 0 {
		resp, err := p.Agent.WriteStdin(ctx, &api.WriteStreamRequest{
			ContainerId: p.ContainerID, ExecId: p.ExecID, Data: data,
		})
		if err != nil {
			return fmt.Errorf("write stdin of %s: %w", p, err)
		}
		if resp.GetLen() == 0 {
			return fmt.Errorf("write stdin of %s: agent accepted no bytes", p)
		}
		data = data[resp.GetLen():]
	}
	return nil
}

func (p Process) String() string {
	if p.ExecID == "" {
		return "container " + p.ContainerID
	}
	return fmt.Sprintf("process %s of container %s", p.ExecID, p.ContainerID)
}
