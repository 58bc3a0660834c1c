package verifier

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A cached PCS response goes at its own nextUpdate when that comes before a day.
func TestPCSCacheNextUpdate(t *testing.T) {
	now := sampleTime
	body := `{"tcbInfo":{"nextUpdate":"` + sampleTime.Add(time.Hour).Format(time.RFC3339) + `"},"signature":""}`
	g := &fixedGetter{body: []byte(body)}
	c := newPCSCache(g, func() time.Time { return now })
	for i, step := range []struct {
		after time.Duration
		want  int32
	}{{0, 1}, {30 * time.Minute, 1}, {61 * time.Minute, 2}} {
		now = sampleTime.Add(step.after)
		if _, _, err := c.Get(context.Background(), "https://pcs/tcb"); err != nil {
			t.Fatal(err)
		}
		if g.n.Load() != step.want {
			t.Fatalf("step %d: %d fetches, want %d", i, g.n.Load(), step.want)
		}
	}
	if got := nextUpdate([]byte("not collateral")); !got.IsZero() {
		t.Fatalf("nextUpdate of junk = %v", got)
	}
}

// fixedGetter serves one body for every URL and counts the requests in n.
type fixedGetter struct {
	body []byte
	n    atomic.Int32
}

func (g *fixedGetter) Get(context.Context, string) (http.Header, []byte, error) {
	g.n.Add(1)
	return nil, g.body, nil
}
