package container

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// lookup returns process execID of container id.
func (m *Manager) lookup(id, execID string) (*process, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return c.process(execID)
}

// WriteStdin writes all of data to the stdin of a process (a pipe, or the terminal of a
// terminal process) and returns how many bytes it wrote.
func (m *Manager) WriteStdin(ctx context.Context, id, execID string, data []byte) (int, error) {
	p, err := m.lookup(id, execID)
	if err != nil {
		return 0, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil || p.stdinClosed {
		return 0, fmt.Errorf("process %q of container %s has no open stdin: %w", execID, id, errdefs.ErrFailedPrecondition)
	}
	return writeAll(ctx, p.stdin, data)
}

// CloseStdin closes the stdin pipe of a process, so that it reads EOF. For a terminal process
// it only stops further writes: the terminal stays open for the output.
func (m *Manager) CloseStdin(ctx context.Context, id, execID string) error {
	p, err := m.lookup(id, execID)
	if err != nil {
		return err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdinClosed {
		return nil
	}
	p.stdinClosed = true
	if p.stdin != nil && p.stdin != p.console {
		if err := p.stdin.Close(); err != nil {
			return fmt.Errorf("close stdin of process %q: %w", execID, err)
		}
	}
	return nil
}

// ReadStdout returns up to max bytes of a process's output (the terminal's for a terminal
// process), waiting until there are some, the stream has ended or ctx is done. eof is true
// once the stream has ended and is drained.
func (m *Manager) ReadStdout(ctx context.Context, id, execID string, max int) ([]byte, bool, error) {
	p, err := m.lookup(id, execID)
	if err != nil {
		return nil, false, err
	}
	return p.stdout.read(ctx, max)
}

// ReadStderr is ReadStdout for the error output; a terminal process has none (eof at once).
func (m *Manager) ReadStderr(ctx context.Context, id, execID string, max int) ([]byte, bool, error) {
	p, err := m.lookup(id, execID)
	if err != nil {
		return nil, false, err
	}
	return p.stderr.read(ctx, max)
}

// ResizeTerminal sets the window size of a terminal process.
func (m *Manager) ResizeTerminal(ctx context.Context, id, execID string, rows, cols uint16) error {
	p, err := m.lookup(id, execID)
	if err != nil {
		return err
	}
	if p.console == nil {
		return fmt.Errorf("process %q of container %s has no terminal: %w", execID, id, errdefs.ErrFailedPrecondition)
	}
	return resizeTerminal(p.console, rows, cols)
}
