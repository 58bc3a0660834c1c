package pod

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/log"
)

// tailConsole copies the guest console, line by line, into the shim's log (containerd's
// log) until ctx ends. It is on only with debug_console: the console of a confidential
// guest is host-visible anyway, but it is noisy.
func tailConsole(ctx context.Context, path string, l *log.Entry) {
	var f *os.File
	for f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var partial strings.Builder
	for {
		line, err := r.ReadString('\n')
		partial.WriteString(line)
		if err == nil {
			l.WithField("console", strings.TrimRight(partial.String(), "\r\n")).Info("guest console")
			partial.Reset()
			continue
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
