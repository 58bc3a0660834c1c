package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// streamLimit is how much output of one stream the agent buffers. When the buffer is
	// full it stops reading, so the writer in the container blocks as on a full pipe.
	streamLimit = 1 << 20
	// MaxRead is the most bytes one read of a stream returns.
	MaxRead = 1 << 20
	// readChunk is the size of each read from the pipe or terminal.
	readChunk = 32 << 10
)

// stream is a bounded buffer between a process's output and the agent's readers.
type stream struct {
	limit int

	mu     sync.Mutex
	buf    []byte
	closed bool          // the source reached EOF, failed or was closed
	wake   chan struct{} // closed and replaced on every change of buf or closed
}

func newStream(limit int) *stream {
	return &stream{limit: limit, wake: make(chan struct{})}
}

// changed wakes every waiter; s.mu must be held.
func (s *stream) changed() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// fill copies r into the buffer until r ends, waiting while the buffer is full. A terminal
// reports the end of its output with EIO, which counts as the end of the stream.
func (s *stream) fill(r io.Reader) {
	chunk := make([]byte, readChunk)
	for {
		s.mu.Lock()
		for len(s.buf) >= s.limit && !s.closed {
			w := s.wake
			s.mu.Unlock()
			<-w
			s.mu.Lock()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		room := min(s.limit-len(s.buf), len(chunk))
		s.mu.Unlock()

		n, err := r.Read(chunk[:room])
		s.mu.Lock()
		if !s.closed {
			s.buf = append(s.buf, chunk[:n]...)
			s.closed = err != nil
			s.changed()
		}
		done := s.closed
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// closeSource marks the stream's source as ended; buffered data stays readable.
func (s *stream) closeSource() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.changed()
	}
}

// read returns up to max buffered bytes, waiting until there are some, the stream has
// ended or ctx is done. eof is true once the stream has ended and is drained.
func (s *stream) read(ctx context.Context, max int) (data []byte, eof bool, err error) {
	if max <= 0 || max > MaxRead {
		max = MaxRead
	}
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			n := min(max, len(s.buf))
			data = append([]byte(nil), s.buf[:n]...)
			s.buf = s.buf[n:]
			if len(s.buf) == 0 {
				s.buf = nil
			}
			eof = s.closed && len(s.buf) == 0
			s.changed()
			s.mu.Unlock()
			return data, eof, nil
		}
		if s.closed {
			s.mu.Unlock()
			return nil, true, nil
		}
		w := s.wake
		s.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// drained reports whether the stream has ended and holds no data.
func (s *stream) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed && len(s.buf) == 0
}

// writeAll writes data to f (a pipe or pty master, both pollable) until all is written, an
// error occurs or ctx is done; it returns how many bytes were written.
func writeAll(ctx context.Context, f *os.File, data []byte) (int, error) {
	if err := f.SetWriteDeadline(time.Time{}); err != nil {
		return 0, fmt.Errorf("stdin: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Now()) })
	defer stop()
	n, err := f.Write(data)
	if err != nil && ctx.Err() != nil {
		return n, ctx.Err()
	}
	if err != nil {
		return n, fmt.Errorf("write stdin: %w", err)
	}
	return n, nil
}

// consoleSocket returns the two ends of the socket over which libcontainer sends the pty
// master of a terminal process.
func consoleSocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket-child"), nil
}

// receiveConsole receives one file descriptor (the pty master) from sock and returns it as a
// pollable file.
func receiveConsole(sock *os.File, timeout time.Duration) (*os.File, error) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		oob  = make([]byte, unix.CmsgSpace(4))
		name = make([]byte, 4096)
		oobn int
		rerr error
	)
	err = raw.Control(func(fd uintptr) {
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		if rerr = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); rerr != nil {
			return
		}
		for {
			_, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
			if !errors.Is(rerr, unix.EINTR) {
				return
			}
		}
	})
	if err = errors.Join(err, rerr); err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	fd, err := parseOneFd(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("pty master: %w", err)
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

// parseOneFd returns the single descriptor carried by a control message.
func parseOneFd(oob []byte) (int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, fmt.Errorf("pty master message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return -1, fmt.Errorf("pty master message carried %d descriptors, want 1", len(fds))
	}
	return fds[0], nil
}

// resizeTerminal sets the window size of the terminal whose master is f.
func resizeTerminal(f *os.File, rows, cols uint16) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = raw.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err = errors.Join(err, ierr); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}
