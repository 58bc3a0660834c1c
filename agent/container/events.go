package container

import (
	"context"
	"sync"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/api"
)

// maxQueuedEvents bounds the event queue when nobody polls it; the oldest event goes first,
// with a warning in the log.
const maxQueuedEvents = 16384

// eventQueue holds exit and OOM events until GetEvent takes them, oldest first.
type eventQueue struct {
	max int

	mu    sync.Mutex
	items []*api.Event
	wake  chan struct{} // closed and replaced when an event is added
}

func newEventQueue(max int) *eventQueue {
	return &eventQueue{max: max, wake: make(chan struct{})}
}

// push adds e to the queue.
func (q *eventQueue) push(e *api.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= q.max {
		log.L.WithField("container", q.items[0].GetContainerId()).
			WithField("type", q.items[0].GetType().String()).
			Warn("event queue full: dropping its oldest event")
		q.items = q.items[1:]
	}
	q.items = append(q.items, e)
	close(q.wake)
	q.wake = make(chan struct{})
}

// next removes and returns the oldest event, waiting for one until ctx is done.
func (q *eventQueue) next(ctx context.Context) (*api.Event, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			e := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return e, nil
		}
		w := q.wake
		q.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// NextEvent returns the next exit or OOM event of any container, waiting for one until ctx
// is done (then it returns ctx's error).
func (m *Manager) NextEvent(ctx context.Context) (*api.Event, error) {
	return m.events.next(ctx)
}
