package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/veil-runtime/veil/shim/stdio"
)

// binaryStopTimeout is how long a logging binary gets to flush after SIGTERM.
const binaryStopTimeout = 12 * time.Second

// stdioPaths are the stdio containerd asked for: FIFO paths, or binary:// / file:// URIs in
// Stdout (then Stderr is the same URI).
type stdioPaths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// hostIO is the host end of one process's stdio: where the relays write the guest's output
// and read its input.
type hostIO struct {
	stdin          io.ReadCloser // nil: no stdin
	stdinHold      io.Closer     // our own writer on the stdin FIFO: no EOF until CloseIO
	stdout, stderr io.Writer
	outClosers     []io.Closer // closed once stdout is drained: the client sees EOF
	errClosers     []io.Closer // the same for stderr
	closers        []io.Closer // closed once both are drained
	logger         *exec.Cmd   // binary:// logging process

	stdinOnce sync.Once
	done      chan struct{} // closed once both output relays ended
}

// openIO opens the host ends: containerd's FIFOs, a file:// log file, or a binary:// logger.
func openIO(ctx context.Context, ns, id string, p stdioPaths) (_ *hostIO, retErr error) {
	h := &hostIO{stdout: io.Discard, stderr: io.Discard, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			h.close()
		}
	}()
	u, err := url.Parse(p.Stdout)
	if err != nil {
		return nil, fmt.Errorf("stdout uri %q: %w", p.Stdout, err)
	}
	switch u.Scheme {
	case "", "fifo":
		if h.stdout, h.outClosers, err = h.openWriter(ctx, p.Stdout); err == nil {
			h.stderr, h.errClosers, err = h.openWriter(ctx, p.Stderr)
		}
	case "file":
		err = h.openFile(u.Path)
	case "binary", "binary-v2":
		err = h.startLogger(ns, id, u)
	default:
		err = fmt.Errorf("unknown stdio scheme %q in %q", u.Scheme, p.Stdout)
	}
	if err != nil {
		return nil, err
	}
	if p.Stdin != "" {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin fifo %s: %w", p.Stdin, err)
		}
		h.stdin = f
		w, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.Stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin fifo %s for writing: %w", p.Stdin, err)
		}
		h.stdinHold = w
	}
	return h, nil
}

// openWriter opens a FIFO (or a plain file) for writing. A FIFO is also opened for reading,
// so that writes do not fail once the client went away (as runc's shim does).
func (h *hostIO) openWriter(ctx context.Context, path string) (io.Writer, []io.Closer, error) {
	if path == "" {
		return io.Discard, nil, nil
	}
	isFifo, err := fifo.IsFifo(path)
	if err != nil {
		return nil, nil, fmt.Errorf("stdio %s: %w", path, err)
	}
	if !isFifo {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("stdio %s: %w", path, err)
		}
		h.closers = append(h.closers, f)
		return f, nil, nil
	}
	// The opens complete in the background; they must outlive the request that made them
	// (ttrpc cancels its context on return), or a slow open would drop the output.
	ctx = context.WithoutCancel(ctx)
	w, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open fifo %s for writing: %w", path, err)
	}
	h.closers = append(h.closers, w)
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open fifo %s for reading: %w", path, err)
	}
	h.closers = append(h.closers, r)
	return w, []io.Closer{w, r}, nil
}

func (h *hostIO) openFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("log file %s: %w", path, err)
	}
	h.closers = append(h.closers, f)
	h.stdout, h.stderr = f, f
	return nil
}

// startLogger runs a binary:// logging process the way runc's shim does: stdout on fd 3,
// stderr on fd 4, and fd 5 closed (or written to, for binary-v2) once it is ready.
func (h *hostIO) startLogger(ns, id string, u *url.URL) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW, errR, errW)
		return err
	}
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = append(cmd.Env, "CONTAINER_ID="+id, "CONTAINER_NAMESPACE="+ns)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	err = cmd.Start()
	closeAll(outR, errR, readyW)
	if err != nil {
		closeAll(outW, errW, readyR)
		return fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	h.logger = cmd
	h.closers = append(h.closers, outW, errW)
	h.outClosers, h.errClosers = []io.Closer{outW}, []io.Closer{errW}
	h.stdout, h.stderr = outW, errW
	b := make([]byte, 1)
	n, rerr := readyR.Read(b)
	readyR.Close()
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("logging binary %s: %w", u.Path, rerr)
	}
	if u.Scheme == "binary-v2" && n == 0 {
		return fmt.Errorf("logging binary %s did not signal ready", u.Path)
	}
	return nil
}

// start relays the guest process's output to the host ends, and the stdin FIFO to the guest.
func (h *hostIO) start(ctx context.Context, p stdio.Process) {
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	relay := func(name string, copyFn func(context.Context, io.Writer) error, w io.Writer, closers []io.Closer) {
		defer wg.Done()
		if err := copyFn(ctx, w); err != nil {
			// The client then sees the stream end early: say so where containerd's log shows it.
			log.G(ctx).WithError(err).WithFields(log.Fields{"stream": name, "process": p.String()}).Warn("stdio relay ended early")
		}
		for _, c := range closers {
			c.Close()
		}
	}
	go relay("stdout", p.CopyStdout, h.stdout, h.outClosers)
	go relay("stderr", p.CopyStderr, h.stderr, h.errClosers)
	go func() { wg.Wait(); close(h.done) }()
	if h.stdin != nil {
		go func() {
			if err := p.CopyStdin(ctx, eofOnClose{h.stdin}); err != nil {
				log.G(ctx).WithError(err).Debug("stdin relay ended")
			}
		}()
	}
}

// closeStdin drops the shim's own writer on the stdin FIFO: once the client closed its end
// too and the relay drained the FIFO, the relay closes the guest's stdin.
func (h *hostIO) closeStdin() {
	h.stdinOnce.Do(func() {
		if h.stdinHold != nil {
			h.stdinHold.Close()
		}
	})
}

// wait waits until the output relays ended (the guest drained them), at most d.
func (h *hostIO) wait(d time.Duration) bool {
	select {
	case <-h.done:
		return true
	case <-time.After(d):
		return false
	}
}

// close closes every host end and stops a logging binary (SIGTERM, then SIGKILL).
func (h *hostIO) close() {
	h.closeStdin()
	if h.stdin != nil {
		h.stdin.Close()
	}
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i].Close()
	}
	h.closers = nil
	if h.logger == nil || h.logger.Process == nil {
		return
	}
	cmd := h.logger
	h.logger = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(binaryStopTimeout):
		_ = cmd.Process.Kill()
	}
}

// eofOnClose turns a read from a closed FIFO into end of input, so that CloseIO ends the
// stdin relay cleanly.
type eofOnClose struct{ r io.Reader }

func (e eofOnClose) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && (errors.Is(err, os.ErrClosed) || errors.Is(err, fifo.ErrReadClosed) || errors.Is(err, fifo.ErrClosed)) {
		err = io.EOF
	}
	return n, err
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
