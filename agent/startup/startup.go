// Package startup records when the agent reached each step of its start, on the guest's
// monotonic clock, counted from the moment init executed it (init passes that moment in
// ExecEnv). The agent logs the steps in one console line (Line), which `make bench` reads
// (tests/bench) to split boot-to-agent-ready into the agent's own part and the rest.
package startup

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ExecEnv names the environment variable in which init hands the agent the CLOCK_MONOTONIC
// time (nanoseconds) at which it executed it.
const ExecEnv = "VEIL_AGENT_EXEC_NS"

// LinePrefix starts the console line that String's text follows.
const LinePrefix = "agent start (ms since exec):"

// Now is CLOCK_MONOTONIC: the clock init and the agent share.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// EnvValue is the ExecEnv entry for a process executed now.
func EnvValue() string { return ExecEnv + "=" + strconv.FormatInt(int64(Now()), 10) }

// Trace is the list of steps reached. The zero value has no exec time: its steps are then
// counted from the trace's first step.
type Trace struct {
	mu    sync.Mutex
	exec  time.Duration
	steps []step
}

type step struct {
	name string
	at   time.Duration
}

// FromEnv returns a trace that counts from the exec time in ExecEnv (from its first step when
// the variable is absent or malformed: an agent not started by init).
func FromEnv() *Trace {
	t := &Trace{}
	if v, err := strconv.ParseInt(os.Getenv(ExecEnv), 10, 64); err == nil && v > 0 {
		t.exec = time.Duration(v)
	}
	return t
}

// Mark records that step name was reached now. A nil trace records nothing.
func (t *Trace) Mark(name string) { t.MarkAt(name, Now()) }

// MarkAt records that step name was reached at the monotonic time at (from Now).
func (t *Trace) MarkAt(name string, at time.Duration) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.exec == 0 {
		t.exec = at
	}
	t.steps = append(t.steps, step{name, at})
}

// String lists the steps as name=milliseconds since the exec, in the order marked:
// "main=312.4 policy=421.0 serving=430.2".
func (t *Trace) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	parts := make([]string, 0, len(t.steps))
	for _, s := range t.steps {
		parts = append(parts, fmt.Sprintf("%s=%.1f", s.name, float64(s.at-t.exec)/float64(time.Millisecond)))
	}
	return strings.Join(parts, " ")
}

// Line is the console line: LinePrefix, then String.
func (t *Trace) Line() string { return LinePrefix + " " + t.String() }

// Parse reads the steps of a console line made by Line (anywhere in text: the last such line
// wins), in milliseconds since the exec.
func Parse(text string) (map[string]float64, error) {
	i := strings.LastIndex(text, LinePrefix)
	if i < 0 {
		return nil, fmt.Errorf("no %q line", LinePrefix)
	}
	line := text[i+len(LinePrefix):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	steps := map[string]float64{}
	for _, f := range strings.Fields(line) {
		name, v, ok := strings.Cut(strings.Trim(f, `"`), "=")
		if !ok {
			continue // logrus's own fields (component=agent) follow the message
		}
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		steps[name] = ms
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%q line without steps: %q", LinePrefix, line)
	}
	return steps, nil
}
