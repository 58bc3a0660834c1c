package policy

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DefaultLogSize is the byte budget of a decision log made with NewDecisionLog(0).
const DefaultLogSize = 256 << 10

// maxReasonBytes caps the reason recorded for one decision, maxNameBytes a method name.
const (
	maxReasonBytes = 512
	maxNameBytes   = 128
)

// LogEntry is one line of the decision log. It never holds a request's content: only the
// method, the verdict, the policy's reason and the ids that say which container or process
// the request was about (so no CopyFile or WriteStdin data, no OCI spec, no environment).
type LogEntry struct {
	Time        time.Time `json:"time"`
	Method      string    `json:"method"`
	Rule        string    `json:"rule"`
	Allow       bool      `json:"allow"`
	Withheld    bool      `json:"withheld,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	ContainerID string    `json:"container_id,omitempty"`
	ExecID      string    `json:"exec_id,omitempty"`
	DurationNS  int64     `json:"duration_ns"`
}

// DecisionLog keeps the most recent decisions as JSON lines within a byte budget: when a new
// line does not fit, the oldest lines are dropped. It is safe for concurrent use.
type DecisionLog struct {
	mu      sync.Mutex
	max     int
	lines   [][]byte // oldest first
	size    int
	dropped uint64
}

// NewDecisionLog returns a log that holds at most maxBytes of JSON lines (DefaultLogSize when
// maxBytes <= 0).
func NewDecisionLog(maxBytes int) *DecisionLog {
	if maxBytes <= 0 {
		maxBytes = DefaultLogSize
	}
	return &DecisionLog{max: maxBytes}
}

// Add appends e to the log.
func (l *DecisionLog) Add(e LogEntry) {
	if len(e.Reason) > maxReasonBytes {
		e.Reason = e.Reason[:maxReasonBytes] + "..."
	}
	if len(e.Method) > maxNameBytes {
		e.Method = e.Method[:maxNameBytes] + "..."
	}
	line, err := json.Marshal(e)
	if err != nil {
		return // LogEntry always encodes
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(line) > l.max {
		l.dropped++
		return
	}
	for l.size+len(line) > l.max {
		l.size -= len(l.lines[0])
		l.lines[0] = nil
		l.lines = l.lines[1:]
		l.dropped++
	}
	l.lines = append(l.lines, line)
	l.size += len(line)
}

// WriteTo writes the lines the log holds, oldest first.
func (l *DecisionLog) WriteTo(w io.Writer) (int64, error) {
	l.mu.Lock()
	lines := append([][]byte(nil), l.lines...)
	l.mu.Unlock()
	var n int64
	for _, line := range lines {
		k, err := w.Write(line)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Len returns the number of lines held and the number dropped so far.
func (l *DecisionLog) Len() (held int, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines), l.dropped
}

var _ io.WriterTo = (*DecisionLog)(nil)

// record logs one decision of the engine.
func (l *DecisionLog) record(start time.Time, d Decision, req proto.Message) {
	e := LogEntry{
		Time: start.UTC(), Method: d.Method, Rule: d.Rule, Allow: d.Allow, Withheld: d.Withhold,
		Reason: d.Reason, DurationNS: time.Since(start).Nanoseconds(),
	}
	if req != nil {
		m := req.ProtoReflect()
		e.ContainerID = stringField(m, "container_id")
		e.ExecID = stringField(m, "exec_id")
	}
	l.Add(e)
}

func stringField(m protoreflect.Message, name protoreflect.Name) string {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return ""
	}
	return m.Get(fd).String()
}
