package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRepliesOutOfOrder checks id matching against a peer that answers the second command
// before the first, with an event in between.
func TestRepliesOutOfOrder(t *testing.T) {
	client, server := net.Pipe()
	go func() {
		w := bufio.NewWriter(server)
		r := bufio.NewReader(server)
		send := func(s string) { w.WriteString(s + "\n"); w.Flush() }
		read := func() (id, cmd string) {
			line, _ := r.ReadString('\n')
			var m struct{ Execute, ID string }
			_ = json.Unmarshal([]byte(line), &m)
			return m.ID, m.Execute
		}
		send(`{"QMP": {"version": {"qemu": {"major": 10, "minor": 1, "micro": 0}, "package": ""}, "capabilities": []}}`)
		id, _ := read() // qmp_capabilities
		send(fmt.Sprintf(`{"return": {}, "id": %q}`, id))
		id1, c1 := read()
		id2, c2 := read()
		send(`{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}`)
		send(fmt.Sprintf(`{"return": %q, "id": %q}`, c2, id2))
		send(fmt.Sprintf(`{"return": %q, "id": %q}`, c1, id1))
		server.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := New(ctx, client)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if v := c.Version(); v.Major != 10 || v.Minor != 1 {
		t.Errorf("version %+v", v)
	}
	results := make(chan string, 2)
	for _, cmd := range []string{"first", "second"} {
		go func() {
			raw, err := c.Execute(ctx, cmd, nil)
			results <- fmt.Sprintf("%s=%s/%v", cmd, raw, err)
		}()
		time.Sleep(20 * time.Millisecond) // keep the send order
	}
	got := map[string]bool{<-results: true, <-results: true}
	if !got[`first="first"/<nil>`] || !got[`second="second"/<nil>`] {
		t.Errorf("replies %v: each caller must get its own", got)
	}
	if e := <-c.Events(); e.Name != "STOP" || e.Timestamp.Unix() != 1 {
		t.Errorf("event %+v", e)
	}
	<-c.Done()
}

func TestNotQMP(t *testing.T) {
	client, server := net.Pipe()
	go func() { server.Write([]byte("SSH-2.0-OpenSSH\n")) }()
	_, err := New(context.Background(), client)
	if err == nil || !strings.Contains(err.Error(), "not a QMP greeting") {
		t.Fatalf("New = %v", err)
	}
}
