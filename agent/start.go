package agent

import (
	"context"
	"net"
	"sync"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/veil-runtime/veil/agent/startup"
)

// starting is the start work that runs while the policy loads: the guest's preparation
// (Options.Guest) and the transports' listeners.
type starting struct {
	done chan struct{}
	ls   []net.Listener
	err  error
}

// startConcurrently prepares the guest (when opts.Guest) and then opens the listeners, in a
// goroutine; wait returns them. Opening a listener serves nothing: ttrpc serves only once Run
// calls Serve, after the policy is in force.
func startConcurrently(ctx context.Context, opts Options) *starting {
	s := &starting{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var prepErr error
		var wg sync.WaitGroup
		if opts.Guest {
			wg.Add(1)
			go func() {
				defer wg.Done()
				prepErr = prepareGuest(ctx)
			}()
		}
		ls, err := listen(ctx, opts.Listen)
		wg.Wait()
		if prepErr != nil {
			closeAll(ls)
			s.err = prepErr
			return
		}
		s.ls, s.err = ls, err
	}()
	return s
}

// wait returns the listeners, or the first failure (the guest's before the transports').
func (s *starting) wait() ([]net.Listener, error) {
	<-s.done
	return s.ls, s.err
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// firstRequest marks the end of the first request in tr and logs tr's line: the agent's
// start ends with its first answer, given under the policy in force.
func firstRequest(ctx context.Context, tr *startup.Trace) ttrpc.UnaryServerInterceptor {
	var once sync.Once
	return func(ctx2 context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
		resp, err := method(ctx2, um)
		once.Do(func() {
			if tr != nil {
				tr.Mark("first-request")
				log.G(ctx).Info(tr.Line())
			}
		})
		return resp, err
	}
}
